"""Readings as text lines from a serial port (USB-serial adapters, microcontroller boards)."""

from __future__ import annotations

from typing import Any

import serial

from edge_runtime.config.schema import SerialSource
from edge_runtime.errors import SourceError
from edge_runtime.processing.readings import LineParser
from edge_runtime.sources.sensor import ArrivalClock, feed_parser, line_format, parser_counters
from edge_runtime.types import SampleBlock

READ_CHUNK_BYTES = 65_536
PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
          "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}


class SerialReader:
    """Lines from a serial port, parsed as CSV or JSON readings.

    Opened for exclusive use; the input buffer is flushed on open, so readings start with
    the first line that arrives after it. A port that disappears (USB unplugged) raises
    SourceError, and the pipeline reopens it with backoff.
    """

    live = True
    realtime = True  # the kernel's tty buffer is a few KiB: drain it promptly

    def __init__(self, config: SerialSource) -> None:
        self.config = config
        self.description = f"serial {config.port}"
        self.parser = LineParser(line_format(config))
        self._clock = ArrivalClock()
        self._port: serial.Serial | None = None

    def open(self) -> None:
        config = self.config
        try:
            self._port = serial.Serial(
                config.port, baudrate=config.baud, bytesize=config.bytesize,
                parity=PARITY[config.parity], stopbits=config.stopbits, rtscts=config.rtscts,
                xonxoff=config.xonxoff, timeout=0.0, exclusive=True)
        except (serial.SerialException, ValueError) as err:
            raise SourceError(f"{self.description} cannot be opened: {err}",
                              hint="check source.port, that the device is plugged in, and "
                              "that the user is in the 'dialout' group") from err
        self.parser.reset()

    def read(self, timeout_s: float) -> SampleBlock:
        port = self._port
        if port is None:
            raise SourceError(f"{self.description} is not open")
        try:
            if port.timeout != timeout_s:
                port.timeout = timeout_s  # reconfigures the tty: only when it changes
            data = port.read(min(max(1, port.in_waiting), READ_CHUNK_BYTES))
        except (serial.SerialException, OSError) as err:
            raise SourceError(f"{self.description} failed: {err}") from err
        return feed_parser(self.parser, data, self._clock, self.description)

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def counters(self) -> dict[str, Any]:
        return parser_counters(self.parser)
