"""Cutting MJPEG (concatenated JPEG images) into whole images: pure, no I/O.

Shared by the FIFO source (``pipe.py``) and the HTTP multipart source (``http_mjpeg.py``):
the multipart boundaries and part headers of ``multipart/x-mixed-replace`` are simply bytes
between images, which the splitter skips and counts.
"""

from __future__ import annotations

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
