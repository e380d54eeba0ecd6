"""A frame writer the test controls: MJPEG into a FIFO, which it can freeze and resume.

Feeds a ``type: pipe`` source the way ``rpicam-vid --codec mjpeg -o FIFO`` would, so a test
can make a live source stall (``freeze``) and come back (``resume``) on demand.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

DEFAULT_FPS = 20.0
FRAME_SIZE = (64, 48)  # width, height of the generated frames
WRITE_POLL_S = 0.1  # a full pipe is re-checked this often, so close() never hangs


def jpeg_frames(count: int, size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> list[bytes]:
    """``count`` distinct JPEG images of random noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = []
    for _ in range(count):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        frames.append(data.tobytes())
    return frames


class FifoFrameWriter:
    """Creates a FIFO and writes JPEG frames into it at ``fps`` from a thread."""

    def __init__(self, path: Path, fps: float = DEFAULT_FPS) -> None:
        self.path = path
        self.period_s = 1.0 / fps
        self.written = 0
        self._frames = jpeg_frames(8)
        self._flowing = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fifo-writer", daemon=True)
        self._fd: int | None = None
        os.mkfifo(path)

    def start(self) -> FifoFrameWriter:
        # read-write so opening never waits for the daemon to open its end
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._flowing.set()
        self._thread.start()
        return self

    def freeze(self) -> None:
        """Stop writing (the FIFO stays open): the source receives nothing."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._flowing.wait()
            if self._write_all(self._frames[self.written % len(self._frames)]):
                self.written += 1

    def _write_all(self, data: bytes) -> bool:
        """Write one whole frame (a full pipe waits for the reader); False when stopped."""
        fd = self._fd
        view = memoryview(data)
        while view:
            if self._stop.is_set() or fd is None:
                return False
            if not select.select([], [fd], [], WRITE_POLL_S)[1]:
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
        return True

    def __enter__(self) -> FifoFrameWriter:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
