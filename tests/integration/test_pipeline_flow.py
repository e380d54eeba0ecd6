"""How frames flow through the pipeline threads: counters, latest-frame-wins, buffer reuse.

Real digits model through the real interpreter; no broker (results are collected).
Behaviour only: speed is measured by ``edge-runtime bench``, never asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import INPUT_BUFFERS, ModelStages, Pipeline
from edge_runtime.runners.interpreter import TFLiteRunner
from edge_runtime.sources.images import decode_image
from edge_runtime.sources.synthetic import SyntheticSource as SyntheticFrames
from edge_runtime.testing import CollectingSink
from edge_runtime.types import Frame

MODELS = models_dir()
FRAMES = 120
CORRUPT_EVERY = 10  # frames 4, 14, 24... are not decodable JPEGs (the last frame is valid)
CORRUPT_PHASE = 4
JOIN_TIMEOUT_S = 60.0


def config() -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "flow", "source": {"type": "synthetic"},
        "model": {"path": str(MODELS / "digits_int8.tflite"), "threads": 1},
        "task": {"type": "classify", "top_k": 1}})


class JpegBurst:
    """A finite source handing out pre-encoded frames as fast as it is read.

    ``live=True`` makes the pipeline use its latest-frame-wins slot, and since nothing
    paces this source it outruns the pipeline: stale frames must be dropped.
    """

    def __init__(self, count: int, *, live: bool) -> None:
        self.live = live
        self.description = f"{count} jpeg frames"
        rng = np.random.default_rng(7)
        image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        self._jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        self._count = count
        self._number = 0

    def open(self) -> None:
        self._number = 0

    def read(self) -> Frame | None:
        if self._number >= self._count:
            return None
        n = self._number
        self._number += 1
        data = b"not a jpeg" if n % CORRUPT_EVERY == CORRUPT_PHASE else self._jpeg
        return Frame(n, time.time(), time.monotonic(), encoded=data, decoder=decode_image)

    def close(self) -> None:
        self._number = self._count


def run(source: JpegBurst, stages: ModelStages | None = None) -> tuple[Pipeline, CollectingSink]:
    stages = stages or ModelStages.load(config(), threads=1)
    sink = CollectingSink()
    pipeline = Pipeline(config(), stages, sink, source=source)
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(JOIN_TIMEOUT_S)
    assert pipeline.state == "finished", pipeline.error
    return pipeline, sink


def test_unpaced_source_loses_nothing_and_counters_add_up() -> None:
    pipeline, sink = run(JpegBurst(FRAMES, live=False))
    corrupt = FRAMES // CORRUPT_EVERY
    snap = pipeline.snapshot()
    assert snap["captured"] == FRAMES
    assert snap["dropped_frames"] == 0
    assert snap["decode_errors"] == corrupt
    assert snap["inferred"] == snap["results"] == FRAMES - corrupt
    expected = [n for n in range(FRAMES) if n % CORRUPT_EVERY != CORRUPT_PHASE]
    assert [r.frame_number for r in sink.results] == expected


def test_live_source_drops_stale_frames_and_counters_add_up() -> None:
    pipeline, sink = run(JpegBurst(FRAMES, live=True))
    snap = pipeline.snapshot()
    assert snap["captured"] == FRAMES
    assert snap["dropped_frames"] > 0  # the burst outran the pipeline
    assert snap["captured"] == (snap["inferred"] + snap["dropped_frames"]
                                + snap["decode_errors"])
    assert snap["results"] == snap["inferred"] == len(sink.results)
    numbers = [r.frame_number for r in sink.results]
    assert numbers == sorted(set(numbers))  # never an older frame after a newer one
    assert numbers[-1] == FRAMES - 1  # the newest frame always wins the slot at the end


class AddressRecordingRunner(TFLiteRunner):
    """The real runner, noting the address of the input array of every invoke."""

    addresses: list[int]

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        self.addresses.append(inputs[0].ctypes.data)
        return super().invoke(inputs)


def test_input_buffers_are_pooled_not_allocated_per_frame() -> None:
    stages = ModelStages.load(config(), threads=1)
    runner = AddressRecordingRunner(stages.model, threads=1)
    runner.addresses = []
    stages.runner = runner
    source = JpegBurst(FRAMES, live=False)
    sink = CollectingSink()
    pipeline = Pipeline(config(), stages, sink, source=source)
    pool = list(pipeline.input_buffers)
    pool_addresses = {b.ctypes.data for b in pool}
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(JOIN_TIMEOUT_S)
    assert pipeline.state == "finished", pipeline.error

    inferred = FRAMES - FRAMES // CORRUPT_EVERY
    assert len(runner.addresses) == inferred
    assert len(pool) == len(pool_addresses) == INPUT_BUFFERS
    assert set(runner.addresses) == pool_addresses  # every frame went through the pool
    assert all(a is b for a, b in zip(pipeline.input_buffers, pool, strict=True))


def test_counters_add_up_when_stopped_mid_stream() -> None:
    """An endless unpaced source is stopped while the capture thread waits to hand over a
    frame: that frame was never handed over, so it is not counted as captured."""
    stages = ModelStages.load(config(), threads=1)
    sink = CollectingSink()
    source = SyntheticFrames(128, 96, encode=True)  # unpaced: hand-over with back-pressure
    pipeline = Pipeline(config(), stages, sink, source=source)
    pipeline.open_source()
    pipeline.start()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while pipeline.stats.results < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipeline.stop()
    assert pipeline.join(JOIN_TIMEOUT_S)
    snap = pipeline.snapshot()
    assert snap["state"] == "stopped"
    assert snap["results"] >= 50
    assert snap["captured"] == (snap["inferred"] + snap["dropped_frames"]
                                + snap["decode_errors"])
    assert snap["results"] == snap["inferred"] == len(sink.results)
