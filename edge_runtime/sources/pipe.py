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
from edge_runtime.types import Frame

READ_CHUNK_BYTES = 256 * 1024
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a longer "frame" is garbage: dropped, resynchronised

SOI = b"\xff\xd8"
MARKER_EOI = 0xD9
MARKER_SOS = 0xDA
# Markers without a length field: TEM and RST0..RST7 (SOI is handled when seeking a frame).
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


class MjpegSplitter:
    """Cuts a byte stream of concatenated JPEG images into whole images. No I/O.

    Walks the marker segments rather than searching for the first ``FF D9``, so an EXIF
    thumbnail (a JPEG inside an APP1 segment) does not cut a frame short, and progressive
    JPEGs with several scans come out whole. Bytes outside a frame are skipped and counted.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.skipped_bytes = 0  # garbage between frames, corrupt or oversized frames
        self._buffer = bytearray()
        self._pos = 0  # next unparsed byte of the frame at the start of the buffer
        self._in_frame = False
        self._in_scan = False  # inside entropy-coded data, after an SOS header

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the images completed by them, oldest first."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            if not self._in_frame and not self._seek_frame():
                break
            end = self._scan()
            if end is None:
                if len(self._buffer) > self.max_frame_bytes:
                    self._resync(len(self._buffer))
                    continue
                break
            if end < 0:  # not a JPEG after all: drop what was parsed and look again
                self._resync(-end)
                continue
            frames.append(bytes(self._buffer[:end]))
            del self._buffer[:end]
            self._in_frame = False
        return frames

    def _seek_frame(self) -> bool:
        start = self._buffer.find(SOI)
        if start < 0:
            keep = 1 if self._buffer.endswith(b"\xff") else 0  # maybe half of an SOI
            self.skipped_bytes += len(self._buffer) - keep
            del self._buffer[:len(self._buffer) - keep]
            return False
        self.skipped_bytes += start
        del self._buffer[:start]
        self._pos, self._in_frame, self._in_scan = len(SOI), True, False
        return True

    def _scan(self) -> int | None:
        """End offset of the current frame; None if more bytes are needed; -n if corrupt
        (n bytes to skip)."""
        buf = self._buffer
        while True:
            if self._in_scan:
                # entropy-coded data: FF 00 is a stuffed FF, FF D0-D7 a restart, FF FF fill
                i = buf.find(b"\xff", self._pos)
                if i < 0 or i + 1 >= len(buf):
                    self._pos = len(buf) - 1 if i >= 0 else len(buf)
                    return None
                following = buf[i + 1]
                if following == 0x00 or following in STANDALONE_MARKERS:
                    self._pos = i + 2
                    continue
                self._pos, self._in_scan = i, False
            if self._pos + 2 > len(buf):
                return None
            if buf[self._pos] != 0xFF:
                return -max(self._pos, 1)
            marker = buf[self._pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                self._pos += 1
                continue
            if marker == MARKER_EOI:
                return self._pos + 2
            if marker in STANDALONE_MARKERS:
                self._pos += 2
                continue
            if self._pos + 4 > len(buf):
                return None
            length = int.from_bytes(buf[self._pos + 2:self._pos + 4], "big")
            if length < 2:
                return -max(self._pos, 1)
            self._pos += 2 + length
            self._in_scan = marker == MARKER_SOS

    def _resync(self, count: int) -> None:
        self.skipped_bytes += count
        del self._buffer[:count]
        self._in_frame = False


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
