"""The retained ``{prefix}/{device}/stats`` message: the /healthz summary, every N seconds.

Published directly on the broker link (retained, QoS 1, like the status message), never
through the outbox: stats must not take prediction sequence numbers, and only the latest
value matters, so one not sent while the broker is away is simply replaced.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class RetainedPublisher(Protocol):
    def publish_retained(self, topic: str, payload: bytes) -> None: ...


def encode_stats(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class StatsTopic:
    """Decides when the next stats message is due and hands it to the link."""

    def __init__(self, link: RetainedPublisher, topic: str, interval_s: float,
                 now_mono: float) -> None:
        self.link = link
        self.topic = topic
        self.interval_s = interval_s
        self.published = 0
        self._due = now_mono + interval_s

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def due(self, now_mono: float) -> bool:
        return self.enabled and now_mono >= self._due

    def publish(self, body: dict[str, Any], now_mono: float) -> None:
        self.link.publish_retained(self.topic, encode_stats(body))
        self.published += 1
        self._due = max(self._due + self.interval_s, now_mono)
