"""Readings published by other devices on an MQTT topic, through the daemon's own broker
connection (one connection per daemon; subscriptions are renewed after every reconnect)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edge_runtime.config.schema import MqttSensorSource
from edge_runtime.errors import SourceError
from edge_runtime.processing.readings import LineParser, empty_block
from edge_runtime.sources.sensor import ArrivalClock, SampleBuffer, line_format, parser_counters
from edge_runtime.types import SampleBlock


class Subscriber(Protocol):
    """The daemon's broker link (``MqttLink``), as far as an inbound source needs it."""

    def subscribe(self, topic: str, qos: int, handler: Callable[[str, bytes], None]) -> None:
        ...


class MqttReader:
    """Each message holds one or more lines (CSV or JSON readings).

    Messages arrive on the broker link's thread; the handler only parses them into a
    bounded buffer (the oldest samples are dropped and counted when it is full), so a slow
    pipeline never holds up publishing. Messages that arrive while the source is closed are
    counted as overflow.
    """

    live = True
    realtime = False  # pushed by the broker link into our own buffer, not read from a device

    def __init__(self, config: MqttSensorSource, link: Subscriber) -> None:
        self.config = config
        self.description = f"MQTT topic {config.topic}"
        self.parser = LineParser(line_format(config))
        self.messages = 0
        self._link = link
        self._buffer = SampleBuffer(config.buffer_samples)
        self._clock = ArrivalClock()
        self._subscribed = False
        self._open = False
        self._closed_drops = 0

    def open(self) -> None:
        if not self._subscribed:
            self._link.subscribe(self.config.topic, self.config.qos, self._on_message)
            self._subscribed = True
        self._open = True

    def _on_message(self, _topic: str, payload: bytes) -> None:
        """Runs on the broker link's thread: parse and buffer, never block."""
        self.messages += 1
        block = self.parser.parse(payload.split(b"\n"), self._clock.now())
        if not self._open:
            self._closed_drops += len(block)
        elif len(block):
            self._buffer.put(block)

    def read(self, timeout_s: float) -> SampleBlock:
        if not self._open:
            raise SourceError(f"{self.description} is not open")
        block = self._buffer.take(timeout_s)
        return block if block is not None else empty_block(self.parser.format.channels)

    def close(self) -> None:
        self._open = False

    def counters(self) -> dict[str, Any]:
        return {**parser_counters(self.parser), "messages": self.messages,
                "overflow_samples": self._buffer.dropped + self._closed_drops}
