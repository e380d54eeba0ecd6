"""Sensor sources end to end: the daemon as a subprocess, a real Mosquitto, real devices
where a test can make them (a pseudo-terminal pair, a followed file, an MQTT topic, stdin).

Readings are rows of the held-out vibration recording, so predictions can be checked
against its labels too.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import Config
from edge_runtime.publishing.mqtt import MqttLink
from edge_runtime.publishing.outbox import Outbox
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, cli_command, wait_until

MODELS = models_dir()
HELD_OUT = MODELS / "demo" / "vibration_heldout.csv"
NORM = json.loads((MODELS / "demo" / "vibration_norm.json").read_text())
DEVICE = "sensors-e2e"
PIPELINE = "vib"
TOPIC = f"edge/{DEVICE}/{PIPELINE}/predictions"
PAYLOAD_FIELDS = {"schema", "device", "pipeline", "seq", "ts", "window", "model", "latency_ms",
                  "task", "predictions"}
WINDOW, HOP = 256, 128
AXES = ("ax", "ay", "az")
START_TIMEOUT_S = 30.0
SENSOR_LOG = re.compile(rf"pipeline {PIPELINE}: sensor (\{{.*\}})")


def rows() -> list[dict[str, str]]:
    with HELD_OUT.open(newline="") as handle:
        return list(csv.DictReader(handle))


def windows_in(count: int) -> int:
    return (count - WINDOW) // HOP + 1


def write_config(tmp_path: Path, broker: MosquittoBroker, source: dict[str, Any],
                 **pipeline: Any) -> Path:
    """A daemon config (JSON is YAML) with the vibration model behind ``source``."""
    config = {
        "device_id": DEVICE, "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": broker.host, "port": broker.port},
        "pipelines": [{
            "name": PIPELINE, "source": source,
            "window": {"samples": WINDOW, "hop": HOP, "rate_hz": 1000,
                       "normalize": {"mean": NORM["mean"], "std": NORM["std"]}},
            "model": {"path": str(MODELS / "vibration_int8.tflite"),
                      "labels": str(MODELS / "vibration_labels.txt"), "threads": 1},
            "task": {"type": "classify", "top_k": 2}, **pipeline}]}
    path = tmp_path / "edge.yaml"
    path.write_text(json.dumps(config, indent=1))
    return path


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Any]:
    """Start the daemon on a config; wait until its source is open; kill it at teardown."""
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, [], tmp_path / "daemon.log").start()
        started.append(daemon)
        opened = f"pipeline {PIPELINE}: "  # logged once the source is open
        assert wait_until(lambda: opened in daemon.log_text() or not daemon.alive(),
                          START_TIMEOUT_S)
        assert daemon.alive(), daemon.log_text()
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.close()


def sensor_counters(log: str) -> dict[str, Any]:
    """The counters the daemon logs for the pipeline when it stops."""
    found = SENSOR_LOG.findall(log)
    assert found, log
    counters: dict[str, Any] = json.loads(found[-1])
    return counters


def check_payloads(payloads: list[dict[str, Any]], label: str) -> None:
    for payload in payloads:
        assert payload.keys() >= PAYLOAD_FIELDS
        assert payload["device"] == DEVICE and payload["pipeline"] == PIPELINE
        window = payload["window"]
        assert window["samples"] == WINDOW
        assert window["end"] - window["start"] == pytest.approx((WINDOW - 1) / 1000)
        assert payload["predictions"][0]["label"] == label, payload
    seqs = [p["seq"] for p in payloads]
    assert all(b > a for a, b in itertools.pairwise(seqs)), seqs


def write_all(fd: int, data: bytes, timeout_s: float = 20.0) -> None:
    """Write to a non-blocking fd, waiting while the reader is behind."""
    deadline = time.monotonic() + timeout_s
    while data:
        assert time.monotonic() < deadline, "the daemon stopped reading"
        select.select([], [fd], [], 0.1)
        try:
            data = data[os.write(fd, data[:4096]):]
        except BlockingIOError:
            continue


def test_serial_port_lines_become_predictions(broker: MosquittoBroker,
                                               subscriber_factory: SubscriberFactory,
                                               daemon_for: Any, tmp_path: Path) -> None:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    port = os.ttyname(slave)
    os.close(slave)  # the daemon opens the device by its path, like /dev/ttyUSB0
    try:
        source = {"type": "serial", "port": port, "baud": 115200, "format": "json",
                  "time": {"field": "t"}, "channels": [{"name": axis} for axis in AXES]}
        subscriber = subscriber_factory(broker.host, broker.port, [TOPIC])
        daemon = daemon_for(write_config(tmp_path, broker, source))
        normal = rows()[8000:9024]  # 'normal' from 8 s
        lines = [json.dumps({"t": float(r["t"]), **{a: float(r[a]) for a in AXES}})
                 for r in normal]
        lines.insert(500, '{"t": 8.5, "ax": 0.01, "ay": ')  # line noise: counted, skipped
        write_all(master, ("\n".join(lines) + "\n").encode())
        expected = windows_in(len(normal))
        assert subscriber.wait_for_count(PIPELINE, expected, timeout_s=30), daemon.log_text()
        assert daemon.terminate() == 0, daemon.log_text()
    finally:
        os.close(master)
    payloads = [m.json() for m in subscriber.messages(TOPIC)]
    assert len(payloads) == expected
    check_payloads(payloads, "normal")
    assert payloads[0]["window"]["start"] == pytest.approx(8.0)
    counters = sensor_counters(daemon.log_text())
    assert counters["malformed"]["bad_json"] == 1 and counters["windows"] == expected
    assert "Traceback" not in daemon.log_text()


def append(path: Path, block: list[dict[str, str]]) -> None:
    with path.open("a") as handle:
        handle.writelines(f"{r['t']},{r['ax']},{r['ay']},{r['az']},{r['label']}\n"
                          for r in block)


def test_followed_file_is_read_as_it_grows_and_across_rotation(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, daemon_for: Any,
        tmp_path: Path) -> None:
    path = tmp_path / "vibration.csv"
    path.write_text("t,ax,ay,az,label\n")
    source = {"type": "file", "path": str(path), "follow": True, "header": True,
              "time": {"column": "t"}, "channels": [{"name": axis} for axis in AXES]}
    subscriber = subscriber_factory(broker.host, broker.port, [TOPIC])
    daemon = daemon_for(write_config(tmp_path, broker, source))
    imbalance = rows()[16000:17280]  # 'imbalance' from 16 s
    for start in range(0, 640, 160):  # a logger appending every few tens of ms
        append(path, imbalance[start:start + 160])
        time.sleep(0.05)
    assert subscriber.wait_for_count(PIPELINE, windows_in(640), timeout_s=30), daemon.log_text()
    path.rename(tmp_path / "vibration.csv.1")  # rotated: the rest goes into a new file
    path.write_text("t,ax,ay,az,label\n")
    append(path, imbalance[640:])
    expected = windows_in(len(imbalance))  # the stream continues across the two files
    assert subscriber.wait_for_count(PIPELINE, expected, timeout_s=30), daemon.log_text()
    assert daemon.terminate() == 0, daemon.log_text()
    payloads = [m.json() for m in subscriber.messages(TOPIC)]
    assert len(payloads) == expected
    check_payloads(payloads, "imbalance")
    assert [p["window"]["number"] for p in payloads] == list(range(expected))
    counters = sensor_counters(daemon.log_text())
    assert counters["reopened"] == 1 and counters["malformed"]["total"] == 0


READINGS_TOPIC = "plant/motor7/vibration"
MQTT_SOURCE = {"type": "mqtt", "topic": READINGS_TOPIC, "format": "csv", "time": {"column": 0},
               "channels": [{"name": axis, "column": i} for i, axis in enumerate(AXES, 1)]}


class Sensor:
    """Another device publishing readings: CSV rows of the recording, 64 per message."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"sensor-{uuid.uuid4().hex[:8]}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.rows = iter(rows()[24000:32000])  # 'bearing_fault' from 24 s

    def publish_until(self, subscriber: Any, count: int, timeout_s: float = 20) -> bool:
        """Publish in about real time until ``count`` predictions arrived."""
        deadline = time.monotonic() + timeout_s
        while subscriber.count(PIPELINE) < count and time.monotonic() < deadline:
            batch = list(itertools.islice(self.rows, 64))
            text = "".join(f"{r['t']},{r['ax']},{r['ay']},{r['az']},{r['label']}\n"
                           for r in batch)
            self.client.publish(READINGS_TOPIC, text.encode(), qos=1)
            time.sleep(0.03)
        return bool(subscriber.wait_for_count(PIPELINE, count, timeout_s=5))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_readings_published_by_another_device_are_subscribed_to(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, daemon_for: Any,
        tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [TOPIC])
    daemon = daemon_for(write_config(tmp_path, broker, MQTT_SOURCE))
    sensor = Sensor(broker)
    try:
        sensor.client.publish(READINGS_TOPIC, b"this is not a reading", qos=1)
        assert sensor.publish_until(subscriber, 6), daemon.log_text()
    finally:
        sensor.close()
    assert daemon.terminate() == 0, daemon.log_text()
    payloads = [m.json() for m in subscriber.messages(TOPIC)]
    check_payloads(payloads, "bearing_fault")
    counters = sensor_counters(daemon.log_text())
    assert counters["malformed"]["missing_field"] == 1  # the text has no column 1
    assert counters["windows"] == len(payloads)


def test_readings_keep_flowing_when_a_reload_replaces_the_broker_link(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, daemon_for: Any,
        tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [TOPIC])
    config = write_config(tmp_path, broker, MQTT_SOURCE)
    daemon = daemon_for(config)
    sensor = Sensor(broker)
    try:
        assert sensor.publish_until(subscriber, 2), daemon.log_text()
        settings = json.loads(config.read_text())
        settings["mqtt"]["keepalive_s"] = 20  # only the broker link changes
        config.write_text(json.dumps(settings))
        daemon.signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in daemon.log_text(), 20), (
            daemon.log_text())
        assert "reconnecting" in daemon.log_text()
        assert sensor.publish_until(subscriber, subscriber.count(PIPELINE) + 3), (
            daemon.log_text())
    finally:
        sensor.close()
    assert daemon.terminate() == 0, daemon.log_text()
    check_payloads([m.json() for m in subscriber.messages(TOPIC)], "bearing_fault")


def test_a_subscription_made_while_connected_takes_effect_at_once(
        broker: MosquittoBroker, tmp_path: Path) -> None:
    config = Config.model_validate({
        "device_id": "link", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": broker.host, "port": broker.port},
        "pipelines": [{"name": "p", "source": {"type": "synthetic"},
                       "model": {"path": str(MODELS / "vibration_int8.tflite")}}]})
    outbox = Outbox(config.state_dir)
    link = MqttLink(config, outbox)
    link.start()
    received: list[bytes] = []
    sensor = Sensor(broker)
    try:
        assert wait_until(lambda: link.connected, 10)
        link.subscribe("late/topic", 1, lambda _topic, payload: received.append(payload))
        assert wait_until(lambda: sensor.client.publish("late/topic", b"1", qos=1) and
                          bool(received), 10, interval=0.1)
    finally:
        sensor.close()
        link.stop(1.0)
        outbox.close()


def test_standard_input_with_aggregation_publishes_every_window(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory,
        tmp_path: Path) -> None:
    source = {"type": "file", "path": "-", "header": True, "time": {"column": "t"},
              "channels": [{"name": axis} for axis in AXES]}
    config = write_config(tmp_path, broker, source, output={"aggregate": 10})
    subscriber = subscriber_factory(broker.host, broker.port, [TOPIC])
    recording = rows()
    done = subprocess.run(cli_command("run", "--config", str(config)),
                          input=HELD_OUT.read_bytes(), capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"}, check=False)
    assert done.returncode == 0, done.stderr  # stdin ended: the source ended
    total = windows_in(len(recording))  # 374
    messages = (total + 9) // 10
    assert subscriber.wait_for_count(PIPELINE, messages, timeout_s=10), done.stderr
    payloads = [m.json() for m in subscriber.messages(TOPIC)]
    assert [p["count"] for p in payloads] == [10] * (messages - 1) + [total % 10]
    results = [r for p in payloads for r in p["results"]]
    assert [r["window"]["number"] for r in results] == list(range(total))
    correct = scored = 0
    for result in results:
        first = round(result["window"]["start"] * 1000)
        labels = {row["label"] for row in recording[first:first + WINDOW]}
        if len(labels) == 1:
            scored += 1
            correct += result["predictions"][0]["label"] == labels.pop()
    assert correct / scored >= 0.90, f"{correct}/{scored}"
