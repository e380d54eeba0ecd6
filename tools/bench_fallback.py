"""Per-invoke cost of FallbackRunner against bare TFLiteRunners, and a retry's build time.

    cc -shared -fPIC -O2 -o /tmp/libprobe_delegate.so tests/delegates/probe_delegate.c
    python tools/bench_fallback.py /tmp/libprobe_delegate.so

Rounds are interleaved so load from other processes hits all three runners alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from edge_runtime.bundled import models_dir
from edge_runtime.runners import TFLiteRunner, read_model
from edge_runtime.runners.accelerators import DelegateSpec
from edge_runtime.runners.placement import FallbackRunner, PipelineRunner

ROUNDS = 15
INVOKES_PER_ROUND = 5000
BUILDS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", type=Path, help="the probe delegate (.so)")
    args = parser.parse_args()
    model = read_model(models_dir() / "digits_int8.tflite")
    spec = DelegateSpec("delegate", str(args.library), (), "delegate probe")
    runners: dict[str, PipelineRunner] = {
        "TFLiteRunner, no delegate": TFLiteRunner(model),
        "TFLiteRunner with the probe delegate": TFLiteRunner(model, delegate=spec),
        "FallbackRunner (accelerator active)": FallbackRunner(
            lambda: TFLiteRunner(model, delegate=spec), TFLiteRunner(model), label="probe",
            retry_s=3600, where="bench"),
    }
    frame = np.zeros(runners["TFLiteRunner, no delegate"].inputs[0].shape, np.uint8)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            start = time.perf_counter()
            for _ in range(INVOKES_PER_ROUND):
                runner.invoke([frame])
            samples[name].append((time.perf_counter() - start) / INVOKES_PER_ROUND * 1e6)
    for name, values in samples.items():
        print(f"{name:<40} median {statistics.median(values):7.2f} us  min {min(values):7.2f} us")
    builds = []
    for _ in range(BUILDS):
        start = time.perf_counter()
        TFLiteRunner(model, delegate=spec)
        builds.append((time.perf_counter() - start) * 1e3)
    print(f"build with the probe delegate: median {statistics.median(builds):.2f} ms")


if __name__ == "__main__":
    main()
