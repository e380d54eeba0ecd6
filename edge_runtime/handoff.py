"""Bounded hand-offs between pipeline threads."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class HandoffClosed(Exception):  # noqa: N818 - a signal, not an error
    """The hand-off was closed: the pipeline is stopping."""


class FrameSlot(Generic[T]):
    """A one-item hand-off.

    ``drop_stale=True`` (live sources): latest frame wins; a frame not yet taken is
    replaced and counted in ``dropped``. ``drop_stale=False`` (files read at the pipeline's
    pace): ``put`` waits until the slot is free, so nothing is dropped.
    """

    def __init__(self, *, drop_stale: bool) -> None:
        self.drop_stale = drop_stale
        self.dropped = 0
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T) -> None:
        with self._cond:
            if not self.drop_stale:
                while self._full and not self._closed:
                    self._cond.wait()
            if self._closed:
                raise HandoffClosed
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The item, or None on timeout; raises HandoffClosed once closed and empty."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                self._cond.notify_all()
                return item
            if self._closed:
                raise HandoffClosed
            return None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return int(self._full)
