"""YOLO-layout decoding and NMS through the real interpreter (tests/models/README.md).

The fixtures are real .tflite models whose output is a designed candidate table. The
detections the runtime reports are checked against that table, and against a naive
per-candidate decoder run here on the interpreter's raw output; boxes of frames of any size,
fitted by letterbox, crop or stretch, come back to the frame within one pixel.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import ModelStages
from edge_runtime.types import Detection, Frame, Image

FIXTURES = Path(__file__).parent.parent / "models"
LAYOUTS = ("yolo_v8", "yolo_v5")
INPUT_PX = 64
OUTPUT_SCALE, OUTPUT_ZERO_POINT = 0.25, -128  # the fixtures' output quantization (README)
Designed = tuple[tuple[float, float, float, float], int, float]  # (cx, cy, w, h), class, score
# the designed candidates an all-black input gives (cx, cy, w, h in input pixels)
A: Designed = ((20, 20, 16, 16), 0, 1.0)
B: Designed = ((46, 18, 14, 20), 1, 1.0)
C: Designed = ((32, 46, 24, 14), 2, 0.75)
D: Designed = ((21, 20, 16, 16), 1, 0.75)
BLACK = np.zeros((INPUT_PX, INPUT_PX, 3), np.uint8)


def load(layout: str, resize: str = "stretch", labels: Path | None = None,
         **task: Any) -> ModelStages:
    return _load(layout, resize, labels, tuple(sorted(task.items())))


@functools.cache
def _load(layout: str, resize: str, labels: Path | None,
          task: tuple[tuple[str, Any], ...]) -> ModelStages:
    config = PipelineConfig.model_validate({
        "name": "yolo", "source": {"type": "synthetic"},
        "model": {"path": str(FIXTURES / f"{layout}_layout.tflite"), "threads": 1,
                  "labels": None if labels is None else str(labels)},
        "preprocess": {"resize": resize},
        "task": {"type": "detect", **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in task}}})
    return ModelStages.load(config, threads=1)


def corners(designed: Designed) -> tuple[float, float, float, float]:
    (cx, cy, w, h), _, _ = designed
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def summary(detections: tuple[Any, ...]) -> list[tuple[int, float, tuple[float, ...]]]:
    assert all(isinstance(d, Detection) for d in detections)
    return [(d.index, d.score, d.box_px) for d in detections]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("iou", [0.45, 0.7])
def test_designed_candidates_decode_to_the_expected_boxes(layout: str, iou: float) -> None:
    per_class = load(layout, min_score=0.3, iou_threshold=iou).process(BLACK)
    assert summary(per_class.predictions) == [
        (cls, score, corners(d)) for d in (A, B, C, D) for _, cls, score in [d]]
    assert per_class.extra == {"frame_size": [INPUT_PX, INPUT_PX]}
    a = per_class.predictions[0]
    assert isinstance(a, Detection)
    assert a.box == (12 / 64, 12 / 64, 28 / 64, 28 / 64) and a.label == "0"
    agnostic = load(layout, min_score=0.3, iou_threshold=iou,
                    class_agnostic_nms=True).process(BLACK)
    assert [d.index for d in agnostic.predictions] == [0, 1, 2]  # D went with A


def naive_detections(raw: np.ndarray, layout: str, min_score: float, iou_threshold: float,
                     agnostic: bool) -> list[tuple[int, float, tuple[float, ...]]]:
    """Decode the interpreter's raw int8 output candidate by candidate, NMS as a loop."""
    real = OUTPUT_SCALE * (raw.astype(np.float64) - OUTPUT_ZERO_POINT)
    rows = real[0].T if layout == "yolo_v8" else real[0]  # one row per candidate
    found = []
    for index, row in enumerate(rows):
        cx, cy, w, h = row[:4]
        scores = list(row[4:]) if layout == "yolo_v8" else [row[4] * s for s in row[5:]]
        best = max(range(len(scores)), key=lambda c: (scores[c], -c))
        if scores[best] >= min_score:
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            found.append((index, best, scores[best], box))

    def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        inter = (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                 * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    kept: list[tuple[int, int, float, tuple[float, ...]]] = []
    for candidate in sorted(found, key=lambda f: (-f[2], f[0])):
        if all((not agnostic and k[1] != candidate[1]) or iou(k[3], candidate[3])
               <= iou_threshold for k in kept):
            kept.append(candidate)
    clip = [tuple(min(max(v, 0.0), INPUT_PX) for v in box) for _, _, _, box in kept]
    return [(cls, score, box) for (_, cls, score, _), box in zip(kept, clip, strict=True)]


def frames() -> list[Image]:
    rng = np.random.default_rng(7)
    return [BLACK, np.full_like(BLACK, 255), np.full_like(BLACK, 128),
            *(rng.integers(0, 256, BLACK.shape, dtype=np.uint8) for _ in range(3))]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("min_score", "iou", "agnostic", "on_black"), [
    (0.3, 0.45, False, 4),  # A, B, C, D
    (0.6, 0.45, True, 3),  # A, B, C
    (0.2, 0.7, False, 6),  # and the two candidates scoring 0.25
])
def test_runtime_matches_a_naive_decoder_on_the_interpreter_output(
        layout: str, min_score: float, iou: float, agnostic: bool, on_black: int) -> None:
    stages = load(layout, min_score=min_score, iou_threshold=iou, class_agnostic_nms=agnostic)
    for frame in frames():
        buffer = stages.preprocessor.new_input_buffer()
        stages.preprocessor.fill_frame(Frame(0, 0.0, 0.0, image=frame), buffer)
        (raw,) = stages.runner.invoke([buffer])
        expected = naive_detections(raw, layout, min_score, iou, agnostic)
        got = summary(stages.process(frame).predictions)
        assert [c for c, _, _ in got] == [c for c, _, _ in expected]
        for (_, score, box), (_, want_score, want) in zip(got, expected, strict=True):
            assert score == pytest.approx(want_score)
            assert box == pytest.approx(want, abs=1e-4)
        if frame is BLACK:
            assert len(got) == on_black


def expected_in_frame(designed: Designed, mode: str, width: int,
                      height: int) -> tuple[float, float, float, float] | None:
    """Where a tensor box lands in a width x height frame, written out per fitting mode:
    letterbox scales the frame to fit and centres it (bands of padding), crop takes the
    centred square (the model input is square) and scales it, stretch scales each axis."""
    x0, y0, x1, y1 = corners(designed)
    if mode == "stretch":
        sx, sy, ox, oy, cx, cy = width / INPUT_PX, height / INPUT_PX, 0, 0, 0, 0
    elif mode == "letterbox":
        scale = min(INPUT_PX / width, INPUT_PX / height)
        scaled_w = min(INPUT_PX, max(1, round(width * scale)))
        scaled_h = min(INPUT_PX, max(1, round(height * scale)))
        sx, sy = width / scaled_w, height / scaled_h
        ox, oy, cx, cy = (INPUT_PX - scaled_w) // 2, (INPUT_PX - scaled_h) // 2, 0, 0
    else:
        side = min(width, height)
        sx = sy = side / INPUT_PX
        ox, oy, cx, cy = 0, 0, (width - side) // 2, (height - side) // 2
    box = (min(max((x0 - ox) * sx + cx, 0), width), min(max((y0 - oy) * sy + cy, 0), height),
           min(max((x1 - ox) * sx + cx, 0), width), min(max((y1 - oy) * sy + cy, 0), height))
    return box if box[2] > box[0] and box[3] > box[1] else None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(LAYOUTS), st.sampled_from(["letterbox", "crop", "stretch"]),
       st.integers(16, 640), st.integers(16, 640))
def test_boxes_return_to_the_frame_within_a_pixel(layout: str, mode: str, width: int,
                                                  height: int) -> None:
    """A black frame of any size gives the designed table (the letterbox pads with 0 too)."""
    result = load(layout, mode, min_score=0.3).process(np.zeros((height, width, 3), np.uint8))
    expected = [(cls, box) for d in (A, B, C, D) for _, cls, _ in [d]
                if (box := expected_in_frame(d, mode, width, height)) is not None]
    got = [(d.index, d.box_px) for d in result.predictions if isinstance(d, Detection)]
    assert [cls for cls, _ in got] == [cls for cls, _ in expected]
    for (_, box), (_, want) in zip(got, expected, strict=True):
        assert np.max(np.abs(np.subtract(box, want))) <= 1.0, (box, want)
    for detection in result.predictions:
        assert isinstance(detection, Detection)
        assert detection.box == pytest.approx(np.divide(detection.box_px,
                                                        [width, height, width, height]))
    assert result.extra == {"frame_size": [width, height]}


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("cat\ndog\nbird\n")
    return path


def test_filters_allow_list_region_and_count(labels_file: Path) -> None:
    def indices(**task: Any) -> list[int]:
        result = load("yolo_v8", labels=labels_file, min_score=0.3, **task).process(BLACK)
        return [d.index for d in result.predictions if isinstance(d, Detection)]

    named = load("yolo_v8", labels=labels_file, min_score=0.3).process(BLACK)
    assert [d.label for d in named.predictions] == ["cat", "dog", "bird", "dog"]
    assert indices(classes=("dog",)) == [1, 1]
    assert indices(classes=(0, "bird")) == [0, 2]
    # left of x = 0.45: the centres of A (0.31) and D (0.33); B (0.72) and C (0.5) are out
    left = ((0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0))
    assert indices(region=left) == [0, 1]
    assert indices(max_detections=2) == [0, 1]


def test_allow_list_applies_before_nms(labels_file: Path) -> None:
    """With class-agnostic NMS, D (dog) is suppressed by A (cat) unless cat is not wanted."""
    both = load("yolo_v8", labels=labels_file, min_score=0.3, class_agnostic_nms=True)
    assert [d.index for d in both.process(BLACK).predictions] == [0, 1, 2]
    dogs = load("yolo_v8", labels=labels_file, min_score=0.3, class_agnostic_nms=True,
                classes=("dog",))
    assert [d.index for d in dogs.process(BLACK).predictions] == [1, 1]
