"""A folder or glob of image files, read as encoded bytes and decoded only when inferred."""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from edge_runtime.errors import SourceError
from edge_runtime.sources.base import Pacer
from edge_runtime.types import Frame, Image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm",
                            ".ppm"})


def decode_image(data: bytes) -> Image:
    """Encoded bytes -> BGR image; raises ValueError if OpenCV cannot decode them."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return cast(Image, image)


def list_images(pattern: str) -> list[Path]:
    """All image files in a folder, or matching a glob, sorted by name."""
    path = Path(pattern)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(p) for p in glob.glob(pattern)]
    return sorted((p for p in files if p.is_file()), key=lambda p: p.name)


class ImageFolderSource:
    """Images from a folder or glob, sorted; finite or looping."""

    def __init__(self, pattern: str, *, loop: bool = False, fps: float | None = None) -> None:
        self.pattern = pattern
        self.loop = loop
        self.live = fps is not None
        self.description = f"image folder {pattern}"
        self._pacer = Pacer(fps)
        self._files: list[Path] = []
        self._position = 0
        self._number = 0
        self.unreadable = 0

    def open(self) -> None:
        self._files = list_images(self.pattern)
        if not self._files:
            raise SourceError(f"{self.description} contains no image files",
                              hint="fix source.path (a folder or a glob such as 'dir/*.jpg')")
        self._position = 0

    def read(self) -> Frame | None:
        while True:
            if self._position >= len(self._files):
                if not self.loop:
                    return None
                self._position = 0
            path = self._files[self._position]
            self._position += 1
            self._pacer.wait()
            try:
                data = path.read_bytes()
            except OSError as err:
                self.unreadable += 1
                log.warning("skipping unreadable image %s: %s", path, err.strerror)
                continue
            frame = Frame(self._number, time.time(), time.monotonic(), encoded=data,
                          decoder=decode_image, filename=path.name)
            self._number += 1
            return frame

    def close(self) -> None:
        self._files = []
