"""A synthetic test pattern: moving bars, optionally JPEG-encoded like an MJPEG camera."""

from __future__ import annotations

import time

import cv2
import numpy as np

from edge_runtime.sources.base import Pacer
from edge_runtime.sources.images import decode_image
from edge_runtime.types import Frame, Image

PATTERN_FRAMES = 30  # distinct frames generated up front and cycled
JPEG_QUALITY = 85


def test_pattern(width: int, height: int, step: int) -> Image:
    """Colour bars shifted by ``step`` with a noise band; deterministic."""
    x = (np.arange(width, dtype=np.int32) + step * 8) % width
    bars = np.stack([(x * 255 // max(width - 1, 1)),
                     ((x * 3) % 256),
                     (255 - x * 255 // max(width - 1, 1))], axis=-1).astype(np.uint8)
    image = np.ascontiguousarray(np.broadcast_to(bars, (height, width, 3)))
    rng = np.random.default_rng(step)
    band = slice(height // 3, height // 3 + max(1, height // 8))
    image[band] = rng.integers(0, 256, image[band].shape, dtype=np.uint8)
    return image


class SyntheticSource:
    """Cycles pre-generated frames; unpaced unless ``fps`` is set."""

    def __init__(self, width: int = 640, height: int = 480, *, encode: bool = False,
                 fps: float | None = None, count: int | None = None) -> None:
        self.description = f"synthetic {width}x{height}{' jpeg' if encode else ''}"
        self.live = fps is not None
        self.encode = encode
        self.count = count
        self._size = (width, height)
        self._pacer = Pacer(fps)
        self._images: list[Image] = []
        self._encoded: list[bytes] = []
        self._number = 0

    def open(self) -> None:
        width, height = self._size
        patterns = (test_pattern(width, height, i) for i in range(PATTERN_FRAMES))
        if self.encode:  # keep only the JPEG bytes (~57 kB a frame at 640x480, not 900 kB)
            params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            self._encoded = [cv2.imencode(".jpg", im, params)[1].tobytes() for im in patterns]
        else:
            self._images = list(patterns)
        self._number = 0

    def read(self) -> Frame | None:
        if self.count is not None and self._number >= self.count:
            return None
        self._pacer.wait()
        i = self._number % PATTERN_FRAMES
        now, mono = time.time(), time.monotonic()
        if self.encode:
            frame = Frame(self._number, now, mono, encoded=self._encoded[i],
                          decoder=decode_image)
        else:
            frame = Frame(self._number, now, mono, image=self._images[i])
        self._number += 1
        return frame

    def close(self) -> None:
        self._images, self._encoded = [], []
