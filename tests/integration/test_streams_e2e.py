"""The daemon (subprocess) with a network camera, against a real Mosquitto: the camera is down
at start, comes up, is killed, comes back on the same port, freezes with the connection open,
resumes; the daemon follows it on the retained source topic and in /healthz, reconnects by
itself (same process throughout), and a second pipeline on a video file keeps its rate.
Credentials never appear in the log, the source topic or /healthz.

Expectations come from what the test did (when it killed or froze the camera, what it
configured), and from an independent subscriber.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker, free_port
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.stream_servers import (
    ServerProcess,
    mjpeg_server,
    require_rtsp_server,
    rtsp_frames,
    rtsp_server,
)
from tests.support.subscriber import SeqSubscriber

DEVICE = "streams-e2e"
USER, PASSWORD = "cam-op", "Sup3r:S3cret/pw"
STALL_S = 1.5
CLIP_FPS = 5.0
STATE_TIMEOUT_S = 15.0
CAM_SOURCE = f"edge/{DEVICE}/cam/source"
TOPICS = [f"edge/{DEVICE}/cam/predictions", f"edge/{DEVICE}/clip/predictions", CAM_SOURCE]


def write_config(tmp_path: Path, broker: MosquittoBroker, camera_port: int,
                 health_port: int) -> Path:
    models = models_dir()
    model = (f"{{path: {models / 'digits_int8.tflite'}, labels: {models / 'digits_labels.txt'}, "
             "threads: 1}")
    path = tmp_path / "edge.yaml"
    path.write_text(f"""\
device_id: {DEVICE}
state_dir: {tmp_path / "state"}
mqtt: {{host: 127.0.0.1, port: {broker.port}, reconnect_min_s: 0.2, reconnect_max_s: 0.5}}
health: {{port: {health_port}, stats_interval_s: 0}}
pipelines:
  - name: cam
    source:
      type: http_mjpeg
      url: http://127.0.0.1:{camera_port}/stream
      username: {USER}
      password: ${{CAM_PASSWORD}}
      stall_timeout_s: {STALL_S}
      open_timeout_s: 1
      reconnect_min_s: 0.2
      reconnect_max_s: 1
    model: {model}
  - name: clip
    source: {{type: video, path: {models / "demo" / "digits.mp4"}, loop: true, fps: {CLIP_FPS}}}
    model: {model}
""")
    return path


def source_states(subscriber: SeqSubscriber) -> list[tuple[float, dict[str, Any]]]:
    return [(m.received_at, m.json()) for m in subscriber.messages(CAM_SOURCE)]


def wait_state(subscriber: SeqSubscriber, state: str, after: float) -> tuple[float, dict[str, Any]]:
    """The first cam source message with ``state`` received after monotonic time ``after``."""

    def found() -> tuple[float, dict[str, Any]] | None:
        return next(((at, body) for at, body in source_states(subscriber)
                     if at > after and body["state"] == state), None)

    assert wait_until(lambda: found() is not None, STATE_TIMEOUT_S), source_states(subscriber)
    hit = found()
    assert hit is not None
    return hit


def healthz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as err:
        return dict(json.load(err))


def test_http_camera_outages_are_followed_and_recovered(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path) -> None:
    camera_port, health_port = free_port(), free_port()
    config = write_config(tmp_path, broker, camera_port, health_port)
    subscriber = subscriber_factory(broker.host, broker.port, TOPICS)
    daemon = DaemonProcess(config, [], tmp_path / "daemon.log", env={"CAM_PASSWORD": PASSWORD})
    camera: ServerProcess | None = None

    def start_camera() -> ServerProcess:
        return mjpeg_server(camera_port, tmp_path / "camera.log", fps=10, user=USER,
                            password=PASSWORD).start()

    try:
        # the camera is down when the daemon starts: not a start-up error
        daemon.start()
        _, down = wait_state(subscriber, "offline", 0.0)
        assert "connection refused" in down["reason"]
        assert subscriber.wait_for_count("clip", 3, timeout_s=30), daemon.log_text()
        camera = start_camera()
        came_up = time.monotonic()
        wait_state(subscriber, "online", 0.0)
        assert subscriber.wait_for_count("cam", 5, timeout_s=STATE_TIMEOUT_S), daemon.log_text()

        # killed: offline at once (the connection ends), predictions stop, health degraded
        camera.kill()
        killed = time.monotonic()
        offline_at, offline = wait_state(subscriber, "offline", killed)
        assert offline_at - killed <= STALL_S + 1.0  # + the 0.5 s publishing cadence
        print(f"killed -> offline on the source topic: {offline_at - killed:.2f} s")
        assert offline["errors"] >= 1 and offline["since"] <= time.time()
        time.sleep(0.5)  # frames captured before the kill finish
        stopped_at = subscriber.count("cam")
        health = healthz(health_port)
        assert health["pipelines"]["cam"]["state"] == "degraded", health
        assert any(r.startswith("cam: source offline") for r in health["reasons"]), health
        time.sleep(2 * STALL_S)
        assert subscriber.count("cam") == stopped_at

        # back on the same port: online and predicting again, same daemon process
        camera = start_camera()
        wait_state(subscriber, "online", killed)
        assert subscriber.wait_for_count("cam", stopped_at + 5, timeout_s=STATE_TIMEOUT_S)

        # frozen with the connection open: a stall, within the stall timeout
        camera.freeze()
        frozen = time.monotonic()
        stalled_at, stalled = wait_state(subscriber, "offline", frozen)
        assert f"no frame for {STALL_S:g} s" in stalled["reason"]
        assert STALL_S - 0.5 <= stalled_at - frozen <= STALL_S + 2.0
        print(f"frozen -> offline on the source topic: {stalled_at - frozen:.2f} s "
              f"(stall_timeout_s {STALL_S})")
        camera.resume()
        resumed = time.monotonic()
        wait_state(subscriber, "online", resumed)
        before = subscriber.count("cam")
        assert subscriber.wait_for_count("cam", before + 5, timeout_s=STATE_TIMEOUT_S)
        assert daemon.alive()

        # the file pipeline kept its rate through all of it
        clip = [m.received_at for m in subscriber.messages(TOPICS[1]) if m.received_at > came_up]
        window = clip[-1] - came_up
        gaps = [b - a for a, b in itertools.pairwise(clip)]
        assert len(clip) >= 0.6 * CLIP_FPS * window, (len(clip), window)
        assert max(gaps) < 1.0, max(gaps)
        print(f"clip pipeline: {len(clip)} predictions in {window:.1f} s "
              f"({len(clip) / window:.2f}/s at fps {CLIP_FPS:g}), longest gap {max(gaps):.2f} s")

        final_health = json.dumps(healthz(health_port))
        assert daemon.terminate() == 0, daemon.log_text()
    finally:
        if camera is not None:
            camera.close()
        daemon.close()

    # never a credential: not in the log, the source topic or /healthz
    described = f"HTTP MJPEG stream http://127.0.0.1:{camera_port}/stream"
    assert {body["source"] for _, body in source_states(subscriber)} == {described}
    published = json.dumps([body for _, body in source_states(subscriber)])
    log = daemon.log_text()
    assert "pipeline cam: " + described in log  # the log does talk about the camera
    for text in (log, published, final_health):
        assert PASSWORD not in text and "S3cret" not in text


def test_rtsp_camera_with_credentials_in_the_url(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path) -> None:
    require_rtsp_server()
    port = free_port()
    server = rtsp_server(port, rtsp_frames(tmp_path / "frames"), tmp_path / "rtsp.log",
                         user=USER, password=PASSWORD).start()
    models = models_dir()
    config = tmp_path / "edge.yaml"
    config.write_text(f"""\
device_id: {DEVICE}
state_dir: {tmp_path / "state"}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
health: {{enabled: false, stats_interval_s: 0}}
pipelines:
  - name: cam
    source: {{type: rtsp, url: '${{CAM_URL}}', transport: tcp}}
    model: {{path: {models / 'digits_int8.tflite'}, labels: {models / 'digits_labels.txt'},
             threads: 1}}
""")
    url = f"rtsp://{USER}:Sup3r%3AS3cret%2Fpw@127.0.0.1:{port}/cam"
    subscriber = subscriber_factory(broker.host, broker.port, TOPICS)
    daemon = DaemonProcess(config, [], tmp_path / "daemon.log", env={"CAM_URL": url})
    try:
        daemon.start()
        assert subscriber.wait_for_count("cam", 10, timeout_s=30), daemon.log_text()
        _, online = wait_state(subscriber, "online", 0.0)
        server.signal(signal.SIGUSR1)  # the camera hangs up
        hung_up = time.monotonic()
        _, ended = wait_state(subscriber, "offline", hung_up)
        wait_state(subscriber, "online", hung_up)
        assert daemon.terminate() == 0, daemon.log_text()
    finally:
        server.close()
        daemon.close()
    assert online["source"] == f"RTSP stream rtsp://***:***@127.0.0.1:{port}/cam (tcp)"
    assert "stream ended" in ended["reason"]
    for text in (daemon.log_text(), json.dumps([b for _, b in source_states(subscriber)])):
        assert "S3cret" not in text


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon gets the secrets through its own environment only."""
    monkeypatch.delenv("CAM_PASSWORD", raising=False)
    monkeypatch.delenv("CAM_URL", raising=False)
