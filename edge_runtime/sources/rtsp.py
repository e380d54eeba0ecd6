"""RTSP cameras through OpenCV's FFmpeg backend.

Timeouts: ``CAP_PROP_OPEN_TIMEOUT_MSEC`` bounds the connection and the RTSP handshake,
``CAP_PROP_READ_TIMEOUT_MSEC`` (set to ``stall_timeout_s``) bounds every ``grab()``, so a
stream that stops sending while the connection stays open is reported as a stall.

Transport: FFmpeg takes ``rtsp_transport`` only from the process-wide environment variable
``OPENCV_FFMPEG_CAPTURE_OPTIONS``, read when a capture is created. It is set, the capture
created and the variable restored inside :func:`captured_stderr`, whose process-wide lock
every native open of edge-runtime holds (video files, cameras, interpreters): no other capture
is created meanwhile, so each stream gets its own transport. The same block catches FFmpeg's
stderr lines, which are masked before they become the offline reason.

Frames are grabbed continuously (the stream must be drained) and converted to BGR
(``retrieve``) only when the ``fps`` cap admits them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, cast

import cv2

from edge_runtime.errors import SourceError
from edge_runtime.native_log import captured_stderr, last_native_message
from edge_runtime.redact import mask_text
from edge_runtime.sources.base import Pacer
from edge_runtime.stream_url import StreamUrl
from edge_runtime.types import Frame, Image

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
MS_PER_S = 1000.0
# a failed grab that waited this share of the read timeout timed out; a quicker one ended
TIMED_OUT_SHARE = 0.9
# FFmpeg's own log lines ("[rtsp @ 0x55d...] method DESCRIBE failed: 401 (Unauthorized)")
# say more than OpenCV's generic warning that follows them
_FFMPEG_LINE = re.compile(r"^\[[A-Za-z0-9_]+ @ 0x[0-9a-fA-F]+\]")
Transport = Literal["tcp", "udp"]


@contextmanager
def ffmpeg_capture_options(options: str) -> Iterator[list[str]]:
    """``OPENCV_FFMPEG_CAPTURE_OPTIONS`` set to ``options`` for the captures created inside
    the block, with FFmpeg's stderr lines collected into the yielded list (filled on exit)."""
    with captured_stderr() as native:
        previous = os.environ.get(FFMPEG_OPTIONS_ENV)
        os.environ[FFMPEG_OPTIONS_ENV] = options
        try:
            yield native
        finally:
            if previous is None:
                del os.environ[FFMPEG_OPTIONS_ENV]
            else:
                os.environ[FFMPEG_OPTIONS_ENV] = previous


def ffmpeg_reason(lines: list[str]) -> str:
    """The most telling captured native line, without its ``[demuxer @ 0x...]`` prefix."""
    ffmpeg = [line for line in lines if _FFMPEG_LINE.match(line)]
    return last_native_message(ffmpeg or lines)


class RtspStream:
    """Live frames from an RTSP camera."""

    live = True

    def __init__(self, url: StreamUrl, *, transport: Transport = "tcp",
                 fps: float | None = None, open_timeout_s: float = 10.0,
                 stall_timeout_s: float = 5.0) -> None:
        self.url = url
        self.transport = transport
        self.open_timeout_s = open_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.description = f"RTSP stream {url.masked} ({transport})"
        self._pacer = Pacer(fps)
        self._capture: cv2.VideoCapture | None = None
        self._last_frame_mono = 0.0
        self._number = 0

    def open(self) -> None:
        self.close()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * MS_PER_S),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.stall_timeout_s * MS_PER_S)]
        with ffmpeg_capture_options(f"rtsp_transport;{self.transport}") as native:
            try:
                capture = cv2.VideoCapture(self.url.with_credentials(), cv2.CAP_FFMPEG, params)
                opened = capture.isOpened()
            except cv2.error:
                capture, opened = None, False
        if not opened:
            if capture is not None:
                capture.release()
            raise self._open_error(mask_text(ffmpeg_reason(native), self.url.secrets))
        self._capture = capture
        self._last_frame_mono = time.monotonic()

    def _open_error(self, reason: str) -> SourceError:
        where = self.description
        if "401" in reason:
            return SourceError(f"{where}: {reason}", hint="check username and password")
        if not reason:
            return SourceError(f"{where}: cannot open (no answer within "
                               f"{self.open_timeout_s:g} s?)")
        return SourceError(f"{where}: {reason}")

    def read(self) -> Frame:
        capture = self._capture
        if capture is None:
            raise SourceError(f"{self.description} is not open")
        while True:
            started = time.monotonic()
            if not capture.grab():
                if time.monotonic() - started >= TIMED_OUT_SHARE * self.stall_timeout_s:
                    raise self._stalled()
                raise SourceError(f"{self.description}: the stream ended (the camera closed "
                                  "the connection?)")
            now = time.monotonic()
            if not self._pacer.admit():  # above the fps cap: drained, not converted
                self._last_frame_mono = now
                continue
            ok, image = capture.retrieve()
            if ok and image is not None:
                self._last_frame_mono = now
                frame = Frame(self._number, time.time(), now, image=cast(Image, image))
                self._number += 1
                return frame
            if now - self._last_frame_mono >= self.stall_timeout_s:
                raise self._stalled()

    def _stalled(self) -> SourceError:
        return SourceError(f"{self.description}: no frame for {self.stall_timeout_s:g} s "
                           "(stream stalled)")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
