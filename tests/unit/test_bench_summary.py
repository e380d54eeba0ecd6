"""The pure parts of ``bench`` and the fast-path check: numbers in, report out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.bench import (
    LoopMeasure,
    busy_machine_note,
    combine,
    is_classifier,
    is_image_input,
    round_ratios,
    rounds_for,
    sensor_window_samples,
    summarise,
    thread_cores,
)
from edge_runtime.handoff import FrameSlot
from edge_runtime.runners.accelerators import ExecutionSplit
from edge_runtime.runners.fast_path import assess_fast_path, slow_int8_warning
from edge_runtime.types import QuantParams, TensorSpec

INT8 = TensorSpec("in", 0, (1, 8, 8, 3), np.dtype(np.int8), QuantParams(0.5, -3))
FLOAT = TensorSpec("in", 0, (1, 8, 8, 3), np.dtype(np.float32), QuantParams(0.0, 0))


def test_rounds_combine_by_adding_frames_and_time() -> None:
    rounds = [LoopMeasure(100, 1.0, 0.9), LoopMeasure(300, 2.0, 2.1)]
    total = combine(rounds)
    assert (total.frames, total.seconds, total.cpu_seconds) == (400, 3.0, 3.0)
    assert total.fps == pytest.approx(400 / 3.0)  # not the mean of 100 and 150 frames/s
    assert total.cores == pytest.approx(1.0)


def tensor(*shape: int) -> TensorSpec:
    return TensorSpec("t", 0, shape, np.dtype(np.int8), QuantParams(0.5, 0))


def test_what_bench_feeds_a_model_alone_follows_its_tensors() -> None:
    assert is_image_input(tensor(1, 224, 224, 3)) and is_image_input(tensor(1, 28, 28, 1))
    assert not is_image_input(tensor(1, 256, 3))
    assert sensor_window_samples(tensor(1, 256, 3)) == 256
    assert sensor_window_samples(tensor(1, 256, 6)) is None  # not the synthetic 3 axes
    assert sensor_window_samples(tensor(1, 224, 224, 3)) is None
    assert is_classifier([tensor(1, 1000)])
    assert not is_classifier([tensor(1, 10, 4), tensor(1, 10)])
    assert not is_classifier([tensor(1, 7, 84)])


def test_rounds_are_about_a_second_and_at_least_three() -> None:
    assert [rounds_for(s) for s in (0.5, 1.5, 6.0, 20.0)] == [3, 3, 6, 20]


def test_round_ratios_pair_neighbouring_loops() -> None:
    pipeline = [LoopMeasure(95, 1.0, 1.4), LoopMeasure(90, 1.0, 1.4)]
    raw = [LoopMeasure(100, 1.0, 1.0), LoopMeasure(120, 1.0, 1.0)]
    assert round_ratios(pipeline, raw) == pytest.approx([0.95, 0.75])


def test_rounds_combine_the_cpu_other_processes_took() -> None:
    rounds = [LoopMeasure(10, 1.0, 1.0, 0.25), LoopMeasure(10, 1.0, 1.0, 0.75)]
    assert combine(rounds).other_cores == pytest.approx(0.5)
    unknown = combine([LoopMeasure(10, 1.0, 1.0, 0.25), LoopMeasure(10, 1.0, 1.0)])
    assert unknown.other_cores is None


def test_competition_from_other_processes_is_noted() -> None:
    quiet = {"raw": LoopMeasure(100, 2.0, 2.0, 0.02), "pipeline": None}
    assert busy_machine_note(quiet) is None
    busy = {"raw": LoopMeasure(100, 2.0, 2.0, 0.1), "pipeline": LoopMeasure(90, 2.0, 2.8, 0.8)}
    note = busy_machine_note(busy)
    assert note is not None
    assert "0.40 during the pipeline loop" in note and "raw loop" not in note
    assert busy_machine_note({"raw": LoopMeasure(100, 2.0, 2.0)}) is None  # cannot be told


def test_summary_ratio_latency_and_missing_loops() -> None:
    samples = {"inference": np.array([1.0, 2.0, 3.0, 4.0, 100.0])}
    report = summarise(
        subject={"backend": "litert 2.3.0", "notes": ["from the subject"]},
        raw_rounds=[LoopMeasure(600, 6.0, 6.0, 0.0), LoopMeasure(400, 4.0, 4.0, 0.0)],
        pipeline_rounds=[LoopMeasure(576, 6.0, 8.4, 0.0), LoopMeasure(384, 4.0, 5.6, 2.0)],
        serial_rounds=[LoopMeasure(700, 10.0, 10.0)], stage_samples=samples,
        pipeline_threads={"infer": 0.98}, frames={"results": 960}, peak_rss_mb=88.04,
        first_prediction_s=0.41234)
    assert report["backend"] == "litert 2.3.0"
    assert (report["raw_fps"], report["pipeline_fps"], report["serial_fps"]) == (100, 96, 70)
    assert report["ratio"] == 0.96
    assert report["round_ratios"] == [0.96, 0.96]
    assert report["round_other_cores"][1] == {"pipeline": 0.5, "raw": 0.0}
    assert report["other_process_cores"] == {"raw": 0.0, "pipeline": 0.2, "serial": None}
    assert report["pipeline_vs_serial"] == pytest.approx(96 / 70, abs=1e-3)
    assert report["raw_invoke_ms"] == 10.0
    assert report["latency_ms"]["inference"]["p50"] == 3.0  # median of five
    assert report["cpu_cores"]["pipeline"] == 1.4
    assert report["peak_rss_mb"] == 88.0 and report["first_prediction_s"] == 0.412
    assert report["notes"][0] == "from the subject"
    assert "0.20 during the pipeline loop" in report["notes"][1]

    raw_only = summarise(subject={}, raw_rounds=[LoopMeasure(10, 1.0, 1.0)],
                         pipeline_rounds=[], serial_rounds=[], stage_samples={},
                         pipeline_threads={}, frames={}, peak_rss_mb=50.0,
                         first_prediction_s=None)
    assert raw_only["ratio"] is None and raw_only["pipeline_fps"] is None
    assert raw_only["latency_ms"] == {} and raw_only["round_ratios"] == []
    assert raw_only["notes"] == []


def test_thread_cpu_is_grouped_by_pipeline_stage() -> None:
    names = {11: "bench-capture", 12: "bench-infer", 13: "mqtt-link", 14: "MainThread"}
    used = {11: 0.5, 12: 9.0, 13: 0.25, 14: 0.0, 99: 1.0}  # 99: a native worker thread
    assert thread_cores(used, names, "bench", 10.0) == {
        "capture": 0.05, "infer": 0.9, "main": 0.0, "mqtt": 0.025, "other": 0.1}
    assert thread_cores(used, names, "bench", 0.0) == {}


def split(operators: int, delegated: int, kernels: int) -> ExecutionSplit:
    return ExecutionSplit(operators, delegated, kernels, {"QUANTIZE": operators - delegated})


def test_int8_model_xnnpack_took_is_on_the_fast_path() -> None:
    fast = assess_fast_path(split(12, 10, 1), [INT8])
    assert fast.xnnpack and not fast.slow_int8
    assert fast.describe() == "XNNPACK on (10 of 12 operators)"
    assert slow_int8_warning(fast, "litert 2.3.0", "m") is None


def test_int8_model_xnnpack_did_not_take_is_warned_about() -> None:
    slow = assess_fast_path(split(65, 0, 0), [INT8])
    assert slow.xnnpack is False and slow.slow_int8
    assert slow.describe() == "XNNPACK off (all 65 operators on the builtin kernels)"
    warning = slow_int8_warning(slow, "tflite-runtime 2.14.0", "mobilenet")
    assert warning is not None
    assert warning.startswith("tflite-runtime 2.14.0 has no fast int8 path for model mobilenet")
    assert "docs/performance.md" in warning


def test_no_verdict_without_an_op_table_or_for_a_float_model() -> None:
    hidden = assess_fast_path(None, [INT8])
    assert hidden.xnnpack is None and not hidden.slow_int8
    floating = assess_fast_path(split(3, 0, 0), [FLOAT])
    assert not floating.quantized and not floating.slow_int8


@given(st.lists(st.booleans(), max_size=200))
def test_latest_frame_wins_under_any_interleaving(puts: list[bool]) -> None:
    """True: the capture side puts the next frame; False: the consumer takes."""
    slot: FrameSlot[int] = FrameSlot(drop_stale=True)
    put = taken = 0
    newest: int | None = None
    for is_put in puts:
        if is_put:
            slot.put(put)
            newest = put
            put += 1
        else:
            item = slot.take(0)
            assert item == newest  # the newest frame, or None when nothing is waiting
            taken += item is not None
            newest = None
        assert len(slot) <= 1  # never grows
    assert slot.dropped == put - taken - len(slot)
