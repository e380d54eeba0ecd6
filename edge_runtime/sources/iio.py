"""Linux Industrial I/O (IIO) channels polled through sysfs.

Each channel ``NAME`` is read from ``in_NAME_raw`` and converted the IIO way,
``(raw + offset) * scale``, with ``in_NAME_offset``/``in_NAME_scale`` or the type's shared
``in_TYPE_offset``/``in_TYPE_scale`` (``accel`` for ``accel_x``, ``voltage`` for
``voltage0``). Raw files stay open and are re-read with ``pread`` at offset 0, which makes
sysfs produce a fresh value each time. Polling from Python suits rates up to a few hundred
Hz; faster devices want the IIO buffer interface (``/dev/iio:deviceN``, not implemented).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config.schema import IioSource
from edge_runtime.errors import SourceError
from edge_runtime.sources.base import Pacer
from edge_runtime.sources.sensor import ArrivalClock
from edge_runtime.types import SampleBlock

BLOCK_S = 0.02  # samples polled per block handed over: at most this long
RAW_READ_BYTES = 64
DEVICE_DIR = re.compile(r"^iio:device\d+$")


def channel_type(name: str) -> str:
    """The IIO channel type that shares attributes: accel_x -> accel, voltage0 -> voltage."""
    return re.sub(r"\d+$", "", name.split("_", maxsplit=1)[0])


def read_attribute(directory: Path, names: list[str], default: float) -> float:
    """The first of ``names`` in ``directory`` that exists, as a number; else ``default``."""
    for name in names:
        path = directory / name
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise SourceError(f"IIO attribute {path} cannot be read: {err.strerror}") from err
        try:
            return float(text)
        except ValueError as err:
            raise SourceError(f"IIO attribute {path} is not a number: {text[:40]!r}") from err
    return default


def find_device(base: Path, device: str) -> Path:
    """``base/iio:deviceN`` from that name, or from the device's ``name`` file."""
    if DEVICE_DIR.match(device):
        path = base / device
        if path.is_dir():
            return path
    else:
        for path in sorted(base.glob("iio:device*")):
            name_file = path / "name"
            if name_file.is_file() and name_file.read_text().strip() == device:
                return path
    found = sorted(p.name for p in base.glob("iio:device*")) if base.is_dir() else []
    raise SourceError(f"IIO device {device} not found in {base}",
                      hint=f"devices there: {', '.join(found) or 'none'}; is the driver loaded?")


class IioReader:
    """Polls a device's channels at ``rate_hz``; each poll is one sample stamped on arrival.

    A value that cannot be parsed (an attribute read mid-update) drops that sample and is
    counted as non_numeric; a device that disappears raises SourceError.
    """

    live = True
    realtime = True  # polls keep their rate on a thread of their own

    def __init__(self, config: IioSource) -> None:
        self.config = config
        self.description = f"IIO device {config.device}"
        self.non_numeric = 0
        self._clock = ArrivalClock()
        self._pacer = Pacer(config.rate_hz)
        self._fds: list[int] = []
        self._gain = np.ones(len(config.channels))
        self._bias = np.zeros(len(config.channels))

    def open(self) -> None:
        directory = find_device(self.config.base_path, self.config.device)
        gains, biases = [], []
        try:
            for channel in self.config.channels:
                raw = directory / f"in_{channel.name}_raw"
                try:
                    self._fds.append(os.open(raw, os.O_RDONLY))
                except OSError as err:
                    present = sorted(p.name[3:-4] for p in directory.glob("in_*_raw"))
                    raise SourceError(
                        f"{self.description} has no readable channel {channel.name} ({raw}: "
                        f"{err.strerror})", hint=f"channels there: {', '.join(present)}") from err
                kind = channel_type(channel.name)
                scale = read_attribute(directory, [f"in_{channel.name}_scale",
                                                   f"in_{kind}_scale"], 1.0)
                offset = read_attribute(directory, [f"in_{channel.name}_offset",
                                                    f"in_{kind}_offset"], 0.0)
                # value = (raw + offset) * scale * s + o  =  raw * gain + bias
                gains.append(scale * channel.scale)
                biases.append(offset * scale * channel.scale + channel.offset)
        except SourceError:
            self.close()
            raise
        self._gain, self._bias = np.asarray(gains), np.asarray(biases)

    def read(self, timeout_s: float) -> SampleBlock:
        rows: list[list[float]] = []
        times: list[float] = []
        deadline = time.monotonic() + min(timeout_s, BLOCK_S)
        while True:
            self._pacer.wait()
            stamp = self._clock.now()
            try:
                rows.append([float(os.pread(fd, RAW_READ_BYTES, 0)) for fd in self._fds])
                times.append(stamp)
            except ValueError:
                self.non_numeric += 1
            except OSError as err:
                raise SourceError(f"{self.description} cannot be read: {err.strerror}") from err
            if time.monotonic() >= deadline:
                break
        values = (np.asarray(rows, np.float64).reshape(len(rows), len(self._fds))
                  * self._gain + self._bias)
        return SampleBlock(np.asarray(times, np.float64), values.astype(np.float32))

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def counters(self) -> dict[str, Any]:
        return {"malformed": {"total": self.non_numeric, "non_numeric": self.non_numeric}}
