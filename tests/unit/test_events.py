"""Change events: scripted sequences of results produce exactly the expected events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from edge_runtime.config.schema import PipelineConfig
from edge_runtime.processing.events import ChangeDetector, result_state
from edge_runtime.publishing.events import PipelineRoute
from edge_runtime.types import Classification, Detection, OutputValue, Prediction, Result

BOX = (0.1, 0.1, 0.2, 0.2)
BOX_PX = (10.0, 10.0, 20.0, 20.0)


def objects(*labels: str) -> tuple[Detection, ...]:
    return tuple(Detection(0, label, 0.9, BOX, BOX_PX) for label in labels)


def top(label: str | None) -> tuple[Classification, ...]:
    return () if label is None else (Classification(0, label, 0.9), Classification(1, "z", 0.1))


def run(detector: ChangeDetector, frames: Sequence[tuple[float, Sequence[Prediction]]],
        ) -> list[tuple[int, dict[str, Any]]]:
    """(frame number, event) for every change the scripted frames produce."""
    events = []
    for number, (ts, predictions) in enumerate(frames):
        change = detector.update(result_state(predictions), ts)
        if change is not None:
            events.append((number, change.as_dict()))
    return events


def test_objects_appearing_and_leaving_with_a_two_frame_debounce() -> None:
    script = [objects(), objects(), objects("car"), objects(), objects("car"),
              objects("car"), objects("car", "person"), objects("car", "person"),
              objects("person"), objects("person"), objects("person")]
    events = run(ChangeDetector(debounce_frames=2),
                 [(float(i), p) for i, p in enumerate(script)])
    assert events == [
        (1, {"state": {}, "previous": None, "appeared": {}, "left": {}, "since_ts": 0.0}),
        # frame 2's car alone flickers away at frame 3: no event; 4 and 5 confirm it
        (5, {"state": {"car": 1}, "previous": {}, "appeared": {"car": 1}, "left": {},
             "since_ts": 4.0}),
        (7, {"state": {"car": 1, "person": 1}, "previous": {"car": 1},
             "appeared": {"person": 1}, "left": {}, "since_ts": 6.0}),
        (9, {"state": {"person": 1}, "previous": {"car": 1, "person": 1}, "appeared": {},
             "left": {"car": 1}, "since_ts": 8.0}),
    ]


def test_counts_of_the_same_label_are_part_of_the_state() -> None:
    script = [objects("car"), objects("car", "car"), objects("car", "car", "car"),
              objects("car")]
    events = run(ChangeDetector(), [(float(i), p) for i, p in enumerate(script)])
    assert [(n, e["appeared"], e["left"]) for n, e in events] == [
        (0, {"car": 1}, {}), (1, {"car": 1}, {}), (2, {"car": 1}, {}), (3, {}, {"car": 2})]


def test_top_class_changes_debounced_in_seconds() -> None:
    # 10 fps; a new top class must last 0.3 s (its first to its latest frame)
    labels = ["cat"] * 4 + ["dog"] * 2 + ["cat"] * 2 + ["dog"] * 5 + [None] * 4
    frames = [(i * 0.1, top(label)) for i, label in enumerate(labels)]
    events = run(ChangeDetector(debounce_s=0.3), frames)
    assert [(n, e["state"], e["previous"]) for n, e in events] == [
        (3, {"cat": 1}, None),
        (11, {"dog": 1}, {"cat": 1}),  # dog from frame 8: 8 -> 11 is 0.3 s
        (16, {}, {"dog": 1}),  # nothing passed min_score from frame 13
    ]
    assert events[1][1]["since_ts"] == pytest.approx(0.8)


def test_frames_and_seconds_both_required() -> None:
    detector = ChangeDetector(debounce_frames=3, debounce_s=1.0)
    frames = [(0.0, top("a")), (0.1, top("a")), (0.2, top("a")), (1.0, top("a"))]
    assert [n for n, _ in run(detector, frames)] == [3]
    detector = ChangeDetector(debounce_frames=3, debounce_s=1.0)
    frames = [(0.0, top("a")), (5.0, top("a")), (6.0, top("a"))]
    assert [n for n, _ in run(detector, frames)] == [2]


def test_values_crossing_their_threshold() -> None:
    def values(temperature_above: bool, humidity_above: bool) -> tuple[OutputValue, ...]:
        return (OutputValue(0, "temperature", 1.0, temperature_above),
                OutputValue(1, "humidity", 2.0, humidity_above))

    script = [values(False, False), values(True, False), values(True, True),
              values(False, True)]
    events = run(ChangeDetector(), [(float(i), p) for i, p in enumerate(script)])
    assert [(e["appeared"], e["left"]) for _, e in events] == [
        ({}, {}), ({"temperature": 1}, {}), ({"humidity": 1}, {}), ({}, {"temperature": 1})]


def test_debounce_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="debounce"):
        ChangeDetector(debounce_frames=0)


def pipeline(**sections: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "cam", "source": {"type": "synthetic"}, "model": {"path": "/m.tflite"},
        "task": {"type": "detect"}, **sections})


def result(ts: float, predictions: tuple[Prediction, ...], image: bool = True) -> Result:
    frame = np.zeros((4, 4, 3), np.uint8) if image else None
    return Result(0, ts, None, predictions, image=frame)


def test_every_mode_publishes_every_result_and_rate_limits_snapshots() -> None:
    route = PipelineRoute(pipeline(snapshot={"min_interval_s": 5}))
    decisions = [route.route(result(float(i), objects("car")), now_mono=float(i))
                 for i in range(12)]
    assert all(d.predictions and d.event is None for d in decisions)
    assert [i for i, d in enumerate(decisions) if d.snapshot] == [0, 5, 10]


def test_change_mode_routes_changes_to_events_and_snapshots_them() -> None:
    route = PipelineRoute(pipeline(events={"mode": "change"}, snapshot={"min_interval_s": 0}))
    script = [objects(), objects(), objects("car"), objects("car")]
    decisions = [route.route(result(float(i), p), now_mono=float(i))
                 for i, p in enumerate(script)]
    assert [d.predictions for d in decisions] == [False] * 4
    assert [d.event is not None for d in decisions] == [True, False, True, False]
    assert [d.snapshot for d in decisions] == [True, False, True, False]


def test_change_mode_can_keep_every_prediction() -> None:
    route = PipelineRoute(pipeline(events={"mode": "change", "keep_predictions": True}))
    decisions = [route.route(result(float(i), objects("car")), float(i)) for i in range(3)]
    assert [d.predictions for d in decisions] == [True] * 3
    assert [d.event is not None for d in decisions] == [True, False, False]
    assert not any(d.snapshot for d in decisions)  # no snapshot section


def test_no_snapshot_without_frame_pixels() -> None:
    route = PipelineRoute(pipeline(snapshot={"min_interval_s": 0}))
    assert not route.route(result(0.0, objects("car"), image=False), 0.0).snapshot
