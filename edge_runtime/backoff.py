"""Exponential backoff with full jitter, for reconnecting to brokers and cameras."""

from __future__ import annotations

import random


class Backoff:
    """Delays grow as min * 2**n up to max; each delay is drawn uniformly from
    [min, that ceiling] ("full jitter") so a fleet does not reconnect in lockstep."""

    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return min(self.max_s, self.min_s * 2.0 ** min(self.attempts, 60))

    def next_delay(self) -> float:
        delay = self._rng.uniform(self.min_s, self.ceiling())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
