"""Rolling latency windows and percentiles (cheap per-frame recording)."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

WINDOW_SIZE = 1024  # samples kept per stage
PERCENTILES = (50, 95, 99)
# Upper bounds (ms) of the cumulative latency histogram behind the Prometheus metrics: from
# sub-millisecond postprocessing to multi-second inference on a slow board.
HISTOGRAM_BOUNDS_MS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                       2500.0, 5000.0)


@dataclass(frozen=True)
class LatencyHistogram:
    """Every sample since start: per-bucket counts (the last bucket is above the largest
    bound), their sum and number."""

    bounds_ms: tuple[float, ...]
    counts: tuple[int, ...]
    total_ms: float
    count: int


class LatencyWindow:
    """The last ``WINDOW_SIZE`` samples of one stage, in milliseconds, plus a cumulative
    histogram of all of them (updated under the same lock, so a scrape costs the hot path
    nothing more)."""

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0
        self._total_ms = 0.0
        self._buckets = [0] * (len(HISTOGRAM_BOUNDS_MS) + 1)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        bucket = bisect.bisect_left(HISTOGRAM_BOUNDS_MS, value_ms)  # first bound >= value
        with self._lock:
            self._values[self._count % self._values.size] = value_ms
            self._count += 1
            self._total_ms += value_ms
            self._buckets[bucket] += 1

    def histogram(self) -> LatencyHistogram:
        with self._lock:
            return LatencyHistogram(HISTOGRAM_BOUNDS_MS, tuple(self._buckets), self._total_ms,
                                    self._count)

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
