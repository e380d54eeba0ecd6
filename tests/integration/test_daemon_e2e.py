"""The daemon as a subprocess on the bundled demo, against a real Mosquitto."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.subscriber import read_retained

DEMO_DEVICE = "e2e"
PAYLOAD_FIELDS = {"schema", "device", "pipeline", "seq", "ts", "frame", "model", "latency_ms",
                  "task", "predictions"}


@pytest.fixture
def demo_daemon(broker: MosquittoBroker, tmp_path: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(
        None, [f"mqtt.port={broker.port}", "pipelines.0.source.fps=40"],
        tmp_path / "daemon.log",
        env={"EDGE_RUNTIME_STATE_DIR": str(tmp_path / "state"),
             "EDGE_RUNTIME_DEVICE_ID": DEMO_DEVICE})
    try:
        yield daemon.start()
    finally:
        daemon.close()


def test_demo_publishes_predictions_and_status(broker: MosquittoBroker,
                                               subscriber_factory: SubscriberFactory,
                                               demo_daemon: DaemonProcess) -> None:
    topic = f"edge/{DEMO_DEVICE}/digits/predictions"
    status_topic = f"edge/{DEMO_DEVICE}/status"
    subscriber = subscriber_factory(broker.host, broker.port, [topic])
    assert subscriber.wait_for_count("digits", 50, timeout_s=30), demo_daemon.log_text()
    assert read_retained(broker.host, broker.port, status_topic) == b"online"

    messages = subscriber.messages(topic)
    assert len(messages) >= 50
    payloads = [m.json() for m in messages]
    for payload in payloads:
        assert payload.keys() >= PAYLOAD_FIELDS
        assert payload["device"] == DEMO_DEVICE and payload["pipeline"] == "digits"
        assert payload["schema"] == 1
        assert len(payload["model"]["sha256"]) == 64
        assert {"preprocess", "inference", "postprocess", "total"} <= payload["latency_ms"].keys()
        best = payload["predictions"][0]
        assert {"index", "label", "score"} == best.keys()
        assert best["label"] in {str(d) for d in range(10)}
        scores = [p["score"] for p in payload["predictions"]]
        assert scores == sorted(scores, reverse=True)
    seqs = [p["seq"] for p in payloads]
    assert all(b > a for a, b in itertools.pairwise(seqs)), seqs

    assert demo_daemon.terminate() == 0, demo_daemon.log_text()
    assert wait_until(lambda: read_retained(broker.host, broker.port, status_topic)
                      == b"offline", timeout=5)
    assert "Traceback" not in demo_daemon.log_text()


def test_seq_continues_across_restarts(broker: MosquittoBroker,
                                       subscriber_factory: SubscriberFactory,
                                       tmp_path: Path) -> None:
    topic = "edge/restart/digits/predictions"
    subscriber = subscriber_factory(broker.host, broker.port, [topic])
    env = {"EDGE_RUNTIME_STATE_DIR": str(tmp_path / "state"),
           "EDGE_RUNTIME_DEVICE_ID": "restart"}
    for run in range(2):
        daemon = DaemonProcess(None, [f"mqtt.port={broker.port}", "pipelines.0.source.fps=40"],
                               tmp_path / f"daemon-{run}.log", env=env).start()
        try:
            target = 10 * (run + 1)
            assert subscriber.wait_for_count("digits", target, timeout_s=30), daemon.log_text()
            assert daemon.terminate() == 0
        finally:
            daemon.close()
    seqs = subscriber.seqs("digits")
    assert seqs == sorted(set(seqs)), "seq must never repeat or go back across restarts"
    assert seqs == list(range(len(seqs)))

