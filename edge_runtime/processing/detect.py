"""Detection outputs -> candidate boxes; non-maximum suppression; regions. Pure numpy.

Two output families are decoded:

- SSD / EfficientDet-Lite models ending in ``TFLite_Detection_PostProcess``: four outputs,
  boxes ``[1, N, 4]`` (ymin, xmin, ymax, xmax normalised to the model input), classes
  ``[1, N]``, scores ``[1, N]`` and count ``[1]``. The op already applied NMS. Exporters
  list the outputs in different orders (TF1: boxes, classes, scores, count; TF2: scores,
  boxes, count, classes), so they are told apart by shape, and classes from scores by
  content (class indices are whole numbers).
- YOLO raw outputs, one tensor: Ultralytics v8 ``[1, 4 + C, N]`` (rows cx, cy, w, h, then
  one score per class) and YOLOv5 ``[1, N, 5 + C]`` (cx, cy, w, h, objectness, class
  scores; score = objectness x class score). Boxes are in model-input pixels or normalised.
  Threshold, then NMS here.

Every box leaves this module as (xmin, ymin, xmax, ymax) normalised to the model input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_runtime.processing.quantization import dequantize
from edge_runtime.types import QuantParams

Layout = Literal["ssd", "yolo_v8", "yolo_v5"]
BoxUnits = Literal["pixels", "normalised"]
FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]

YOLO_V8_BOX_ROWS = 4  # cx, cy, w, h
YOLO_V5_BOX_COLUMNS = 5  # cx, cy, w, h, objectness
# Normalised coordinates stay near 0..1; pixel coordinates of any real input go far beyond.
NORMALISED_LIMIT = 2.0
MAX_NMS_CANDIDATES = 1000  # best-scoring candidates that enter NMS (its cost is quadratic)


@dataclass(frozen=True)
class Candidates:
    """Boxes (N, 4) xmin, ymin, xmax, ymax normalised to the model input; scores (N,);
    class indices (N,)."""

    boxes: FloatArray
    scores: FloatArray
    classes: IndexArray

    def take(self, which: npt.NDArray[Any]) -> Candidates:
        return Candidates(self.boxes[which], self.scores[which], self.classes[which])

    def __len__(self) -> int:
        return int(self.scores.shape[0])


# --- SSD ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsdOutputs:
    """Positions of the four SSD outputs. ``pair`` holds classes and scores in an order the
    shapes cannot tell; ``classes_first`` is known when the tensor names tell."""

    boxes: int
    count: int
    pair: tuple[int, int]
    classes_first: bool | None


def ssd_outputs(shapes: Sequence[tuple[int, ...]],
                names: Sequence[str]) -> SsdOutputs | None:
    """Recognise the four outputs of TFLite_Detection_PostProcess by shape; None if not."""
    if len(shapes) != 4:
        return None
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[0] == 1 and s[2] == 4]
    count = [i for i, s in enumerate(shapes) if tuple(s) == (1,)]
    if len(boxes) != 1 or len(count) != 1:
        return None
    n = shapes[boxes[0]][1]
    pair = [i for i, s in enumerate(shapes) if tuple(s) == (1, n)]
    if len(pair) != 2:
        return None
    first, second = (names[i].lower() for i in pair)
    classes_first = None
    if "class" in first and "score" in second:
        classes_first = True
    elif "score" in first and "class" in second:
        classes_first = False
    return SsdOutputs(boxes[0], count[0], (pair[0], pair[1]), classes_first)


def classes_come_first(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool | None:
    """Which of two ``[N]`` arrays holds class indices (whole numbers) and which scores
    (fractions in 0..1): True if ``a`` is the classes, False if ``b``, None if the values
    cannot tell (e.g. no detection, or every score exactly 0 or 1)."""
    a_whole = bool(np.all(a == np.rint(a)))
    b_whole = bool(np.all(b == np.rint(b)))
    if a_whole != b_whole:
        return a_whole
    if a_whole and a.size:
        a_big, b_big = bool(np.max(a) > 1), bool(np.max(b) > 1)
        if a_big != b_big:
            return a_big
    return None


def decode_ssd(boxes: npt.NDArray[Any], classes: npt.NDArray[Any], scores: npt.NDArray[Any],
               count: npt.NDArray[Any]) -> Candidates:
    """The first ``count`` detections; boxes from (ymin, xmin, ymax, xmax) to x-first order,
    clipped to the input."""
    n = int(np.clip(np.rint(count.reshape(-1)[0]), 0, scores.shape[-1]))
    yxyx = boxes.reshape(-1, 4)[:n].astype(np.float32)
    xyxy = np.clip(yxyx[:, [1, 0, 3, 2]], 0.0, 1.0)
    return Candidates(xyxy, scores.reshape(-1)[:n].astype(np.float32),
                      np.rint(classes.reshape(-1)[:n]).astype(np.intp))


# --- YOLO ---------------------------------------------------------------------------------


def yolo_layout(shape: tuple[int, ...]) -> Layout | None:
    """v8 or v5 from a ``[1, A, B]`` shape: the candidate axis is the longer one."""
    if len(shape) != 3 or shape[0] != 1:
        return None
    rows, columns = shape[1], shape[2]
    if YOLO_V8_BOX_ROWS < rows < columns:
        return "yolo_v8"
    if YOLO_V5_BOX_COLUMNS < columns < rows:
        return "yolo_v5"
    return None


def yolo_fits(shape: tuple[int, ...], layout: Layout) -> bool:
    """True when a ``[1, A, B]`` output has room for boxes and at least one class score."""
    if len(shape) != 3 or shape[0] != 1:
        return False
    if layout == "yolo_v8":
        return shape[1] > YOLO_V8_BOX_ROWS
    return shape[2] > YOLO_V5_BOX_COLUMNS


def yolo_class_count(shape: tuple[int, ...], layout: Layout) -> int:
    if layout == "yolo_v8":
        return shape[1] - YOLO_V8_BOX_ROWS
    return shape[2] - YOLO_V5_BOX_COLUMNS


def yolo_prefilter(output: npt.NDArray[Any], layout: Layout, quant: QuantParams,
                   min_score: float) -> IndexArray:
    """Candidates that reach ``min_score``, found on the raw output before dequantizing it
    all (a COCO export has 8400 x 84 or 25200 x 85 values; few candidates pass).

    Exact: the best class score of a candidate is the dequantized maximum of its raw class
    scores (dequantization is increasing), times the objectness for v5 (with the smallest
    class score when the objectness is negative).
    """
    if layout == "yolo_v8":
        best = dequantize(output[0, YOLO_V8_BOX_ROWS:].max(axis=0), quant)
        return np.flatnonzero(best >= min_score)
    rows = output[0]
    classes = rows[:, YOLO_V5_BOX_COLUMNS:]
    objectness = dequantize(rows[:, 4], quant)
    extreme = dequantize(classes.max(axis=1), quant)
    negative = np.flatnonzero(objectness < 0)
    if negative.size:
        extreme[negative] = dequantize(classes[negative].min(axis=1), quant)
    return np.flatnonzero(objectness * extreme >= min_score)


def yolo_select(output: npt.NDArray[Any], layout: Layout, which: IndexArray) -> npt.NDArray[Any]:
    """The output with only the candidates ``which`` (v8: columns, v5: rows)."""
    selected: npt.NDArray[Any] = (output[:, :, which] if layout == "yolo_v8"
                                  else output[:, which, :])
    return selected


def yolo_table(output: npt.NDArray[np.float32], layout: Layout) -> FloatArray:
    """One row per candidate: cx, cy, w, h, then (v5) objectness and class scores."""
    table: FloatArray = output[0].T if layout == "yolo_v8" else output[0]
    return table


def yolo_units(table: FloatArray) -> BoxUnits:
    """Pixels or normalised, from the candidates' box values (for float outputs; quantized
    ones are told apart by their range, see ``units_from_range``)."""
    boxes = table[:, :4]
    return "normalised" if boxes.size == 0 or float(np.max(boxes)) <= NORMALISED_LIMIT \
        else "pixels"


def units_from_range(largest_value: float) -> BoxUnits:
    """A quantized output that cannot hold values beyond ~1 holds normalised boxes."""
    return "normalised" if largest_value <= NORMALISED_LIMIT else "pixels"


def decode_yolo(table: FloatArray, layout: Layout, units: BoxUnits,
                input_size: tuple[int, int], min_score: float) -> Candidates:
    """Candidates scoring >= ``min_score`` with their best class.

    v8: score = max class score. v5: score = objectness x class score (the objectness alone
    is not a detection score). ``input_size`` (w, h) normalises pixel boxes.
    """
    if layout == "yolo_v8":
        class_scores = table[:, YOLO_V8_BOX_ROWS:]
    else:
        class_scores = table[:, YOLO_V5_BOX_COLUMNS:] * table[:, 4:5]
    classes = np.argmax(class_scores, axis=1)
    scores = np.take_along_axis(class_scores, classes[:, None], axis=1)[:, 0]
    keep = np.flatnonzero(scores >= min_score)
    cx, cy, w, h = (table[keep, i] for i in range(4))
    if units == "pixels":
        width, height = input_size
        cx, cy, w, h = cx / width, cy / height, w / width, h / height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return Candidates(boxes.astype(np.float32), scores[keep].astype(np.float32),
                      classes[keep].astype(np.intp))


# --- NMS ----------------------------------------------------------------------------------


def iou_matrix(a: npt.NDArray[np.floating[Any]],
               b: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    iou: npt.NDArray[np.float64] = np.where(union > 0, inter / np.where(union > 0, union, 1),
                                            0.0)
    return iou


def best_first(scores: FloatArray) -> IndexArray:
    """Indices by descending score; ties keep the lower index first (deterministic)."""
    order: IndexArray = np.argsort(-scores, kind="stable")
    return order


def nms(boxes: npt.NDArray[np.floating[Any]], scores: FloatArray,
        iou_threshold: float) -> IndexArray:
    """Greedy NMS: keep the best box, drop the rest overlapping it by IoU > threshold,
    repeat. Returns the kept indices, best first."""
    order = best_first(scores)[:MAX_NMS_CANDIDATES]
    kept: list[int] = []
    while order.size:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        overlap = iou_matrix(boxes[best:best + 1], boxes[rest])[0]
        order = rest[overlap <= iou_threshold]
    return np.asarray(kept, dtype=np.intp)


def batched_nms(candidates: Candidates, iou_threshold: float,
                class_agnostic: bool = False) -> IndexArray:
    """NMS within each class (boxes of different classes never suppress each other), or
    across classes. Kept indices, best first."""
    boxes = candidates.boxes.astype(np.float64)
    if not class_agnostic and len(candidates):
        # shift each class to its own region of the plane: boxes of different classes can
        # then never overlap, and one NMS pass does every class
        shift = float(np.max(np.abs(boxes))) + 1.0
        boxes += (candidates.classes.astype(np.float64) * shift)[:, None]
    return nms(boxes, candidates.scores, iou_threshold)


# --- regions ------------------------------------------------------------------------------


def points_in_polygon(points: npt.NDArray[np.float64],
                      polygon: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Even-odd rule: which of ``points`` (N, 2) lie inside ``polygon`` (M, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]  # (N, 1) against every edge (M,)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    inside: npt.NDArray[np.bool_] = (np.sum(straddles & (x < crossing_x), axis=1) % 2) == 1
    return inside
