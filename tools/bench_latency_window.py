"""Cost of LatencyWindow.add: this checkout against another git revision, in one process.

    PYTHONPATH=. python tools/bench_latency_window.py [REV]   (default REV: main)

Rounds alternate between the two implementations so machine noise hits both alike; the
ratio is what to compare across machines.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from edge_runtime import timing

VALUES = 1000  # samples per timed call
NUMBER, REPEAT, ROUNDS = 20, 3, 7


def load_revision(rev: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:edge_runtime/timing.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "timing_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("timing_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ns_per_add(window_class: Callable[[], timing.LatencyWindow], values: list[float]) -> float:
    add = window_class().add

    def run() -> None:
        for value in values:
            add(value)

    return min(timeit.repeat(run, number=NUMBER, repeat=REPEAT)) / NUMBER / len(values) * 1e9


def main() -> None:
    rev = sys.argv[1] if len(sys.argv) > 1 else "main"
    other = load_revision(rev)
    values = [random.uniform(0.05, 50.0) for _ in range(VALUES)]
    results: dict[str, list[float]] = {rev: [], "this checkout": []}
    for _ in range(ROUNDS):
        results[rev].append(ns_per_add(other.LatencyWindow, values))
        results["this checkout"].append(ns_per_add(timing.LatencyWindow, values))
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, median in medians.items():
        print(f"{name}: {median:.0f} ns per add()")
    print(f"ratio this/{rev}: {medians['this checkout'] / medians[rev]:.2f}")


if __name__ == "__main__":
    main()
