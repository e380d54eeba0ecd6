"""Rolling latency windows and percentiles (cheap per-frame recording)."""

from __future__ import annotations

import threading

import numpy as np

WINDOW_SIZE = 1024  # samples kept per stage
PERCENTILES = (50, 95, 99)


class LatencyWindow:
    """The last ``WINDOW_SIZE`` samples of one stage, in milliseconds."""

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._values[self._count % self._values.size] = value_ms
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def samples(self) -> np.ndarray:
        with self._lock:
            return self._values[:min(self._count, self._values.size)].copy()

    def summary(self) -> dict[str, float]:
        """p50/p95/p99 in ms (zeros when empty)."""
        return percentile_summary(self.samples())


def percentile_summary(samples: np.ndarray) -> dict[str, float]:
    if samples.size == 0:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    values = np.percentile(samples, PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)}
