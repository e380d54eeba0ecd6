"""MJPEG from a named pipe (FIFO): concatenated JPEG images, as ``rpicam-vid --codec mjpeg``
writes them.

Why a FIFO: libcamera cameras (Raspberry Pi camera modules on Bookworm) are not reliably
readable through OpenCV's V4L2 path; ``rpicam-vid -t 0 --codec mjpeg -o /run/edge/cam.mjpeg``
into a FIFO made with ``mkfifo`` is the common way around it.

The FIFO is opened read-write, so a writer that has not started yet, or has exited, is not
an end of file: the source simply receives nothing. No complete frame for
``stall_timeout_s`` raises ``SourceError``; the pipeline then reports the source offline and
reopens it with backoff, and the first frame that arrives brings it back online.
"""

from __future__ import annotations

import collections
import os
import select
import stat
import time
from pathlib import Path

from edge_runtime.errors import SourceError
from edge_runtime.sources.base import Pacer
from edge_runtime.sources.images import decode_image
from edge_runtime.sources.mjpeg import MjpegSplitter
from edge_runtime.types import Frame

READ_CHUNK_BYTES = 256 * 1024


class MjpegPipeSource:
    """Live frames from a FIFO carrying MJPEG; decoded only when inferred."""

    live = True

    def __init__(self, path: Path, *, fps: float | None = None,
                 stall_timeout_s: float = 5.0) -> None:
        self.path = path
        self.stall_timeout_s = stall_timeout_s
        self.description = f"pipe {path}"
        self._pacer = Pacer(fps)
        self._fd: int | None = None
        self._splitter = MjpegSplitter()
        self._pending: collections.deque[bytes] = collections.deque()
        self._number = 0

    def open(self) -> None:
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError as err:
            raise SourceError(f"{self.description} does not exist",
                              hint="create it with mkfifo before starting the writer") from err
        if not stat.S_ISFIFO(mode):
            raise SourceError(f"{self.description} is not a named pipe (FIFO)",
                              hint="create it with mkfifo; for a video file use a "
                              "'video' source")
        try:
            # read-write: no writer (yet, or any more) is silence, not end of file
            self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise SourceError(f"{self.description} cannot be opened ({err.strerror})",
                              hint="check the permissions of the pipe") from err
        self._splitter = MjpegSplitter()
        self._pending.clear()

    def read(self) -> Frame:
        fd = self._fd
        if fd is None:
            raise SourceError(f"{self.description} is not open")
        deadline = time.monotonic() + self.stall_timeout_s
        while True:
            while self._pending:
                data = self._pending.popleft()
                if self._pacer.admit():
                    frame = Frame(self._number, time.time(), time.monotonic(), encoded=data,
                                  decoder=decode_image)
                    self._number += 1
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise SourceError(f"{self.description}: no frame for "
                                  f"{self.stall_timeout_s:g} s (writer stopped?)")
            try:
                chunk = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                continue
            self._pending.extend(self._splitter.feed(chunk))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._pending.clear()
