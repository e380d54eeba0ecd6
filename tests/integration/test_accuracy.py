"""Top-1 accuracy of the demo digits model through the full pipeline.

frame file -> decode -> preprocess -> real interpreter -> postprocess, on the held-out 30 %
of scikit-learn's digits (never seen in training). Runs under ai-edge-litert and again
under tflite-runtime (``-m backend`` with EDGE_RUNTIME_TEST_BACKEND, see run-tests.sh).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import ModelStages, Pipeline
from edge_runtime.sources.images import ImageFolderSource
from edge_runtime.sources.opencv import CaptureSource
from edge_runtime.testing import CollectingSink

pytestmark = pytest.mark.backend
MODELS = models_dir()
HELD_OUT_IMAGES = 540  # 30 % of 1,797
BACKEND = os.environ.get("EDGE_RUNTIME_TEST_BACKEND", "litert")


def pipeline_config(source: dict[str, object]) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "digits", "source": source,
        "model": {"path": str(MODELS / "digits_int8.tflite"),
                  "labels": str(MODELS / "digits_labels.txt"), "backend": BACKEND,
                  "threads": 1},
        "task": {"type": "classify", "top_k": 1}})


def run_pipeline(config: PipelineConfig, source: object) -> CollectingSink:
    stages = ModelStages.load(config, threads=1)
    assert stages.runner.backend.name == BACKEND
    sink = CollectingSink()
    pipeline = Pipeline(config, stages, sink, source=source)  # type: ignore[arg-type]
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(timeout=120)
    assert pipeline.state == "finished", pipeline.error
    return sink


def test_held_out_digits_top1_from_image_files() -> None:
    folder = MODELS / "demo" / "digits"
    config = pipeline_config({"type": "images", "path": str(folder)})
    sink = run_pipeline(config, ImageFolderSource(str(folder)))
    assert len(sink.results) == HELD_OUT_IMAGES
    correct = 0
    for result in sink.results:
        assert result.filename is not None
        truth = Path(result.filename).stem.split("_")[1]  # NNNN_<label>.jpg
        correct += result.predictions[0].label == truth
    accuracy = correct / len(sink.results)
    assert accuracy >= 0.95, f"top-1 {accuracy:.3f} on {len(sink.results)} held-out frames"


def test_held_out_digits_top1_from_the_demo_video() -> None:
    video = MODELS / "demo" / "digits.mp4"
    with (MODELS / "demo" / "digits_labels.csv").open() as handle:
        truth = {int(row["frame"]): row["label"] for row in csv.DictReader(handle)}
    config = pipeline_config({"type": "video", "path": str(video)})
    sink = run_pipeline(config, CaptureSource(video, is_file=True))
    assert len(sink.results) == len(truth) == HELD_OUT_IMAGES
    correct = sum(r.predictions[0].label == truth[r.frame_number] for r in sink.results)
    assert correct / len(sink.results) >= 0.95
