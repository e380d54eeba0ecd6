"""The ``FrameSource`` seam and the frame-rate pacing every source shares."""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from edge_runtime.types import Frame


class FrameSource(Protocol):
    """Something that yields frames: a camera, a stream, a file, a folder, a generator."""

    description: str  # for logs and errors; never contains credentials
    live: bool  # True: frames arrive in real time and stale ones may be dropped

    def open(self) -> None:
        """Open the device or file; raise SourceError with a clear message if it cannot."""
        ...

    def read(self) -> Frame | None:
        """Block until the next frame; None at the end of a finite source."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class WindowedSource(FrameSource, Protocol):
    """A sensor source: frames carry windows of samples.

    The pipeline never drops its windows at the hand-off, interrupts the source when it
    stops (and reads on until ``read`` returns None), and reports its counters (malformed
    lines, gaps, ...).
    """

    def interrupt(self) -> None:
        """The pipeline is stopping: ``read`` returns the windows already cut, then None,
        promptly even while it waits for samples."""
        ...

    def counters(self) -> dict[str, Any]:
        ...


class Pacer:
    """Caps a loop at ``fps`` on the monotonic clock without drifting."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            now = self._next
        self._advance(now)

    def admit(self) -> bool:
        """For sources that must not sleep (a pipe whose writer would block): True if a frame
        arriving now is due, False if it comes too early and should be skipped."""
        if not self.period:
            return True
        now = time.monotonic()
        if self._next > now:
            return False
        self._advance(now)
        return True

    def _advance(self, now: float) -> None:
        following = self._next + self.period
        # behind schedule (or first call): restart the schedule instead of bursting to catch up
        self._next = following if following > now else now + self.period
