"""Readings as text lines from a file, a FIFO or standard input, optionally followed like
``tail -F`` and optionally replayed at a pace (a recording played back in real time)."""

from __future__ import annotations

import os
import select
import stat
import sys
import time
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import FileSensorSource
from edge_runtime.errors import SourceError
from edge_runtime.processing.readings import LineParser
from edge_runtime.sources.sensor import ArrivalClock, feed_parser, line_format, parser_counters
from edge_runtime.types import SampleBlock

READ_CHUNK_BYTES = 65_536
FOLLOW_POLL_S = 0.1  # how often the end of a followed file is checked for new lines
REPLAY_BATCH_S = 0.02  # a paced replay hands samples over in batches this far apart
STDIN = "-"


class ReplayPacer:
    """When each sample of a replay is due, on the monotonic clock: every 1/rate seconds,
    or at the spacing of the samples' own timestamps."""

    def __init__(self, pace: float | Literal["timestamps"]) -> None:
        self.pace = pace
        self._start: float | None = None  # monotonic time of the first sample
        self._first_time = 0.0
        self._released = 0

    def due(self, times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._start is None:
            self._start = time.monotonic()
            self._first_time = float(times[0]) if len(times) else 0.0
        if self.pace == "timestamps":
            return self._start + (times - self._first_time)
        offsets = (self._released + np.arange(len(times))) / self.pace
        self._released += len(times)
        return self._start + offsets


class FileReader:
    """Lines of a file, FIFO or standard input, parsed as CSV or JSON readings.

    Without ``follow`` the source ends at the end of the file. With ``follow`` it waits for
    more lines, and starts again on a new file when the path is rotated (a new file under
    the same name) or truncated; a FIFO is read again when the next writer opens it.
    """

    realtime = False  # the file keeps what we have not read yet

    def __init__(self, config: FileSensorSource) -> None:
        self.config = config
        self.path = config.path
        self.live = config.follow
        self.description = "standard input" if self.path == STDIN else f"file {self.path}"
        self.parser = LineParser(line_format(config))
        self.reopened = 0
        self._clock = ArrivalClock()
        self._pacer = ReplayPacer(config.pace) if config.pace is not None else None
        self._fd: int | None = None
        self._regular = False
        self._at_end = False
        self._pending: SampleBlock | None = None  # parsed, not yet due
        self._due: npt.NDArray[np.float64] | None = None

    def open(self) -> None:
        self._open(at_end=self.config.start == "end")

    def _open(self, *, at_end: bool) -> None:
        self.parser.reset()
        self._pending = self._due = None
        self._at_end = False
        if self.path == STDIN:
            self._fd = os.dup(sys.stdin.fileno())  # closing ours leaves fd 0 alone
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            return
        try:  # O_NONBLOCK: opening a FIFO does not wait for a writer
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            what = "does not exist" if isinstance(err, FileNotFoundError) else (
                f"cannot be opened ({err.strerror})")
            raise SourceError(f"{self.description} {what}",
                              hint="fix source.path in the config") from err
        mode = os.fstat(self._fd).st_mode
        if stat.S_ISDIR(mode):
            self.close()
            raise SourceError(f"{self.description} is a directory",
                              hint="source.path must name a file or FIFO")
        self._regular = stat.S_ISREG(mode)
        if self._regular and at_end:
            self._skip_to_end()

    def _skip_to_end(self) -> None:
        """Start with the lines written from now on (reading the header first, if any)."""
        fd = self._fd
        assert fd is not None
        if self.config.header:
            first = os.pread(fd, READ_CHUNK_BYTES, 0).split(b"\n", 1)
            if len(first) == 2:  # a complete header line
                self._feed(first[0] + b"\n")
        os.lseek(fd, 0, os.SEEK_END)

    def read(self, timeout_s: float) -> SampleBlock | None:
        if self._pending is None:
            data = self._read_chunk(timeout_s)
            if data is None:
                return None
            block = self._feed(data)
            if not len(block):
                return block
            self._pending = block
            self._due = self._pacer.due(block.times) if self._pacer is not None else None
        return self._release(timeout_s)

    def _read_chunk(self, timeout_s: float) -> bytes | None:
        """New bytes (b"" if none yet); None at the end of an unfollowed source."""
        fd = self._fd
        if fd is None:
            raise SourceError(f"{self.description} is not open")
        if self._at_end:
            return None
        if not self._regular and not select.select([fd], [], [], timeout_s)[0]:
            return b""
        try:
            data = os.read(fd, READ_CHUNK_BYTES)
        except BlockingIOError:  # a FIFO with a writer that has not written yet
            return b""
        except OSError as err:
            raise SourceError(f"{self.description} cannot be read: {err.strerror}") from err
        if data:
            return data
        if not self.config.follow:  # the end: a last line may lack its newline
            self._at_end = True
            return b"\n"
        self._check_rotation()
        time.sleep(min(FOLLOW_POLL_S, timeout_s))
        return b""

    def _check_rotation(self) -> None:
        """At the end of a followed file: reopen a replaced file, rewind a truncated one."""
        fd = self._fd
        if fd is None or not self._regular:
            return
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return  # moved away and not yet replaced: keep the old one
        opened = os.fstat(fd)
        if (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
            os.close(fd)
            self._fd = None
            self._open(at_end=False)  # every line of the new file is new
            self.reopened += 1
        elif current.st_size < os.lseek(fd, 0, os.SEEK_CUR):
            os.lseek(fd, 0, os.SEEK_SET)
            self.parser.reset()
            self.reopened += 1

    def _release(self, timeout_s: float) -> SampleBlock:
        """The pending samples that are due (all of them when unpaced)."""
        pending, due = self._pending, self._due
        assert pending is not None
        if due is None:
            self._pending = None
            return pending
        now = time.monotonic()
        if due[0] > now:  # wake up once per batch, not once per sample
            time.sleep(min(due[0] + REPLAY_BATCH_S - now, timeout_s))
            now = time.monotonic()
        ready = int(np.searchsorted(due, now, side="right"))
        if ready >= len(pending):
            self._pending = self._due = None
            return pending
        self._pending = SampleBlock(pending.times[ready:], pending.values[ready:])
        self._due = due[ready:]
        return SampleBlock(pending.times[:ready], pending.values[:ready])

    def _feed(self, data: bytes) -> SampleBlock:
        return feed_parser(self.parser, data, self._clock, self.description)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def counters(self) -> dict[str, Any]:
        return {**parser_counters(self.parser), "reopened": self.reopened}
