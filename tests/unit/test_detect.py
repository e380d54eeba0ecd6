"""Detection decoding, NMS and regions, against naive per-box loops written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge_runtime.processing.detect import (
    Candidates,
    Layout,
    batched_nms,
    classes_come_first,
    decode_ssd,
    decode_yolo,
    iou_matrix,
    points_in_polygon,
    ssd_outputs,
    units_from_range,
    yolo_layout,
    yolo_prefilter,
    yolo_select,
    yolo_table,
    yolo_units,
)
from edge_runtime.processing.quantization import dequantize
from edge_runtime.types import QuantParams

Box = tuple[float, float, float, float]


def naive_iou(a: Box, b: Box) -> float:
    """IoU of two (xmin, ymin, xmax, ymax) boxes, written out."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_nms(boxes: list[Box], scores: list[float], classes: list[int], threshold: float,
              agnostic: bool) -> list[int]:
    """Greedy NMS as a loop: best first (ties: lower index), keep a box unless a kept box
    of its class (any class when agnostic) overlaps it by IoU > threshold."""
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all((not agnostic and classes[k] != classes[i])
               or naive_iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def test_iou_of_known_boxes() -> None:
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [2, 0, 4, 2], [5, 5, 6, 6]], np.float32)
    iou = iou_matrix(boxes, boxes)
    assert iou[0, 1] == pytest.approx(1 / 7)  # 1 shared unit of 4 + 4 - 1
    assert iou[0, 2] == 0.0  # touching edges
    assert iou[3, 3] == 1.0
    assert np.allclose(iou, iou.T)


# box corners on a coarse 1/16 grid: IoUs exactly at the threshold happen, and come out
# identical in both computations, so the comparison cannot flip on rounding
grid = st.integers(0, 16).map(lambda v: v / 16)


@st.composite
def grid_boxes(draw: st.DrawFn) -> Box:
    x0, x1 = sorted((draw(grid), draw(grid)))
    y0, y1 = sorted((draw(grid), draw(grid)))
    assume(x1 > x0 and y1 > y0)
    return x0, y0, x1, y1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(grid_boxes(), st.integers(0, 20).map(lambda v: v / 20),
                          st.integers(0, 3)), max_size=40),
       st.sampled_from([0.3, 0.45, 0.5, 0.7]), st.booleans())
def test_nms_matches_the_naive_loop(items: list[tuple[Box, float, int]], threshold: float,
                                    agnostic: bool) -> None:
    boxes = [b for b, _, _ in items]
    scores = [s for _, s, _ in items]
    classes = [c for _, _, c in items]
    candidates = Candidates(np.array(boxes, np.float32).reshape(-1, 4),
                            np.array(scores, np.float32), np.array(classes, np.intp))
    kept = batched_nms(candidates, threshold, class_agnostic=agnostic)
    assert kept.tolist() == naive_nms(boxes, scores, classes, threshold, agnostic)


def test_per_class_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.95], [0.01, 0, 1, 1]], np.float32)
    candidates = Candidates(boxes, np.array([0.9, 0.8, 0.7], np.float32),
                            np.array([0, 1, 0], np.intp))
    assert batched_nms(candidates, 0.5).tolist() == [0, 1]
    assert batched_nms(candidates, 0.5, class_agnostic=True).tolist() == [0]


def test_nms_suppresses_only_above_the_threshold() -> None:
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], np.float32)  # IoU exactly 0.5
    candidates = Candidates(boxes, np.array([0.9, 0.8], np.float32), np.zeros(2, np.intp))
    assert batched_nms(candidates, 0.5).tolist() == [0, 1]
    assert batched_nms(candidates, 0.49).tolist() == [0]


@st.composite
def star_polygons(draw: st.DrawFn) -> np.ndarray:
    """Simple polygons: vertices at increasing angles around an inside point."""
    count = draw(st.integers(3, 9))
    angles = sorted(draw(st.lists(st.floats(0, 2 * np.pi, exclude_max=True), min_size=count,
                                  max_size=count, unique=True)))
    radii = draw(st.lists(st.floats(0.05, 0.5), min_size=count, max_size=count))
    cx, cy = draw(st.floats(0.3, 0.7)), draw(st.floats(0.3, 0.7))
    return np.array([(cx + r * np.cos(a), cy + r * np.sin(a))
                     for a, r in zip(angles, radii, strict=True)])


@settings(max_examples=200, deadline=None)
@given(star_polygons(), st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1,
                                 max_size=20))
def test_points_in_polygon_agree_with_opencv(polygon: np.ndarray,
                                             points: list[tuple[float, float]]) -> None:
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    for x, y in points:  # a point (almost) on an edge is neither: float32 vs float64
        assume(abs(cv2.pointPolygonTest(contour, (x, y), True)) > 1e-4)
    inside = points_in_polygon(np.array(points), polygon)
    expected = [cv2.pointPolygonTest(contour, (x, y), False) > 0 for x, y in points]
    assert inside.tolist() == expected


def test_ssd_outputs_recognised_in_any_order() -> None:
    tf1 = [(1, 10, 4), (1, 10), (1, 10), (1,)]
    tf2 = [(1, 10), (1, 10, 4), (1,), (1, 10)]
    assert ssd_outputs(tf1, ["a", "b", "c", "d"]) == ssd_outputs(tf1, ["a", "b", "c", "d"])
    found = ssd_outputs(tf2, ["StatefulPartitionedCall:1", "StatefulPartitionedCall:3",
                              "StatefulPartitionedCall:0", "StatefulPartitionedCall:2"])
    assert found is not None
    assert (found.boxes, found.count, found.pair, found.classes_first) == (1, 2, (0, 3), None)
    named = ssd_outputs(tf1, ["detection_boxes", "detection_classes", "detection_scores",
                              "num_detections"])
    assert named is not None and named.classes_first is True
    assert ssd_outputs([(1, 10)], ["scores"]) is None
    assert ssd_outputs([(1, 10, 4), (1, 9), (1, 10), (1,)], list("abcd")) is None


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([3.0, 0.0, 1.0], [0.9, 0.7, 0.6], True),  # whole numbers vs fractions
    ([0.9, 0.7], [2.0, 2.0], False),
    ([2.0, 1.0], [1.0, 1.0], True),  # both whole: only classes exceed 1
    ([1.0, 0.0], [1.0, 1.0], None),  # nothing tells them apart
    ([], [], None),
])
def test_classes_told_from_scores_by_content(a: list[float], b: list[float],
                                             expected: bool | None) -> None:
    assert classes_come_first(np.array(a), np.array(b)) is expected


def test_decode_ssd_takes_count_and_reorders_boxes() -> None:
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.0, 0.4, 1.2], [0, 0, 1, 1]]], np.float32)
    classes = np.array([[2.0, 0.0, 1.0]], np.float32)
    scores = np.array([[0.9, 0.8, 0.0]], np.float32)
    found = decode_ssd(boxes, classes, scores, np.array([2.0], np.float32))
    assert len(found) == 2
    assert np.allclose(found.boxes, [[0.2, 0.1, 0.6, 0.5], [0.0, 0.0, 1.0, 0.4]])
    assert found.classes.tolist() == [2, 0]


@pytest.mark.parametrize(("shape", "layout"), [
    ((1, 84, 8400), "yolo_v8"), ((1, 7, 84), "yolo_v8"), ((1, 25200, 85), "yolo_v5"),
    ((1, 84, 8), "yolo_v5"), ((1, 8, 8), None), ((1, 4, 100), None), ((1, 100, 5), None),
    ((1, 10), None), ((2, 7, 84), None)])
def test_yolo_layout_from_the_output_shape(shape: tuple[int, ...], layout: str | None) -> None:
    assert yolo_layout(shape) == layout


def naive_yolo(rows: list[list[float]], v5: bool, min_score: float,
               size: tuple[int, int] | None) -> list[tuple[Box, float, int]]:
    """Decode candidate rows one by one: best class score (v5: times objectness)."""
    out = []
    for row in rows:
        scores = [row[4] * c for c in row[5:]] if v5 else list(row[4:])
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        if scores[best] < min_score:
            continue
        cx, cy, w, h = row[:4]
        if size is not None:
            cx, cy, w, h = cx / size[0], cy / size[1], w / size[0], h / size[1]
        out.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), scores[best], best))
    return out


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 4), st.booleans(), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_decode_yolo_matches_the_naive_loop(candidates: int, classes: int, v5: bool,
                                            pixels: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    width = 4 + int(v5) + classes
    rows = rng.random((candidates, width)).astype(np.float32)
    rows[:, 4:] = np.round(rows[:, 4:] * 8) / 8  # ties between class scores happen
    if pixels:
        rows[:, :4] *= 320
    output = (rows.T if not v5 else rows)[None]  # v8 stores one column per candidate
    layout: Layout = "yolo_v5" if v5 else "yolo_v8"
    found = decode_yolo(yolo_table(output, layout), layout,
                        "pixels" if pixels else "normalised", (320, 320), 0.3)
    expected = naive_yolo(rows.astype(np.float64).tolist(), v5, 0.3,
                          (320, 320) if pixels else None)
    assert found.classes.tolist() == [c for _, _, c in expected]
    assert found.scores.tolist() == pytest.approx([s for _, s, _ in expected])
    assert np.allclose(found.boxes.reshape(-1, 4), np.reshape([b for b, _, _ in expected],
                                                              (-1, 4)), atol=1e-4)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 5), st.booleans(), st.integers(-128, 127),
       st.sampled_from([1 / 255, 0.01, 0.25]), st.floats(0.0, 0.9),
       st.integers(0, 2**32 - 1))
def test_prefilter_on_raw_values_loses_no_candidate(candidates: int, classes: int, v5: bool,
                                                    zero_point: int, scale: float,
                                                    min_score: float, seed: int) -> None:
    """Filtering the int8 output before dequantizing keeps exactly what the full decode
    keeps, also with negative real values (zero points inside the range)."""
    rng = np.random.default_rng(seed)
    width = 4 + int(v5) + classes
    rows = rng.integers(-128, 128, (candidates, width), dtype=np.int8)
    layout: Layout = "yolo_v5" if v5 else "yolo_v8"
    output = (rows.T if not v5 else rows)[None]
    quant = QuantParams(scale, zero_point)
    full = decode_yolo(yolo_table(dequantize(output, quant), layout), layout, "normalised",
                       (64, 64), min_score)
    passing = yolo_prefilter(output, layout, quant, min_score)
    assert len(passing) == len(full)
    filtered = decode_yolo(yolo_table(dequantize(yolo_select(output, layout, passing), quant),
                                      layout), layout, "normalised", (64, 64), min_score)
    assert np.array_equal(filtered.scores, full.scores)
    assert np.array_equal(filtered.classes, full.classes)
    assert np.array_equal(filtered.boxes, full.boxes)


def test_box_units_told_apart() -> None:
    assert units_from_range(63.75) == "pixels"
    assert units_from_range(1.0) == "normalised"
    normalised = np.array([[0.5, 0.5, 0.2, 0.3, 0.9], [0.9, 0.1, 0.1, 0.1, 0.2]], np.float32)
    assert yolo_units(normalised) == "normalised"
    pixels = normalised * np.array([320, 320, 320, 320, 1], np.float32)
    assert yolo_units(pixels) == "pixels"
