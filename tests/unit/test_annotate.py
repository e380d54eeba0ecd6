"""Annotated frames and JPEGs that fit their size cap."""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.processing.annotate import PALETTE, annotate, encode_jpeg
from edge_runtime.types import Classification, Detection


def test_boxes_are_drawn_on_a_copy_at_their_pixels() -> None:
    frame = np.zeros((100, 120, 3), np.uint8)
    detection = Detection(2, "triangle", 0.9, (0.0, 0.0, 0.0, 0.0), (20.0, 40.0, 60.0, 90.0))
    drawn = annotate(frame, [detection])
    assert not frame.any(), "the frame itself stays untouched"
    colour = list(PALETTE[2])
    assert drawn[89, 40].tolist() == colour  # bottom edge (last pixel row inside the box)
    assert drawn[65, 20].tolist() == colour  # left edge
    assert drawn[65, 59].tolist() == colour  # right edge
    assert not drawn[50:85, 25:55].any(), "the inside of the box is not painted"
    assert drawn[25:40, 20:60].any(), "the label sits above the box"


def test_classes_are_listed_in_the_top_left_corner() -> None:
    frame = np.zeros((120, 160), np.uint8)  # gray frames come back in colour
    drawn = annotate(frame, [Classification(3, "cat", 0.97), Classification(1, "dog", 0.02)])
    assert drawn.shape == (120, 160, 3)
    assert drawn[:40, :80].any()
    assert not drawn[60:, 80:].any()


def noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_jpeg_within_the_cap_by_quality_then_size() -> None:
    frame = noise(480, 640)
    full = encode_jpeg(frame, max_bytes=10_000_000, quality=85)
    assert full is not None
    capped = encode_jpeg(frame, max_bytes=20_000, quality=85)
    assert capped is not None and len(capped) <= 20_000 < len(full)
    decoded = cv2.imdecode(np.frombuffer(capped, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[1] < 640  # noise needed shrinking too


def test_jpeg_scaled_to_the_maximum_width() -> None:
    jpeg = encode_jpeg(noise(300, 400), max_bytes=10_000_000, max_width=100)
    assert jpeg is not None
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (75, 100)


def test_no_jpeg_when_nothing_fits() -> None:
    assert encode_jpeg(noise(200, 200), max_bytes=100) is None
