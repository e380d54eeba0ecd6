"""Capturing what native libraries (TFLite, FFmpeg) write straight to file descriptor 2.

Their messages are useful (XNNPACK applied, why a video did not open) but arrive as raw
stderr lines; we capture them and fold them into our own log lines and error messages.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Collect fd-2 output written inside the block; the list is filled on exit."""
    lines: list[str] = []
    with _lock, tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode("utf-8", "replace").splitlines()
                         if line.strip())


def last_native_message(lines: list[str]) -> str:
    """The last captured line without FFmpeg's ``[demuxer @ 0x...]`` prefix."""
    if not lines:
        return ""
    text = lines[-1]
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.strip()


@contextmanager
def suppressed_unraisable(predicate: Callable[[sys.UnraisableHookArgs], bool]) -> Iterator[None]:
    """Drop the "Exception ignored in ..." reports ``predicate`` matches inside the block.

    For finalizer noise of library wrappers (ai-edge-litert's ``Delegate.__del__`` after a
    failed load); anything else still reaches the previous ``sys.unraisablehook``.
    """
    previous = sys.unraisablehook

    def hook(args: sys.UnraisableHookArgs) -> None:
        if not predicate(args):
            previous(args)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
