"""/healthz, /metrics, the stats topic and ``edge-runtime health`` against a running daemon.

The daemon reads MJPEG from a FIFO the test writes, so the test can freeze the source;
the broker is a real Mosquitto the test stops and starts. Every expectation comes from what
the test did (frames written, broker stopped, messages received), not from the daemon.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker, free_port
from tests.support.daemon import DaemonProcess, run_cli, wait_until
from tests.support.frames import FifoFrameWriter
from tests.support.subscriber import read_retained

DEVICE = "health-e2e"
START_TIMEOUT_S = 30.0
STATE_TIMEOUT_S = 15.0
PREDICTIONS = f"edge/{DEVICE}/cam/predictions"
STATS = f"edge/{DEVICE}/stats"


def write_config(tmp_path: Path, broker_port: int, health_port: int, *,
                 pipe_stall_s: float, stall_after_s: float, offline_grace_s: float) -> Path:
    models = models_dir()
    path = tmp_path / "edge.yaml"
    path.write_text(f"""\
device_id: {DEVICE}
state_dir: {tmp_path / "state"}
mqtt: {{host: 127.0.0.1, port: {broker_port}, reconnect_min_s: 0.2, reconnect_max_s: 0.5}}
health:
  port: {health_port}
  stats_interval_s: 1
  stall_after_s: {stall_after_s}
  source_offline_grace_s: {offline_grace_s}
pipelines:
  - name: cam
    source: {{type: pipe, path: {tmp_path / "cam.mjpeg"}, stall_timeout_s: {pipe_stall_s}}}
    model: {{path: {models / "digits_int8.tflite"}, labels: {models / "digits_labels.txt"},
             threads: 1}}
""")
    return path


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Daemon:
    """The daemon under test plus its frame writer and health URLs."""

    def __init__(self, tmp_path: Path, broker: MosquittoBroker, **rules: float) -> None:
        self.health_port = free_port()
        self.url = f"http://127.0.0.1:{self.health_port}"
        self.config = write_config(tmp_path, broker.port, self.health_port, **rules)
        self.writer = FifoFrameWriter(tmp_path / "cam.mjpeg")
        self.process = DaemonProcess(self.config, [], tmp_path / "daemon.log")

    def healthz(self) -> tuple[int, dict[str, Any]]:
        status, body = get(f"{self.url}/healthz")
        return status, json.loads(body)

    def overall(self) -> str | None:
        try:
            return str(self.healthz()[1]["overall"])
        except OSError:
            return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = get(f"{self.url}/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body.decode())
                for s in family.samples}

    def wait_for(self, overall: str) -> None:
        assert wait_until(lambda: self.overall() == overall, STATE_TIMEOUT_S, 0.1), (
            f"never {overall}: {self.healthz() if self.overall() else 'unreachable'}\n"
            f"{self.process.log_text()}")

    def health_cli(self) -> tuple[int, str]:
        done = run_cli("health", "--config", str(self.config))
        return done.returncode, done.stdout.strip()


@pytest.fixture
def make_daemon(broker: MosquittoBroker, tmp_path: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(**rules: float) -> Daemon:
        daemon = Daemon(tmp_path, broker, **rules)
        made.append(daemon)
        daemon.writer.start()
        daemon.process.start()
        assert wait_until(lambda: daemon.overall() is not None, START_TIMEOUT_S, 0.1), \
            daemon.process.log_text()
        return daemon

    yield make
    for daemon in made:
        daemon.writer.resume()  # a frozen pipe would hold the capture thread until it stalls
        daemon.process.close()
        daemon.writer.close()


CAM = (("pipeline", "cam"),)


def test_health_follows_source_and_broker(make_daemon: Any, broker: MosquittoBroker,
                                          subscriber_factory: SubscriberFactory) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [PREDICTIONS])
    daemon = make_daemon(pipe_stall_s=1.0, stall_after_s=30.0, offline_grace_s=2.0)

    # frames flowing, broker up: healthy, HTTP 200, exit 0
    daemon.wait_for("healthy")
    status, body = daemon.healthz()
    assert status == 200
    cam = body["pipelines"]["cam"]
    assert cam["state"] == "healthy" and cam["source"]["online"] is True
    assert cam["model"]["sha256"] == body_sha256(models_dir() / "digits_int8.tflite")
    assert cam["backend"].startswith("litert ") and body["broker"]["connected"] is True
    code, line = daemon.health_cli()
    assert (code, line.split(":")[0]) == (0, "healthy"), line

    # the stats topic carries the same summary, retained, without taking prediction seqs
    assert wait_until(lambda: read_retained(broker.host, broker.port, STATS) is not None, 5)
    stats = json.loads(read_retained(broker.host, broker.port, STATS) or b"{}")
    assert (stats["device"], stats["overall"]) == (DEVICE, "healthy")
    assert subscriber.wait_for_count("cam", 5, timeout_s=10)

    # frozen source: degraded while within the grace period, then unhealthy and 503
    daemon.writer.freeze()
    daemon.wait_for("degraded")
    assert "cam: source offline" in daemon.healthz()[1]["reasons"][0]
    daemon.wait_for("unhealthy")
    status, body = daemon.healthz()
    assert status == 503 and body["pipelines"]["cam"]["source"]["online"] is False
    code, line = daemon.health_cli()
    assert code == 2 and line.startswith("unhealthy: cam: source offline for"), line

    # nothing moves now: the counters must equal what the test wrote and received
    m = daemon.metrics()
    assert m[("edge_runtime_source_online", CAM)] == 0
    assert m[("edge_runtime_frames_captured_total", CAM)] == daemon.writer.written
    predictions = m[("edge_runtime_predictions_total", CAM)]
    assert predictions == m[("edge_runtime_frames_inferred_total", CAM)]
    assert predictions + m[("edge_runtime_frames_dropped_total", CAM)] == daemon.writer.written
    assert subscriber.wait_for_seqs("cam", range(int(predictions)), timeout_s=10)
    assert sorted(set(subscriber.seqs("cam"))) == list(range(int(predictions)))
    assert m[("edge_runtime_stage_latency_seconds_count",
              (("pipeline", "cam"), ("stage", "inference")))] == predictions
    assert m[("edge_runtime_health_status", (("state", "unhealthy"),))] == 1

    # source back: healthy again
    daemon.writer.resume()
    daemon.wait_for("healthy")

    # broker stopped: degraded (predictions still go to the outbox), HTTP 200, exit 1
    broker.stop()
    daemon.wait_for("degraded")
    status, body = daemon.healthz()
    assert status == 200 and body["broker"]["connected"] is False
    assert body["reasons"][0].startswith("broker ")
    m = daemon.metrics()
    assert m[("edge_runtime_broker_connected", ())] == 0
    assert wait_until(lambda: daemon.metrics()[("edge_runtime_outbox_depth", ())] > 0, 5)
    code, line = daemon.health_cli()
    assert code == 1 and line.startswith("degraded: broker "), line

    # broker back: one reconnect, healthy, the outbox drains to the subscriber
    broker.start()
    daemon.wait_for("healthy")
    daemon.writer.freeze()
    assert wait_until(lambda: daemon.metrics()[("edge_runtime_outbox_depth", ())] == 0, 10)
    m = daemon.metrics()
    assert m[("edge_runtime_broker_reconnects_total", ())] == 1
    assert m[("edge_runtime_broker_connected", ())] == 1
    total = int(m[("edge_runtime_predictions_total", CAM)])
    assert subscriber.wait_for_seqs("cam", range(total), timeout_s=10)

    # not running: exit 2
    daemon.writer.resume()
    assert daemon.process.terminate() == 0, daemon.process.log_text()
    code, line = daemon.health_cli()
    assert code == 2 and line.startswith("unreachable: no daemon answering"), line
    assert "Traceback" not in daemon.process.log_text()


def test_stuck_pipeline_with_source_online_is_unhealthy(make_daemon: Any) -> None:
    # the pipe waits 60 s before calling its source offline, so the source stays "online"
    # while nothing arrives: the stall rule is what catches it
    daemon = make_daemon(pipe_stall_s=60.0, stall_after_s=2.0, offline_grace_s=60.0)
    daemon.wait_for("healthy")
    daemon.writer.freeze()
    daemon.wait_for("unhealthy")
    status, body = daemon.healthz()
    cam = body["pipelines"]["cam"]
    assert status == 503 and cam["source"]["online"] is True
    assert cam["reasons"][0].startswith("no prediction for ")
    assert cam["last_prediction_age_s"] > 2.0
    m = daemon.metrics()
    assert m[("edge_runtime_last_prediction_age_seconds", CAM)] > 2.0
    assert m[("edge_runtime_pipeline_health_status", (*CAM, ("state", "unhealthy")))] == 1
    daemon.writer.resume()
    daemon.wait_for("healthy")


def test_busy_health_port_is_logged_and_inference_goes_on(
        broker: MosquittoBroker, tmp_path: Path, subscriber_factory: SubscriberFactory) -> None:
    import socket

    subscriber = subscriber_factory(broker.host, broker.port, [PREDICTIONS])
    with socket.socket() as squatter, FifoFrameWriter(tmp_path / "cam.mjpeg") as writer:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = write_config(tmp_path, broker.port, port, pipe_stall_s=5.0,
                              stall_after_s=30.0, offline_grace_s=60.0)
        process = DaemonProcess(config, [], tmp_path / "daemon.log").start()
        try:
            assert subscriber.wait_for_count("cam", 5, timeout_s=START_TIMEOUT_S), \
                process.log_text()
            assert f"cannot listen on 127.0.0.1:{port}" in process.log_text()
            writer.resume()
            assert process.terminate() == 0
        finally:
            process.close()


def body_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_health_with_the_endpoint_turned_off_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), free_port(), pipe_stall_s=5.0,
                          stall_after_s=30.0, offline_grace_s=60.0)
    done = run_cli("health", "--config", str(config), "--set", "health.enabled=false",
                   "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["overall"] == "unreachable"
    assert "health.enabled: false" in json.loads(done.stdout)["reasons"][0]
