"""Helpers for testing code built on edge-runtime (and for our own tests).

``ArraySource`` feeds in-memory images through a real pipeline; ``CollectingSink``
keeps the results instead of publishing them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import ModelStages
from edge_runtime.types import Frame, Image, Result


class ArraySource:
    """A finite FrameSource over in-memory BGR images (optionally with file names)."""

    live = False

    def __init__(self, images: Sequence[Image], names: Sequence[str] | None = None) -> None:
        self.description = f"{len(images)} in-memory images"
        self._images = list(images)
        self._names = list(names) if names is not None else None
        self._position = 0

    def open(self) -> None:
        self._position = 0

    def read(self) -> Frame | None:
        if self._position >= len(self._images):
            return None
        i = self._position
        self._position += 1
        name = self._names[i] if self._names is not None else None
        return Frame(i, time.time(), time.monotonic(), image=self._images[i], filename=name)

    def close(self) -> None:
        self._position = len(self._images)


@dataclass
class CollectingSink:
    """A ResultSink that keeps every result, in order (without the frame's pixels, so a
    long run does not hold every frame in memory)."""

    results: list[Result] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, pipeline: PipelineConfig, stages: ModelStages, result: Result) -> None:
        with self._lock:
            self.results.append(replace(result, image=None))
