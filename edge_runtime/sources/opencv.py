"""Cameras and video files through OpenCV's VideoCapture."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import cv2

from edge_runtime.errors import SourceError
from edge_runtime.native_log import captured_stderr, last_native_message
from edge_runtime.sources.base import Pacer
from edge_runtime.types import Frame, Image


class CaptureSource:
    """A local camera (index or /dev/videoN) or a video file."""

    def __init__(self, target: int | str | Path, *, is_file: bool, loop: bool = False,
                 fps: float | None = None, width: int | None = None,
                 height: int | None = None, fourcc: str | None = None) -> None:
        self.target = target
        self.is_file = is_file
        self.loop = loop
        self.live = not is_file or fps is not None
        self.description = f"video file {target}" if is_file else f"camera {target}"
        self._pacer = Pacer(fps)
        self._size = (width, height)
        self._fourcc = fourcc
        self._capture: cv2.VideoCapture | None = None
        self._number = 0

    def open(self) -> None:
        # A named pipe (FIFO) streams a video as a writer produces it (e.g. ffmpeg or
        # rpicam-vid writing y4m/MJPEG): it cannot be probed and rewound, and it ends when the
        # writer closes it.
        is_pipe = self.is_file and Path(str(self.target)).is_fifo()
        if self.is_file and not is_pipe and not Path(str(self.target)).is_file():
            raise SourceError(f"{self.description} does not exist",
                              hint="fix source.path in the config")
        target: int | str = (self.target if isinstance(self.target, int)
                             else str(self.target))
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        with captured_stderr() as native:
            capture = cv2.VideoCapture(target)
            opened = capture.isOpened()
        if not opened:
            capture.release()
            reason = last_native_message(native)
            what = (f"cannot be decoded by OpenCV/FFmpeg ({reason or 'is it a video?'})"
                    if self.is_file else "cannot be opened (unplugged, busy, or no permission: "
                    "is the user in the 'video' group?)")
            raise SourceError(f"{self.description} {what}")
        if self._fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self._fourcc))
        width, height = self._size
        if width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if self.is_file and not is_pipe:
            ok, image = capture.read()
            if not ok or image is None:
                capture.release()
                raise SourceError(f"{self.description} contains no readable frame")
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._capture = capture

    def read(self) -> Frame | None:
        capture = self._capture
        if capture is None:
            raise SourceError(f"{self.description} is not open")
        self._pacer.wait()
        ok, image = capture.read()
        if not ok and self.is_file and self.loop:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = capture.read()
        if not ok or image is None:
            if self.is_file:
                return None
            raise SourceError(f"{self.description} stopped delivering frames")
        frame = Frame(self._number, time.time(), time.monotonic(), image=cast(Image, image))
        self._number += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
