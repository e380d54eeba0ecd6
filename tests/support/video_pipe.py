"""A video streamed into a named pipe (FIFO) that a test can freeze: a stream that stalls.

The writer thread makes the FIFO, waits for the daemon to open it, writes a YUV4MPEG2
(y4m) header and then frames at ``fps``. ``freeze()`` stops writing but keeps the pipe
open, exactly like a camera process or stream server that hangs: the reader blocks in
``read()`` with no error. ``resume()`` writes again; ``close()`` ends the stream (EOF).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

import cv2

from edge_runtime.sources.synthetic import test_pattern

JOIN_TIMEOUT_S = 5.0


class VideoPipeWriter:
    """Streams test-pattern frames as y4m into a FIFO at ``fps``."""

    def __init__(self, path: Path, *, width: int = 64, height: int = 48,
                 fps: float = 20.0) -> None:
        self.path = path
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        os.mkfifo(path)
        self._thread = threading.Thread(target=self._write, name="video-pipe", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        # open() blocks until the daemon opens the pipe for reading
        with self.path.open("wb", buffering=0) as pipe:
            pipe.write(f"YUV4MPEG2 W{self.width} H{self.height} F{round(self.fps)}:1 Ip A1:1 "
                       "C420jpeg\n".encode())
            period = 1.0 / self.fps
            while not self._closed.is_set():
                if not self._flowing.wait(period):
                    continue
                image = test_pattern(self.width, self.height, self.frames_written)
                yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
                try:
                    pipe.write(b"FRAME\n" + yuv.tobytes())
                except BrokenPipeError:
                    return  # the reader went away
                self.frames_written += 1
                time.sleep(period)

    def freeze(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        """End the stream (the reader sees EOF) and remove the FIFO."""
        self._closed.set()
        self._flowing.set()
        if self._thread.is_alive():
            # unblock a writer still waiting in open() for a reader that never came
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(JOIN_TIMEOUT_S)
            os.close(fd)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoPipeWriter:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
