"""The retained source-state message: payload, and when it is (re)published."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from edge_runtime.config.loader import load_config
from edge_runtime.config.schema import Config
from edge_runtime.publishing.source_state import (
    SourceState,
    SourceStateTopic,
    source_state_payload,
)


class RecordingLink:
    """Records publish_retained calls (the MqttLink method the topic uses)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []  # (topic, JSON body, or None when cleared)

    def publish_retained(self, topic: str, payload: bytes) -> None:
        self.calls.append((topic, json.loads(payload) if payload else None))


ONLINE = SourceState("door", True, "open", 1_700_000_000.25, "RTSP stream rtsp://cam/live (tcp)",
                     0)
OFFLINE = SourceState("door", False, "RTSP stream rtsp://cam/live (tcp): no frame for 5 s "
                      "(stream stalled)", 1_700_000_042.5, ONLINE.description, 1)
YARD = SourceState("yard", True, "open", 1_700_000_001.0, "video file yard.mp4", 0)


def test_payload() -> None:
    body = json.loads(source_state_payload("box", OFFLINE))
    assert body == {"schema": 1, "device": "box", "pipeline": "door", "state": "offline",
                    "reason": OFFLINE.reason, "since": 1_700_000_042.5,
                    "source": OFFLINE.description, "errors": 1}


def config(*names: str, prefix: str = "edge") -> Config:
    pipelines = "".join(f"  - {{name: {n}, source: {{type: synthetic}}, model: {{path: m}}}}\n"
                        for n in names)
    return load_config(None, env={}, text=f"device_id: box\nmqtt: {{topic_prefix: {prefix}}}\n"
                       f"pipelines:\n{pipelines}")


def test_published_on_change_only() -> None:
    link = RecordingLink()
    topic, both = SourceStateTopic(link), config("door", "yard")
    topic.update(both, [ONLINE, YARD], connects=1)
    topic.update(both, [ONLINE, YARD], connects=1)
    assert [(t, b["state"]) for t, b in link.calls] == [
        ("edge/box/door/source", "online"), ("edge/box/yard/source", "online")]
    topic.update(both, [OFFLINE, YARD], connects=1)
    # a new reason while still offline is news too (refused -> timed out)
    topic.update(both, [replace(OFFLINE, reason="connection refused", errors=2), YARD], 1)
    topic.update(both, [replace(OFFLINE, reason="connection refused", errors=3), YARD], 1)
    assert [(t, b["state"], b["reason"]) for t, b in link.calls[2:]] == [
        ("edge/box/door/source", "offline", OFFLINE.reason),
        ("edge/box/door/source", "offline", "connection refused")]
    assert topic.published == 4


def test_everything_republished_after_a_reconnect() -> None:
    link = RecordingLink()
    topic, both = SourceStateTopic(link), config("door", "yard")
    topic.update(both, [ONLINE, YARD], connects=0)  # kept by the link until it connects
    topic.update(both, [ONLINE, YARD], connects=1)  # connected: the retained state is sent again
    topic.update(both, [ONLINE, YARD], connects=1)
    topic.update(both, [OFFLINE, YARD], connects=2)
    assert [(t.split("/")[2], b["state"]) for t, b in link.calls] == [
        ("door", "online"), ("yard", "online"),
        ("door", "online"), ("yard", "online"),
        ("door", "offline"), ("yard", "online")]


def test_a_reload_moves_and_clears_topics() -> None:
    link = RecordingLink()
    topic = SourceStateTopic(link)
    topic.update(config("door", "yard"), [ONLINE, YARD], connects=1)
    link.calls.clear()
    # yard removed, prefix changed: door goes out on its new topic, yard's state is deleted
    topic.update(config("door", prefix="site"), [ONLINE], connects=1)
    assert link.calls == [("site/box/door/source", json.loads(source_state_payload("box", ONLINE))),
                          ("edge/box/door/source", None), ("edge/box/yard/source", None)]
