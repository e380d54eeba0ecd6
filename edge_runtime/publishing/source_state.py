"""The retained ``{prefix}/{device}/{pipeline}/source`` message: is the pipeline's source
online, and if not, why and since when.

Published on the broker link as a retained side message (like status and stats), never
through the outbox: it takes no prediction sequence number and only the latest state
matters. It goes out when the state or its reason changes, and again after every (re)connect
of the link, so a broker that restarted without persistence, or a message lost with a
dropped connection, is repaired at the next connection. Reasons and descriptions come from
the sources with credentials already masked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge_runtime.config.schema import Config
    from edge_runtime.pipeline import Pipeline

SOURCE_STATE_SCHEMA = 1


class RetainedPublisher(Protocol):
    def publish_retained(self, topic: str, payload: bytes) -> None: ...


@dataclass(frozen=True)
class SourceState:
    """One pipeline's source, sampled at one instant."""

    pipeline: str
    online: bool
    reason: str
    since: float  # wall clock, Unix seconds, of the last online/offline change
    description: str
    errors: int  # failed reads and reopens since start


def state_of(pipeline: Pipeline) -> SourceState:
    return SourceState(pipeline.name, pipeline.source_online, pipeline.source_reason,
                       pipeline.source_since, pipeline.source.description,
                       pipeline.stats.source_errors)


def source_state_payload(device: str, state: SourceState) -> bytes:
    """The JSON body: ``state`` is ``online`` or ``offline``."""
    body: dict[str, Any] = {
        "schema": SOURCE_STATE_SCHEMA, "device": device, "pipeline": state.pipeline,
        "state": "online" if state.online else "offline", "reason": state.reason,
        "since": round(state.since, 3), "source": state.description, "errors": state.errors,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class SourceStateTopic:
    """Decides which pipelines' source state to (re)publish; call :meth:`update` often.

    Reads the topics from the config it is given each time, so a reload that adds, removes
    or renames pipelines (or changes the prefix or device) is followed; the retained state
    of a pipeline that is gone is cleared (an empty retained message deletes it).
    """

    def __init__(self, link: RetainedPublisher) -> None:
        self.link = link  # replaced by the daemon when a reload makes a new broker link
        self.published = 0
        self._sent: dict[str, tuple[bool, str, float]] = {}  # topic -> state last published
        self._connects = 0

    def update(self, config: Config, states: Sequence[SourceState], connects: int) -> None:
        """Publish the states that changed; all of them when the link connected again
        (``connects`` is the link's count of successful connections)."""
        reconnected = connects != self._connects
        self._connects = connects
        current: dict[str, tuple[bool, str, float]] = {}
        for state in states:
            topic = config.source_topic(state.pipeline)
            key = current[topic] = (state.online, state.reason, state.since)
            if reconnected or self._sent.get(topic) != key:
                self.link.publish_retained(topic,
                                           source_state_payload(config.device_id, state))
                self.published += 1
        for topic in sorted(self._sent.keys() - current.keys()):
            self.link.publish_retained(topic, b"")
        self._sent = current
