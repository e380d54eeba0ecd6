"""Sensor samples -> windows -> input tensor. Pure: no I/O, no clocks.

``Windower`` cuts a stream of timestamped samples into windows of ``length`` samples every
``hop`` samples. It checks the timestamps: a step larger than ``max_gap_s`` or a step back
in time is a discontinuity, and the partial window before it is dropped (a window never
spans a gap); a full window whose measured rate is off the nominal rate by more than the
tolerance is rejected, not resampled (docs/sensors.md says why). Everything dropped is
counted.

``WindowPreprocessor`` writes a window into the model's input buffer: per-channel
normalisation and input quantization folded into one multiply-add, without allocating.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.processing.quantization import affine_input, dtype_range
from edge_runtime.types import Frame, TensorSpec, Window

GAP_PERIODS_DEFAULT = 10  # max_gap_s defaults to this many nominal sample periods


@dataclass
class WindowCounters:
    """What the windower saw; written by one thread, read by anyone."""

    samples: int = 0  # samples received
    windows: int = 0  # windows passed on to the model
    gaps: int = 0  # forward time steps larger than max_gap_s
    backwards: int = 0  # time steps going back (clock reset, replayed file, bad timestamp)
    rate_rejected: int = 0  # full windows whose measured rate was off
    unused_samples: int = 0  # samples dropped with a partial window, never inferred

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Windower:
    """Cuts timestamped samples into overlapping (or spaced) windows, checking time."""

    def __init__(self, length: int, channels: int, *, hop: int | None = None,
                 rate_hz: float | None = None, rate_tolerance: float = 0.05,
                 max_gap_s: float | None = None) -> None:
        if length < 1 or channels < 1 or (hop is not None and hop < 1):
            raise ValueError("length, channels and hop must be positive")
        self.length = length
        self.channels = channels
        self.hop = hop or length
        self.rate_hz = rate_hz
        self.rate_tolerance = rate_tolerance
        self.max_gap_s = max_gap_s if max_gap_s is not None else (
            GAP_PERIODS_DEFAULT / rate_hz if rate_hz else None)
        self.counters = WindowCounters()
        self._times = np.zeros(length, np.float64)
        self._values = np.zeros((length, channels), np.float32)
        self._fill = 0  # samples in the buffer
        self._fresh = 0  # of which not yet part of a window
        self._skip = 0  # samples to skip before the next window (hop > length)
        self._last_time: float | None = None
        self._number = 0

    def extend(self, times: npt.NDArray[np.float64],
               values: npt.NDArray[np.float32]) -> list[Window]:
        """Add samples (oldest first); return the windows they complete."""
        count = int(times.shape[0])
        if count == 0:
            return []
        if values.shape != (count, self.channels):
            raise ValueError(f"expected ({count}, {self.channels}) values, got {values.shape}")
        previous = self._last_time if self._last_time is not None else float(times[0])
        steps = np.diff(times, prepend=previous)
        backwards = steps < 0
        breaks = backwards | (steps > self.max_gap_s) if self.max_gap_s else backwards
        windows: list[Window] = []
        start = 0
        for index in np.flatnonzero(breaks):
            windows += self._take(times[start:index], values[start:index])
            if backwards[index]:
                self.counters.backwards += 1
            else:
                self.counters.gaps += 1
            self._drop_partial()
            start = int(index)
        windows += self._take(times[start:], values[start:])
        self._last_time = float(times[-1])
        self.counters.samples += count
        return windows

    def reset(self) -> None:
        """The stream restarts (a source reopened): drop the partial window."""
        self._drop_partial()
        self._last_time = None

    def _drop_partial(self) -> None:
        self.counters.unused_samples += self._fresh
        self._fill = self._fresh = self._skip = 0

    def _take(self, times: npt.NDArray[np.float64],
              values: npt.NDArray[np.float32]) -> list[Window]:
        windows = []
        length, position, count = self.length, 0, int(times.shape[0])
        while position < count:
            if self._skip:
                skipped = min(self._skip, count - position)
                self._skip -= skipped
                position += skipped
                continue
            taken = min(length - self._fill, count - position)
            end = self._fill + taken
            self._times[self._fill:end] = times[position:position + taken]
            self._values[self._fill:end] = values[position:position + taken]
            self._fill, self._fresh, position = end, self._fresh + taken, position + taken
            if self._fill < length:
                break
            window = self._cut()
            if window is not None:
                windows.append(window)
            if self.hop < length:  # keep the overlap for the next window
                kept = length - self.hop
                self._times[:kept] = self._times[self.hop:]
                self._values[:kept] = self._values[self.hop:]
                self._fill = kept
            else:
                self._fill, self._skip = 0, self.hop - length
            self._fresh = 0
        return windows

    def _cut(self) -> Window | None:
        number = self._number
        self._number += 1
        start, end = float(self._times[0]), float(self._times[-1])
        if self.rate_hz is not None and not rate_within(
                self.length, end - start, self.rate_hz, self.rate_tolerance):
            self.counters.rate_rejected += 1
            return None
        self.counters.windows += 1
        return Window(number, start, end, self._values.copy())


def rate_within(samples: int, span_s: float, rate_hz: float, tolerance: float) -> bool:
    """Whether ``samples`` spread over ``span_s`` seconds (first to last) were taken at
    ``rate_hz`` within the relative ``tolerance``."""
    if span_s <= 0:
        return False
    measured = (samples - 1) / span_s
    return abs(measured / rate_hz - 1.0) <= tolerance


def window_geometry(spec: TensorSpec, samples: int, channels: int) -> None:
    """Check that the model input is shaped [1, samples, channels]."""
    if spec.shape != (1, samples, channels):
        raise ValueError(f"expected a sensor input shaped [1, {samples}, {channels}] "
                         f"(window.samples, channels), got {list(spec.shape)}")


class WindowPreprocessor:
    """Turns sensor windows into one model input, reusing one scratch buffer."""

    def __init__(self, spec: TensorSpec, *, samples: int, channels: int,
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        window_geometry(spec, samples, channels)
        self.shape = spec.shape
        self.dtype = spec.dtype
        self.gain, self.offset = affine_input(mean or [0.0], std or [1.0], spec.quant,
                                              spec.dtype, channels)
        self.quantized = spec.quant.is_quantized and not np.issubdtype(spec.dtype, np.floating)
        self.low, self.high = dtype_range(spec.dtype) if self.quantized else (0, 0)
        self._scratch = np.empty((samples, channels), np.float64)

    def new_input_buffer(self) -> npt.NDArray[Any]:
        """An array shaped and typed like the model input, to be filled by ``fill``."""
        return np.zeros(self.shape, dtype=self.dtype)

    def fill(self, window: Window, out: npt.NDArray[Any]) -> None:
        """Write ``window`` into ``out``: q = clip(rint((v - mean) / std / scale + zp))."""
        scratch = self._scratch
        if window.samples.shape != scratch.shape:
            raise ValueError(f"window {window.number} is shaped {window.samples.shape}, the "
                             f"model takes {scratch.shape}")
        np.multiply(window.samples, self.gain, out=scratch)
        np.add(scratch, self.offset, out=scratch)
        if self.quantized:
            np.rint(scratch, out=scratch)
            np.clip(scratch, self.low, self.high, out=scratch)
        out.reshape(scratch.shape)[...] = scratch

    def fill_frame(self, frame: Frame, out: npt.NDArray[Any]) -> None:
        """``fill`` with the frame's window (sensor pipelines carry windows in frames)."""
        if frame.window is None:
            raise ValueError(f"frame {frame.number} carries no sensor window")
        self.fill(frame.window, out)
