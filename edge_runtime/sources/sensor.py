"""Sensor sources: samples from a device, file or topic, cut into windows for the pipeline.

A ``SampleReader`` does the I/O of one kind of source (serial port, IIO, file, MQTT topic,
generator) and returns blocks of timestamped samples. ``SensorSource`` turns any reader
into the pipeline's FrameSource: it cuts the samples into windows
(processing/windowing.py) and hands each window over in a Frame.

Readers of devices that produce samples whether or not we are ready (``realtime``: serial
ports, polled IIO channels, the paced synthetic sensor) are drained by a thread of their
own into a bounded ``SampleBuffer``, so a slow pipeline never stalls the device; when the
buffer is full the oldest samples are dropped and counted, and the windower sees the gap.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Protocol

import numpy as np

from edge_runtime.config.schema import LineSource
from edge_runtime.errors import SourceError
from edge_runtime.processing.readings import (
    TIME_UNIT_S,
    HeaderMismatchError,
    JsonPath,
    LineFormat,
    LineParser,
    empty_block,
)
from edge_runtime.processing.windowing import Windower
from edge_runtime.types import Frame, SampleBlock, Window

READ_POLL_S = 0.2  # longest a reader blocks, so that stop and interrupt are noticed
DRAIN_JOIN_S = 2.0


class SampleReader(Protocol):
    """The I/O of one sensor source."""

    description: str  # for logs and errors
    live: bool  # errors are recoverable: the pipeline reports it offline and reopens it
    realtime: bool  # samples are lost unless read promptly: drained by a thread of its own

    def open(self) -> None:
        """Open the device, file or subscription; raise SourceError if it cannot."""
        ...

    def read(self, timeout_s: float) -> SampleBlock | None:
        """The samples that arrived (possibly none) within about ``timeout_s``; None at the
        end of a finite source. Raises SourceError when the device fails."""
        ...

    def close(self) -> None:
        ...

    def counters(self) -> dict[str, Any]:
        """Lines read, malformed lines per reason, and the like."""
        ...


class ArrivalClock:
    """Unix seconds that never go back: wall time at start plus monotonic time since.

    Stamps readings that carry no timestamp; an NTP step cannot fake a gap or a reversal.
    """

    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()

    def now(self) -> float:
        return self._wall + (time.monotonic() - self._mono)


def line_format(config: LineSource) -> LineFormat:
    """Where a line source's numbers are, from its validated config."""
    channels = config.channels
    places: list[int | str | JsonPath]
    if config.format == "json":
        places = [tuple((c.field or c.name).split(".")) for c in channels]
    else:
        places = [c.column if c.column is not None else c.name for c in channels]
    time_config = config.time
    if time_config is not None:
        if config.format == "json":
            places.append(tuple(str(time_config.field).split(".")))
        else:
            places.append(time_config.column if time_config.column is not None else 0)
    return LineFormat(
        kind=config.format, places=tuple(places), scale=tuple(c.scale for c in channels),
        offset=tuple(c.offset for c in channels), has_time=time_config is not None,
        time_scale=TIME_UNIT_S[time_config.unit] if time_config else 1.0,
        delimiter=config.delimiter, header=config.header)


def feed_parser(parser: LineParser, data: bytes, clock: ArrivalClock,
                description: str) -> SampleBlock:
    """Parse raw bytes of a line-based source; a header that no longer names the configured
    channels is a SourceError (the pipeline reports it and reopens the source)."""
    try:
        return parser.feed(data, clock.now())
    except HeaderMismatchError as err:
        raise SourceError(f"{description}: {err}",
                          hint="fix the channels' column names") from err


def parser_counters(parser: LineParser) -> dict[str, Any]:
    malformed: dict[str, int] = {"total": sum(parser.malformed.values())}
    malformed.update(parser.malformed)
    return {"lines": parser.lines, "malformed": malformed}


class SampleBuffer:
    """A bounded FIFO of sample blocks between a real-time producer and the windower.

    When more than ``capacity`` samples wait, the oldest are dropped and counted in
    ``dropped``: the newest data is the most useful, and the timestamps show the gap.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._blocks: deque[SampleBlock] = deque()
        self._size = 0
        self._cond = threading.Condition()

    def put(self, block: SampleBlock) -> None:
        with self._cond:
            self._blocks.append(block)
            self._size += len(block)
            excess = self._size - self.capacity
            while excess > 0:
                oldest = self._blocks[0]
                if len(oldest) <= excess:
                    self._blocks.popleft()
                    removed = len(oldest)
                else:
                    self._blocks[0] = SampleBlock(oldest.times[excess:], oldest.values[excess:])
                    removed = excess
                self.dropped += removed
                self._size -= removed
                excess -= removed
            self._cond.notify_all()

    def take(self, timeout_s: float) -> SampleBlock | None:
        """Everything waiting, as one block; None if nothing arrived within ``timeout_s``."""
        with self._cond:
            if not self._size:
                self._cond.wait(timeout_s)
            if not self._size:
                return None
            blocks, self._blocks, self._size = list(self._blocks), deque(), 0
        if len(blocks) == 1:
            return blocks[0]
        return SampleBlock(np.concatenate([b.times for b in blocks]),
                           np.concatenate([b.values for b in blocks]))

    def clear(self) -> None:
        with self._cond:
            self._blocks.clear()
            self._size = 0

    def __len__(self) -> int:
        return self._size


class SensorSource:
    """A SampleReader's samples, cut into windows: the FrameSource of sensor pipelines."""

    def __init__(self, reader: SampleReader, windower: Windower, *,
                 buffer_samples: int = 65_536) -> None:
        self.reader = reader
        self.windower = windower
        self.description = reader.description
        self.live = reader.live
        self._buffer = SampleBuffer(buffer_samples) if reader.realtime else None
        self._windows: deque[Window] = deque()
        self._interrupted = threading.Event()
        self._closing = threading.Event()
        self._drain_thread: threading.Thread | None = None
        self._failure: Exception | None = None
        self._ended = False

    def open(self) -> None:
        self.reader.open()
        self.windower.reset()  # a reopened source starts a new stream
        self._windows.clear()
        self._failure, self._ended = None, False
        if self._buffer is not None:
            self._buffer.clear()
            self._closing.clear()
            self._drain_thread = threading.Thread(
                target=self._drain, name=f"drain {self.description}", daemon=True)
            self._drain_thread.start()

    def read(self) -> Frame | None:
        """The next window, in a Frame; None at the end of the source or once interrupted."""
        while not self._windows:
            if self._interrupted.is_set():
                return None
            block = self._next_block()
            if block is None:
                return None
            if len(block):
                self._windows.extend(self.windower.extend(block.times, block.values))
        window = self._windows.popleft()
        return Frame(window.number, time.time(), time.monotonic(), window=window)

    def _next_block(self) -> SampleBlock | None:
        if self._buffer is None:
            return self.reader.read(READ_POLL_S)
        # read the drain thread's outcome first: blocks it put before that are taken first
        failure, ended = self._failure, self._ended
        block = self._buffer.take(READ_POLL_S)
        if block is not None:
            return block
        if failure is not None:
            raise failure
        return None if ended else empty_block(self.windower.channels)

    def _drain(self) -> None:
        buffer = self._buffer
        assert buffer is not None
        try:
            while not self._closing.is_set():
                block = self.reader.read(READ_POLL_S)
                if block is None:
                    self._ended = True
                    return
                if len(block):
                    buffer.put(block)
        except Exception as err:  # raised again by read(), in the pipeline's capture thread
            self._failure = err

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._closing.set()
        if self._drain_thread is not None:
            self._drain_thread.join(DRAIN_JOIN_S)
            self._drain_thread = None
        self.reader.close()

    def counters(self) -> dict[str, Any]:
        """Windowing counters, the reader's counters, and samples lost to overflow.

        ``pending_windows``: cut but not yet handed to the pipeline (one block of samples can
        complete several; they are handed over even when the pipeline is stopping).
        """
        data: dict[str, Any] = dict(self.windower.counters.as_dict())
        data["pending_windows"] = len(self._windows)
        data.update(self.reader.counters())
        overflow = data.get("overflow_samples", 0)
        data["overflow_samples"] = overflow + (self._buffer.dropped if self._buffer else 0)
        return data
