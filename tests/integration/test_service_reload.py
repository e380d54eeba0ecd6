"""SIGHUP reloads the configuration: a valid one takes effect without losing a message, an
invalid one is rejected with file:line errors while the old one keeps running."""

from __future__ import annotations

import itertools
import signal
import statistics
from pathlib import Path

from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.notify import NotifySocket
from tests.support.subscriber import ReceivedMessage

DEVICE = "reload"
OLD_TOPIC = f"edge/{DEVICE}/digits/predictions"
NEW_TOPIC = f"edge/{DEVICE}/digits/v2"
START_TIMEOUT_S = 30.0
RELOAD_TIMEOUT_S = 20.0


def config_text(port: int, state_dir: Path, *, fps: float = 10, topic: str | None = None,
                keepalive_s: int = 30, video: Path | None = None,
                model: str = "digits_int8.tflite") -> str:
    models = models_dir()
    output = f"\n    output:\n      topic: {topic}" if topic else ""
    return f"""device_id: {DEVICE}
state_dir: {state_dir}
health: {{enabled: false}}  # no fixed port shared with other tests
mqtt:
  port: {port}
  keepalive_s: {keepalive_s}
pipelines:
  - name: digits
    source:
      type: video
      path: {video or models / "demo" / "digits.mp4"}
      loop: true
      fps: {fps}
    model:
      path: {models / model}
      labels: {models / "digits_labels.txt"}
      threads: 1{output}
"""


def frame_period_s(messages: list[ReceivedMessage]) -> float:
    """Median time between the captures of consecutive frames (payload ``ts``)."""
    stamps: list[float] = [m.json()["ts"] for m in messages]
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


def reload_and_wait(daemon: DaemonProcess, sock: NotifySocket) -> None:
    """SIGHUP, then wait for RELOADING=1 and the READY=1 that ends the reload."""
    readies = len(sock.times("READY"))
    daemon.signal(signal.SIGHUP)
    assert wait_until(lambda: sock.times("RELOADING"), RELOAD_TIMEOUT_S), daemon.log_text()
    assert wait_until(lambda: len(sock.times("READY")) > readies, RELOAD_TIMEOUT_S), (
        daemon.log_text())
    assert sock.times("READY")[-1] > sock.times("RELOADING")[-1]


def start_daemon(config: Path, tmp_path: Path, sock: NotifySocket) -> DaemonProcess:
    daemon = DaemonProcess(config, [], tmp_path / "daemon.log", env=sock.env).start()
    assert wait_until(lambda: sock.times("READY"), START_TIMEOUT_S), daemon.log_text()
    return daemon


def test_valid_reload_changes_fps_topic_and_broker_link_without_losing_a_message(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory,
        tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [OLD_TOPIC, NEW_TOPIC])
    config = tmp_path / "daemon.yaml"
    state = tmp_path / "state"
    config.write_text(config_text(broker.port, state, fps=10))
    with NotifySocket(tmp_path / "notify.sock") as sock:
        daemon = start_daemon(config, tmp_path, sock)
        try:
            assert subscriber.wait_for_count("digits", 15, timeout_s=20), daemon.log_text()
            config.write_text(config_text(broker.port, state, fps=25, topic=NEW_TOPIC,
                                          keepalive_s=20))
            reload_and_wait(daemon, sock)
            assert wait_until(lambda: len(subscriber.messages(NEW_TOPIC)) >= 30, 20), (
                daemon.log_text())
            assert daemon.terminate() == 0, daemon.log_text()
        finally:
            daemon.close()
    log = daemon.log_text()
    assert "configuration reloaded: restarted digits" in log, log
    assert "mqtt settings changed; reconnecting" in log, log
    assert subscriber.wait_for(lambda: subscriber.missing("digits") == [], 5)
    seqs = subscriber.seqs("digits")
    assert min(seqs) == 0 and subscriber.missing("digits") == [], "no seq lost"
    old = subscriber.messages(OLD_TOPIC)
    new = subscriber.messages(NEW_TOPIC)
    assert max(m.seq or 0 for m in old) < min(m.seq or 0 for m in new), (
        "frames captured before the reload are published before those after it")
    assert 0.08 < frame_period_s(old) < 0.12  # 10 fps
    assert frame_period_s(new) < 0.06  # 25 fps


def test_invalid_reload_keeps_the_old_config_running(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory,
        tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [f"edge/{DEVICE}/#"])
    config = tmp_path / "daemon.yaml"
    state = tmp_path / "state"
    good = config_text(broker.port, state, fps=20)
    config.write_text(good)
    with NotifySocket(tmp_path / "notify.sock") as sock:
        daemon = start_daemon(config, tmp_path, sock)
        try:
            flowing = 10
            assert subscriber.wait_for_count("digits", flowing, timeout_s=20), daemon.log_text()
            broken_configs = {
                # schema error: reported with the file and line of the bad value
                "negative fps": (good.replace("fps: 20", "fps: -5"),
                                 f"{config}:{line_of(good, 'fps: 20')}: "
                                 "pipelines.0.source.fps: Input should be greater than 0"),
                # a model that does not exist: checked like start-up does
                "missing model": (config_text(broker.port, state, fps=20,
                                              model="no-such-model.tflite"),
                                  "no-such-model.tflite does not exist"),
                # a source that cannot be opened: the old pipeline is started again
                "missing video": (config_text(broker.port, state, fps=20,
                                              video=tmp_path / "missing.mp4"),
                                  f"video file {tmp_path / 'missing.mp4'} does not exist"),
            }
            for name, (text, expected_error) in broken_configs.items():
                config.write_text(text)
                reload_and_wait(daemon, sock)
                assert daemon.alive(), name
                assert any("reload rejected: " in line and expected_error in line
                           for line in daemon.log_text().splitlines()), (name, daemon.log_text())
                flowing += 10
                assert subscriber.wait_for_count("digits", flowing, timeout_s=20), (
                    name, daemon.log_text())
            assert daemon.terminate() == 0, daemon.log_text()
        finally:
            daemon.close()
    assert "restarting the previous pipelines" in daemon.log_text()
    assert {m.topic for m in subscriber.messages() if m.seq is not None} == {OLD_TOPIC}
    assert subscriber.seqs("digits")[0] == 0 and subscriber.missing("digits") == []


def line_of(text: str, needle: str) -> int:
    """1-based line number of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)
