"""Change events: a debounced state machine over the results of one pipeline. Pure.

Every result is reduced to a *state*, a multiset of labels:

- classify: the top class (``{"cat": 1}``), or nothing when no class passed ``min_score``;
- detect: how many objects of each label are in the frame (``{"car": 2, "person": 1}``);
- regress / anomaly: the values at or above their threshold (``{"temperature": 1}``).

A different state becomes the confirmed one when ``debounce_frames`` consecutive results
show it and it lasted ``debounce_s`` seconds (capture time of its first to its latest
result); then one ``Change`` is reported. The first confirmed state is a change too (with
``previous`` None), so a subscriber learns the state after every start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_runtime.types import Classification, Detection, OutputValue, Prediction

State = frozenset[tuple[str, int]]  # (label, count) pairs, counts > 0


def result_state(predictions: Sequence[Prediction]) -> State:
    """The state one result shows (see the module docstring)."""
    counts: Counter[str] = Counter()
    for prediction in predictions:
        if isinstance(prediction, Classification):
            counts[prediction.label] += 1
            break  # best first: only the top class counts
        counted = isinstance(prediction, Detection) or (
            isinstance(prediction, OutputValue) and prediction.above)
        if counted:
            counts[prediction.label] += 1
    return frozenset(counts.items())


@dataclass(frozen=True)
class Change:
    """A newly confirmed state; ``since_ts`` is the capture time of its first result."""

    previous: State | None
    current: State
    since_ts: float

    def as_dict(self) -> dict[str, Any]:
        before: Mapping[str, int] = dict(self.previous or ())
        after: Mapping[str, int] = dict(self.current)
        labels = sorted(before.keys() | after.keys())
        appeared = {k: after.get(k, 0) - before.get(k, 0) for k in labels
                    if after.get(k, 0) > before.get(k, 0)}
        left = {k: before.get(k, 0) - after.get(k, 0) for k in labels
                if before.get(k, 0) > after.get(k, 0)}
        return {"state": dict(sorted(after.items())),
                "previous": None if self.previous is None else dict(sorted(before.items())),
                "appeared": appeared, "left": left, "since_ts": round(self.since_ts, 6)}


class ChangeDetector:
    """Confirms a new state after ``debounce_frames`` results and ``debounce_s`` seconds."""

    def __init__(self, debounce_frames: int = 1, debounce_s: float = 0.0) -> None:
        if debounce_frames < 1 or debounce_s < 0:
            raise ValueError("debounce_frames must be >= 1 and debounce_s >= 0")
        self.debounce_frames = debounce_frames
        self.debounce_s = debounce_s
        self.confirmed: State | None = None
        self._candidate: State | None = None
        self._candidate_since = 0.0
        self._candidate_frames = 0

    def update(self, state: State, ts: float) -> Change | None:
        """Feed the state of the next result (``ts``: its capture time, seconds)."""
        if state == self.confirmed:
            self._candidate = None
            return None
        if state != self._candidate:
            self._candidate, self._candidate_since, self._candidate_frames = state, ts, 0
        self._candidate_frames += 1
        if (self._candidate_frames < self.debounce_frames
                or ts - self._candidate_since < self.debounce_s):
            return None
        change = Change(self.confirmed, state, self._candidate_since)
        self.confirmed, self._candidate = state, None
        return change
