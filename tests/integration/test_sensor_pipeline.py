"""Sensor pipelines in process: real sources, the real vibration model, the real threads.

Held-out accuracy (file source, both backends), the synthetic sensor against the model,
malformed lines and gaps counted while the pipeline keeps going, and IIO with a fake sysfs
tree whose raw values change while it is polled.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import ModelStages, Pipeline
from edge_runtime.testing import CollectingSink

MODELS = models_dir()
HELD_OUT = MODELS / "demo" / "vibration_heldout.csv"
BACKEND = os.environ.get("EDGE_RUNTIME_TEST_BACKEND", "litert")
NORM = json.loads((MODELS / "demo" / "vibration_norm.json").read_text())
RATE_HZ = 1000
WINDOW, HOP = 256, 128


def held_out_rows() -> list[dict[str, str]]:
    with HELD_OUT.open(newline="") as handle:
        return list(csv.DictReader(handle))


def vibration_pipeline(source: dict[str, Any], **window: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "vibration", "source": source,
        "window": {"samples": WINDOW, "hop": HOP, "rate_hz": RATE_HZ,
                   "normalize": {"mean": NORM["mean"], "std": NORM["std"]}, **window},
        "model": {"path": str(MODELS / "vibration_int8.tflite"),
                  "labels": str(MODELS / "vibration_labels.txt"), "backend": BACKEND,
                  "threads": 1},
        "task": {"type": "classify", "top_k": 1}})


def start(config: PipelineConfig) -> tuple[Pipeline, CollectingSink]:
    stages = ModelStages.load(config, threads=1)
    assert stages.runner.backend.name == BACKEND
    sink = CollectingSink()
    pipeline = Pipeline(config, stages, sink)
    pipeline.open_source()
    pipeline.start()
    return pipeline, sink


def run_to_end(config: PipelineConfig) -> tuple[Pipeline, CollectingSink]:
    pipeline, sink = start(config)
    assert pipeline.join(timeout=60)
    assert pipeline.state == "finished", pipeline.error
    return pipeline, sink


def csv_source(path: Path, **settings: Any) -> dict[str, Any]:
    return {"type": "file", "path": str(path), "header": True, "time": {"column": "t"},
            "channels": [{"name": "ax"}, {"name": "ay"}, {"name": "az"}], **settings}


@pytest.mark.backend
def test_held_out_vibration_accuracy_through_the_file_source() -> None:
    rows = held_out_rows()
    _, sink = run_to_end(vibration_pipeline(csv_source(HELD_OUT)))
    assert len(sink.results) == (len(rows) - WINDOW) // HOP + 1
    correct = scored = 0
    for result in sink.results:
        window = result.window
        assert window is not None and window.count == WINDOW
        first = round(window.start * RATE_HZ)  # t is the row index in ms
        labels = {row["label"] for row in rows[first:first + WINDOW]}
        assert float(rows[first + WINDOW - 1]["t"]) == pytest.approx(window.end)
        if len(labels) == 1:  # windows straddling a state change have no single truth
            scored += 1
            correct += result.predictions[0].label == labels.pop()
    assert scored == 366
    assert correct / scored >= 0.90, f"accuracy {correct}/{scored}"


def test_synthetic_sensor_plays_states_the_model_recognises() -> None:
    states = ["off", "normal", "imbalance", "bearing_fault"]
    state_s = 2.0
    config = vibration_pipeline({"type": "synthetic_sensor", "realtime": False, "seed": 5,
                                 "states": states, "state_s": state_s,
                                 "duration_s": 4 * state_s * 2})
    _, sink = run_to_end(config)
    first = sink.results[0].window
    assert first is not None
    first_start = first.start
    segment = round(state_s * RATE_HZ)
    correct = scored = 0
    for result in sink.results:
        assert result.window is not None
        begin = round((result.window.start - first_start) * RATE_HZ)
        if begin // segment != (begin + WINDOW - 1) // segment:
            continue
        scored += 1
        correct += result.predictions[0].label == states[(begin // segment) % len(states)]
    assert scored >= 100
    assert correct / scored >= 0.90, f"accuracy {correct}/{scored}"


def json_line(row: dict[str, str]) -> str:
    return json.dumps({"t": float(row["t"]), "ax": float(row["ax"]), "ay": float(row["ay"]),
                       "az": float(row["az"])})


def test_malformed_lines_and_gaps_are_counted_and_the_pipeline_keeps_going(
        tmp_path: Path) -> None:
    rows = held_out_rows()[:2000]  # the first 2 s: 'off'
    lines = [json_line(row) for row in rows[:1000]]
    lines[300:300] = ['{"t": 0.3, "ax": 0.1, "ay":']  # cut short: bad JSON
    lines[600:600] = ['{"t": 0.6, "ax": 0.1, "ay": 0.2}']  # az missing
    lines[900:900] = ['{"t": 0.9, "ax": "high", "ay": 0.2, "az": 1.0}']  # not a number
    lines += [json_line(row) for row in rows[1100:]]  # 100 ms without samples: a gap
    path = tmp_path / "readings.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = {"type": "file", "path": str(path), "format": "json", "time": {"field": "t"},
              "channels": [{"name": "ax"}, {"name": "ay"}, {"name": "az"}]}
    pipeline, sink = run_to_end(vibration_pipeline(source))

    # windows of each unbroken stretch: 1000 samples before the gap, 900 after it
    expected = [(n - WINDOW) // HOP + 1 for n in (1000, 900)]
    assert len(sink.results) == sum(expected) == 12
    counters = pipeline.snapshot()["sensor"]
    assert counters["malformed"] == {"total": 3, "bad_json": 1, "missing_field": 1,
                                     "non_numeric": 1, "bad_encoding": 0, "too_long": 0}
    assert counters["gaps"] == 1 and counters["backwards"] == 0
    assert counters["samples"] == 1900 and counters["windows"] == 12
    assert counters["unused_samples"] == 1000 - ((expected[0] - 1) * HOP + WINDOW)
    after_gap = [r for r in sink.results if r.window and r.window.start >= 1.1]
    assert len(after_gap) == expected[1]
    assert all(r.predictions[0].label == "off" for r in sink.results)


RAW_WIDTH = 7  # fixed-width values, rewritten in place without truncating the file
ACCEL_SCALE = 0.001  # g per count, in the shared in_accel_scale


@pytest.fixture
def fake_iio(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """iio:device0 'adxl345' whose three raw files count up every 2 ms (ax, ay, az + 1000)."""
    device = tmp_path / "iio:device0"
    device.mkdir()
    (device / "name").write_text("adxl345\n")
    (device / "in_accel_scale").write_text(f"{ACCEL_SCALE}\n")
    (device / "in_accel_z_offset").write_text("1000\n")
    fds = []
    for axis in "xyz":
        path = device / f"in_accel_{axis}_raw"
        path.write_text(f"{0:{RAW_WIDTH - 1}d}\n")
        fds.append(os.open(path, os.O_WRONLY))
    written: list[int] = []
    stop = threading.Event()

    def count_up() -> None:
        value = 0
        while not stop.wait(0.002):
            value += 1
            for fd in fds:
                os.pwrite(fd, f"{value:{RAW_WIDTH - 1}d}\n".encode(), 0)
            written.append(value)

    writer = threading.Thread(target=count_up, daemon=True)
    writer.start()
    try:
        yield tmp_path, written
    finally:
        stop.set()
        writer.join(2)
        for fd in fds:
            os.close(fd)


def test_iio_channels_are_polled_into_windows(fake_iio: tuple[Path, list[int]]) -> None:
    base, written = fake_iio
    source = {"type": "iio", "device": "adxl345", "base_path": str(base), "rate_hz": 1000,
              "channels": [{"name": f"accel_{axis}"} for axis in "xyz"]}
    # a busy 2-core machine cannot promise 1 kHz polls from Python: check what was read,
    # not how regularly
    pipeline, sink = start(vibration_pipeline(source, rate_tolerance=0.5, max_gap_s=0.5))
    deadline = time.monotonic() + 20
    while len(sink.results) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    assert pipeline.join(10)
    assert len(sink.results) >= 3, pipeline.snapshot()
    seen: set[float] = set()
    for result in sink.results:
        assert result.window is not None
        samples = result.window.samples.astype(np.float64)
        ax, ay, az = samples[:, 0], samples[:, 1], samples[:, 2]
        np.testing.assert_allclose(ay, ax, atol=ACCEL_SCALE * 2)  # same count, maybe one apart
        np.testing.assert_allclose(az - ax, 1000 * ACCEL_SCALE, atol=ACCEL_SCALE * 2)
        assert np.all(np.diff(ax) >= 0)  # counts only go up, sample after sample
        seen.update(np.round(ax / ACCEL_SCALE).tolist())
    assert seen <= {0.0, *map(float, written)}
    assert len(seen) > 50  # the files changed while they were polled
    assert pipeline.snapshot()["sensor"]["windows"] == len(sink.results)


def test_stopping_infers_every_window_already_cut() -> None:
    # unpaced blocks of 4096 samples complete 32 windows at once
    pipeline, sink = start(vibration_pipeline({"type": "synthetic_sensor", "realtime": False}))
    deadline = time.monotonic() + 20
    while len(sink.results) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipeline.stop()
    assert pipeline.join(10)
    assert pipeline.state == "stopped"
    counters = pipeline.snapshot()["sensor"]
    assert counters["pending_windows"] == 0
    assert len(sink.results) == counters["windows"] >= 50
