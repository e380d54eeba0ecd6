"""The daemon under a notify socket the test owns, as systemd would run it (Type=notify).

The frame source is a video streamed into a named pipe by the test, so the test can make
the stream stall the way a hung camera process does: the daemon's read blocks, no error.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.notify import NotifySocket
from tests.support.video_pipe import VideoPipeWriter

WATCHDOG_S = 2.0  # WATCHDOG_USEC given to the daemon: pings due every 1 s
START_TIMEOUT_S = 30.0
DEVICE = "notify"


def write_config(path: Path, video: Path, state_dir: Path, port: int) -> Path:
    models = models_dir()
    path.write_text(f"""
device_id: {DEVICE}
state_dir: {state_dir}
health: {{enabled: false}}  # no fixed port shared with other tests
mqtt:
  port: {port}
pipelines:
  - name: cam
    source:
      type: video
      path: {video}
    model:
      path: {models / "digits_int8.tflite"}
      labels: {models / "digits_labels.txt"}
      threads: 1
""")
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    with NotifySocket(tmp_path / "notify.sock") as sock:
        yield sock


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_ready_after_first_prediction_watchdog_only_while_frames_flow(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory,
        notify_socket: NotifySocket, tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker.host, broker.port, [f"edge/{DEVICE}/+/predictions"])
    with VideoPipeWriter(tmp_path / "camera.y4m") as camera:
        camera.freeze()  # the stream exists but no frame has come yet
        config = write_config(tmp_path / "daemon.yaml", camera.path, tmp_path / "state",
                              broker.port)
        daemon = DaemonProcess(config, [], tmp_path / "daemon.log", env={
            **notify_socket.env, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}).start()
        try:
            # started and loaded, but no frame yet: it says so, and is not READY
            assert wait_until(lambda: any(s.startswith("starting")
                                          for s in notify_socket.statuses()),
                              START_TIMEOUT_S), daemon.log_text()
            assert not wait_until(lambda: notify_socket.times("READY"), 1.5)

            resumed_at = time.monotonic()
            camera.resume()
            assert wait_until(lambda: notify_socket.times("READY"), START_TIMEOUT_S), (
                daemon.log_text())
            ready_at = notify_socket.times("READY")[0]
            assert ready_at > resumed_at
            assert subscriber.wait_for_count("cam", 1, timeout_s=10), daemon.log_text()

            # frames flow: pings keep coming, never as far apart as the watchdog timeout
            time.sleep(4.0)
            pings = [t for t in notify_socket.times("WATCHDOG") if t >= ready_at]
            assert len(pings) >= 3, notify_socket.received()
            assert max_gap([ready_at, *pings]) < WATCHDOG_S, pings

            # the stream stalls (the reader blocks, no error): the pings stop
            camera.freeze()
            frozen_at = time.monotonic()
            assert wait_until(
                lambda: time.monotonic() - max(notify_socket.times("WATCHDOG"))
                >= 1.5 * WATCHDOG_S, 15.0), "pings went on while the stream was stalled"
            assert max(notify_socket.times("WATCHDOG")) - frozen_at < WATCHDOG_S + 1.0
            assert wait_until(lambda: any("cam stalled" in s for s in notify_socket.statuses()),
                              10.0), notify_socket.statuses()
            assert daemon.alive()

            # frames again: pings again
            camera.resume()
            resumed_at = time.monotonic()
            assert wait_until(lambda: max(notify_socket.times("WATCHDOG")) > resumed_at, 10.0)

            daemon.signal(signal.SIGTERM)
            assert wait_until(lambda: notify_socket.times("STOPPING"), 15.0)
            assert daemon.wait() == 0, daemon.log_text()
        finally:
            daemon.close()
    log = daemon.log_text()
    assert "watchdog: not feeding systemd's watchdog: cam stalled" in log, log
    assert camera.frames_written > 50
    assert len(log.splitlines()) < 20, "nothing is logged per frame at INFO"
    assert len(notify_socket.times("READY")) == 1, "READY=1 is sent once per configuration"
    seqs = subscriber.seqs("cam")
    assert seqs == list(range(len(seqs))), "every prediction reached the broker, in order"


def test_abstract_notify_socket_and_journal_log_lines(tmp_path: Path,
                                                     broker: MosquittoBroker) -> None:
    with NotifySocket(None) as sock:
        assert sock.env_value.startswith("@")
        daemon = DaemonProcess(None, [f"mqtt.port={broker.port}", "pipelines.0.source.fps=20",
                                      "health.enabled=false"],
                               tmp_path / "daemon.log", env={
                                   **sock.env, "EDGE_RUNTIME_STATE_DIR": str(tmp_path / "state"),
                                   "EDGE_RUNTIME_DEVICE_ID": "abstract",
                                   "JOURNAL_STREAM": "8:4242"}).start()
        try:
            assert wait_until(lambda: sock.times("READY"), START_TIMEOUT_S), daemon.log_text()
            assert daemon.terminate() == 0, daemon.log_text()
        finally:
            daemon.close()
        assert sock.times("STOPPING")
        assert sock.times("STOPPING")[0] > sock.times("READY")[0]
    # under journald: a priority prefix instead of a timestamp and level name
    lines = [line for line in daemon.log_text().splitlines() if line.strip()]
    assert lines and all(re.fullmatch(r"<[2-7]>edge_runtime\.[\w.]+: .+", line)
                         for line in lines), lines
    assert "<6>edge_runtime.service.reporter: ready: digits" in daemon.log_text()


def test_watchdog_abort_leaves_every_threads_traceback(tmp_path: Path,
                                                      broker: MosquittoBroker) -> None:
    """systemd's watchdog kills with SIGABRT: the journal must say where each thread was.
    PYTHONFAULTHANDLER is cleared, so the traceback comes from the daemon's own set-up."""
    with NotifySocket(tmp_path / "notify.sock") as sock:
        daemon = DaemonProcess(None, [f"mqtt.port={broker.port}", "pipelines.0.source.fps=20",
                                      "health.enabled=false"],
                               tmp_path / "daemon.log", env={
                                   **sock.env, "PYTHONFAULTHANDLER": "",
                                   "EDGE_RUNTIME_STATE_DIR": str(tmp_path / "state"),
                                   "EDGE_RUNTIME_DEVICE_ID": "abort"}).start()
        try:
            assert wait_until(lambda: sock.times("READY"), START_TIMEOUT_S), daemon.log_text()
            daemon.signal(signal.SIGUSR1)  # a technician's look: tracebacks, no stop
            # the main thread (its stack starts in __main__.py) is dumped last
            assert wait_until(lambda: "__main__.py" in daemon.log_text(), 10.0), (
                daemon.log_text())
            time.sleep(0.5)
            assert daemon.alive()
            dumped = daemon.log_text().count("Thread 0x")
            assert dumped >= 6, "every thread: 4 per pipeline, the broker link, main, ..."
            daemon.signal(signal.SIGABRT)
            assert daemon.wait() == -signal.SIGABRT
        finally:
            daemon.close()
    log = daemon.log_text()
    assert "Fatal Python error: Aborted" in log, log
    assert log.count("Thread 0x") >= 2 * dumped - 1, log  # the same threads again
    assert "edge_runtime/pipeline.py" in log.split("Fatal Python error: Aborted")[1]
