"""The demo detector through the full pipeline on held-out generated scenes.

frame file -> decode -> preprocess -> real interpreter (TFLite_Detection_PostProcess) ->
detect postprocessing -> boxes in frame pixels, with the settings of models/demo-shapes.yaml,
scored against the ground-truth boxes (models/demo/shapes/annotations.json): recall and
precision at IoU 0.5. Runs under ai-edge-litert and again under tflite-runtime
(``-m backend``). Also: the same model with its outputs listed in another exporter's order
under uninformative names gives the same detections.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config import load_config
from edge_runtime.config.schema import ImagesSource, PipelineConfig
from edge_runtime.pipeline import ModelStages, Pipeline
from edge_runtime.sources.images import ImageFolderSource
from edge_runtime.testing import CollectingSink
from edge_runtime.types import Detection

pytestmark = pytest.mark.backend
MODELS = models_dir()
MODEL = MODELS / "shapes_ssd_int8.tflite"
SCENES = MODELS / "demo" / "shapes"
BACKEND = os.environ.get("EDGE_RUNTIME_TEST_BACKEND", "litert")
MATCH_IOU = 0.5
REQUIRED_RECALL = REQUIRED_PRECISION = 0.9

needs_model = pytest.mark.skipif(
    not (MODEL.is_file() and (SCENES / "annotations.json").is_file()),
    reason="the demo detector (models/shapes_ssd_int8.tflite and models/demo/shapes/) is not "
    "there: make it with tools/make_shapes_detector.py")
Box = tuple[float, float, float, float]


def demo_pipeline(model: Path = MODEL) -> PipelineConfig:
    """The demo config's pipeline, reading the held-out scene files."""
    demo = load_config(MODELS / "demo-shapes.yaml").pipelines[0]
    return demo.model_copy(update={
        "source": ImagesSource(type="images", path=str(SCENES)),
        "model": demo.model.model_copy(update={"path": model, "backend": BACKEND})})


def detect_scenes(config: PipelineConfig) -> dict[str, list[Detection]]:
    stages = ModelStages.load(config, threads=1)
    sink = CollectingSink()
    pipeline = Pipeline(config, stages, sink, source=ImageFolderSource(str(SCENES)))
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(timeout=120)
    assert pipeline.state == "finished", pipeline.error
    found: dict[str, list[Detection]] = {}
    for result in sink.results:
        assert result.filename is not None
        found[result.filename] = [d for d in result.predictions if isinstance(d, Detection)]
    return found


def iou(a: Box, b: Box) -> float:
    inter = (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
             * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def true_positives(truth: list[dict[str, Any]], detections: list[Detection]) -> int:
    """Greedy matching, best detection first, to the best unmatched box of its label."""
    unmatched = [(t["label"], (t["xmin"], t["ymin"], t["xmax"], t["ymax"])) for t in truth]
    matched = 0
    for detection in sorted(detections, key=lambda d: -d.score):
        candidates = [t for t in unmatched if t[0] == detection.label]
        best = max(candidates, key=lambda t: iou(t[1], detection.box_px), default=None)
        if best is not None and iou(best[1], detection.box_px) >= MATCH_IOU:
            unmatched.remove(best)
            matched += 1
    return matched


@needs_model
def test_held_out_scenes_recall_and_precision() -> None:
    annotations = json.loads((SCENES / "annotations.json").read_text())
    found = detect_scenes(demo_pipeline())
    assert len(found) == len(annotations)
    shapes = sum(len(a["boxes"]) for a in annotations)
    detections = sum(len(d) for d in found.values())
    matched = sum(true_positives(a["boxes"], found[a["file"]]) for a in annotations)
    recall, precision = matched / shapes, matched / max(detections, 1)
    assert recall >= REQUIRED_RECALL and precision >= REQUIRED_PRECISION, (
        f"recall {recall:.3f}, precision {precision:.3f} ({matched} of {shapes} shapes, "
        f"{detections} detections)")


@needs_model
def test_outputs_found_whatever_their_order_and_names(tmp_path: Path) -> None:
    """TF2 Object Detection API exports list scores, boxes, count, classes."""
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    from tests.support.tflite_edit import reorder_outputs

    shuffled = tmp_path / "shapes_tf2_order.tflite"
    shuffled.write_bytes(reorder_outputs(MODEL.read_bytes(), order=(2, 0, 3, 1)))
    config = demo_pipeline(shuffled)
    stages = ModelStages.load(config, threads=1)
    assert [list(o.shape) for o in stages.runner.outputs] == [[1, 10], [1, 10, 4], [1],
                                                                [1, 10]]
    assert detect_scenes(config) == detect_scenes(demo_pipeline())
