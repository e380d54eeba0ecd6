"""Annotated frames: boxes, labels and scores drawn on a copy; JPEG within a size cap.

Used by ``predict --annotate`` and by the snapshot topic. Drawing works for every task:
detections get boxes, classes and values a list of text lines in the top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np

from edge_runtime.types import Classification, Detection, Image, OutputValue, Prediction

# BGR colours, one per class index (cycled); chosen to stay readable on camera images
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (187, 212, 0), (168, 153, 44),
    (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132),
    (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255))
TEXT_BACKGROUND = (0, 0, 0)
BRIGHT_LUMA = 150  # text on a background brighter than this is drawn black, else white
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE_PX = 640  # line width and font size scale with the frame from this size
MIN_JPEG_QUALITY = 40
JPEG_QUALITY_STEP = 15
SHRINK_FACTOR = 0.75  # per step once the lowest quality is still too large
MIN_JPEG_SIDE_PX = 32


def annotate(image: Image, predictions: Sequence[Prediction]) -> Image:
    """A BGR copy of ``image`` with the predictions drawn on it."""
    canvas = cast(Image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2
                  else image.copy())
    side = min(canvas.shape[:2])
    thickness = max(1, round(2 * side / REFERENCE_SIDE_PX))
    font_scale = max(0.35, 0.6 * side / REFERENCE_SIDE_PX)
    lines: list[str] = []
    for prediction in predictions:
        if isinstance(prediction, Detection):
            colour = PALETTE[prediction.index % len(PALETTE)]
            x0, y0, x1, y1 = (round(v) for v in prediction.box_px)
            cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour,
                          thickness)
            _label(canvas, f"{prediction.label} {prediction.score:.2f}", (x0, y0), colour,
                   font_scale)
        elif isinstance(prediction, Classification):
            lines.append(f"{prediction.label} {prediction.score:.2f}")
        elif isinstance(prediction, OutputValue):
            mark = " (above)" if prediction.above else ""
            lines.append(f"{prediction.label} {prediction.value:.4g}{mark}")
    y = 0
    for line in lines:
        (_, height), baseline = cv2.getTextSize(line, FONT, font_scale, 1)
        _label(canvas, line, (0, y + height + baseline + 2), TEXT_BACKGROUND, font_scale)
        y += height + baseline + 4
    return canvas


def _label(canvas: Image, text: str, corner: tuple[int, int], colour: tuple[int, int, int],
           font_scale: float) -> None:
    """Text on a filled box sitting on top of ``corner`` (below it at the frame's top)."""
    (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
    x, y = corner
    box_h = height + baseline + 2
    top = y - box_h if y - box_h >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + width + 2, top + box_h), colour, cv2.FILLED)
    blue, green, red = colour
    bright = 0.299 * red + 0.587 * green + 0.114 * blue > BRIGHT_LUMA
    text_colour = (0, 0, 0) if bright else (255, 255, 255)
    cv2.putText(canvas, text, (x + 1, top + height + 1), FONT, font_scale, text_colour, 1,
                cv2.LINE_AA)


def encode_jpeg(image: Image, max_bytes: int, quality: int = 85,
                max_width: int | None = None) -> bytes | None:
    """JPEG of at most ``max_bytes``: scaled to ``max_width``, then re-encoded at lower
    quality (down to MIN_JPEG_QUALITY), then shrunk step by step. None if nothing fits."""
    if max_width is not None and image.shape[1] > max_width:
        height = max(1, round(image.shape[0] * max_width / image.shape[1]))
        image = cast(Image, cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA))
    while True:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            return None
        if encoded.size <= max_bytes:
            return bytes(np.asarray(encoded).tobytes())
        if quality > MIN_JPEG_QUALITY:
            quality = max(MIN_JPEG_QUALITY, quality - JPEG_QUALITY_STEP)
            continue
        height, width = image.shape[:2]
        if min(height, width) * SHRINK_FACTOR < MIN_JPEG_SIDE_PX:
            return None
        size = (round(width * SHRINK_FACTOR), round(height * SHRINK_FACTOR))
        image = cast(Image, cv2.resize(image, size, interpolation=cv2.INTER_AREA))
