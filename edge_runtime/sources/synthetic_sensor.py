"""A synthetic 3-axis vibration sensor on a motor, for demos, tests and benchmarks.

A small re-implementation of the equations of tools/make_vibration_model.py (its
docstring has the full version, and models/README.vibration.md the ranges), so the demo
vibration model recognises the states it plays: ``off`` (sensor noise), ``normal``
(running speed about 25 Hz with 2x and 3x harmonics), ``imbalance`` (a strong rotating
1x force on the radial axes) and ``bearing_fault`` (impacts at a defect frequency ringing a
250-420 Hz resonance). Channels ``ax, ay, az`` in g; ``az`` carries gravity.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import SyntheticSensorSource
from edge_runtime.sources.sensor import ArrivalClock
from edge_runtime.types import SampleBlock

FloatArray = npt.NDArray[np.float64]
BLOCK_S = 0.02  # real time: samples handed over per block
UNPACED_BLOCK = 4096  # as fast as possible: samples per block
GRAVITY_G = (0.0, 0.0, 1.0)
RESOLUTION_G = 1e-4


def shaft_angle(rng: np.random.Generator, t: FloatArray, rate_hz: float) -> tuple[float,
                                                                                   FloatArray]:
    """Running speed (Hz) drawn from 22-28 Hz with a slow 1 % drift, and the shaft angle."""
    f_r = rng.uniform(22.0, 28.0)
    drift = rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * t / rng.uniform(2.0, 6.0)
                                            + rng.uniform(0, 2 * np.pi))
    theta: FloatArray = (2 * np.pi * np.cumsum(f_r * (1.0 + drift)) / rate_hz
                         + rng.uniform(0, 2 * np.pi))
    return f_r, theta


def running(rng: np.random.Generator, theta: FloatArray) -> FloatArray:
    """Fundamental plus 2x and 3x harmonics; weaker on the axial axis (ay)."""
    amplitude = rng.uniform(0.015, 0.05)
    gains = (1.0, rng.uniform(0.2, 0.5), rng.uniform(0.05, 0.25))
    signal = np.zeros((theta.size, 3))
    for axis, weight in enumerate((1.0, rng.uniform(0.2, 0.5), 1.0)):
        for order, gain in enumerate(gains, start=1):
            signal[:, axis] += weight * amplitude * gain * np.sin(
                order * theta + rng.uniform(0, 2 * np.pi))
    return signal


def imbalance(rng: np.random.Generator, theta: FloatArray) -> FloatArray:
    """A strong once-per-revolution force: elliptical orbit on ax/az, little on ay."""
    force, phase = rng.uniform(0.15, 0.5), rng.uniform(0, 2 * np.pi)
    return np.stack([force * np.cos(theta + phase),
                     force * rng.uniform(0.05, 0.2) * np.sin(theta + rng.uniform(0, 2 * np.pi)),
                     force * rng.uniform(0.6, 1.0) * np.sin(theta + phase)], axis=1)


def bearing_fault(rng: np.random.Generator, n: int, f_r: float, rate_hz: float) -> FloatArray:
    """Impacts at k x running speed (k 3-5), shaft-rate modulated, ringing a resonance."""
    f_d, f_n = rng.uniform(3.0, 5.0) * f_r, rng.uniform(250.0, 420.0)
    zeta, strength = rng.uniform(0.03, 0.08), rng.uniform(0.05, 0.3)
    depth, mod_phase = rng.uniform(0.3, 0.9), rng.uniform(0, 2 * np.pi)
    impacts = (np.arange(math.ceil(n / rate_hz * f_d) + 1) + rng.uniform()) / f_d
    impacts = impacts + rng.normal(0.0, 0.01 / f_d, impacts.size)
    impacts = impacts[(impacts >= 0) & (impacts < n / rate_hz)]
    train = np.zeros(n)
    np.add.at(train, np.round(impacts * rate_hz).astype(int).clip(0, n - 1),
              strength * (1 + depth * np.cos(2 * np.pi * f_r * impacts + mod_phase)) / (1 + depth))
    decay = zeta * 2 * np.pi * f_n
    tau = np.arange(math.ceil(6.0 / decay * rate_hz)) / rate_hz
    ringing = np.convolve(train, np.exp(-decay * tau) * np.sin(
        2 * np.pi * f_n * math.sqrt(1 - zeta**2) * tau))[:n]
    weights = (rng.uniform(0.6, 1.0), rng.uniform(0.1, 0.4), rng.uniform(0.6, 1.0))
    signal: FloatArray = ringing[:, None] * np.asarray(weights)[None, :]
    return signal


def vibration(rng: np.random.Generator, state: str, n: int, rate_hz: float) -> FloatArray:
    """``n`` samples (n, 3) in g of one machine state, with sensor bias and noise."""
    signal = np.zeros((n, 3))
    if state != "off":
        f_r, theta = shaft_angle(rng, np.arange(n) / rate_hz, rate_hz)
        signal += running(rng, theta)
        if state == "imbalance":
            signal += imbalance(rng, theta)
        elif state == "bearing_fault":
            signal += bearing_fault(rng, n, f_r, rate_hz)
    bias = rng.uniform(-0.02, 0.02, 3)
    noise = rng.normal(0.0, rng.uniform(0.003, 0.02), (n, 3))
    samples = np.asarray(GRAVITY_G) + bias + noise + signal
    rounded: FloatArray = np.round(samples / RESOLUTION_G) * RESOLUTION_G
    return rounded


class SyntheticSensorReader:
    """Plays the configured states in turn, ``state_s`` seconds each, cycling.

    Samples are stamped at exactly ``1/rate_hz`` apart from the start. In real time the
    reader sleeps until each block is due (a device: the pipeline must keep up or lose
    samples); otherwise it produces as fast as it is read.
    """

    live = False

    def __init__(self, config: SyntheticSensorSource) -> None:
        self.config = config
        self.realtime = config.realtime
        self.rate_hz = config.rate_hz
        self.description = (f"synthetic vibration sensor {config.rate_hz:g} Hz"
                            f"{'' if config.realtime else ' unpaced'}")
        self.block = max(1, round(config.rate_hz * BLOCK_S)) if config.realtime else UNPACED_BLOCK
        self.segment_samples = max(1, round(config.state_s * config.rate_hz))
        self.total = (round(config.duration_s * config.rate_hz)
                      if config.duration_s is not None else None)
        self._rng = np.random.default_rng(config.seed)
        self._segment = np.empty((0, 3), np.float32)
        self._position = 0
        self._produced = 0
        self._start_wall = 0.0
        self._start_mono = 0.0

    def open(self) -> None:
        self._rng = np.random.default_rng(self.config.seed)
        self._segment, self._position, self._produced = np.empty((0, 3), np.float32), 0, 0
        self._start_wall, self._start_mono = ArrivalClock().now(), time.monotonic()

    def state_at(self, sample: int) -> str:
        """The state played at sample index ``sample`` (from the start)."""
        states = self.config.states
        return states[(sample // self.segment_samples) % len(states)]

    def read(self, timeout_s: float) -> SampleBlock | None:
        if self.total is not None and self._produced >= self.total:
            return None
        if self._position >= len(self._segment):
            state = self.state_at(self._produced)
            self._segment = vibration(self._rng, state, self.segment_samples,
                                      self.rate_hz).astype(np.float32)
            self._position = 0
        count = min(self.block, len(self._segment) - self._position)
        if self.total is not None:
            count = min(count, self.total - self._produced)
        if self.realtime:
            wait = self._start_mono + (self._produced + count) / self.rate_hz - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout_s))
        times = self._start_wall + (self._produced + np.arange(count)) / self.rate_hz
        values = self._segment[self._position:self._position + count]
        self._position += count
        self._produced += count
        return SampleBlock(times, values)

    def close(self) -> None:
        self._segment = np.empty((0, 3), np.float32)

    def counters(self) -> dict[str, Any]:
        return {}

