"""Zero-loss delivery when the daemon itself is hit: kill -9, SIGTERM under load, disk full.

The daemon runs as a subprocess against a real Mosquitto; an independent persistent-session
QoS 1 subscriber counts ``seq`` per pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SubscriberFactory
from tests.integration.test_bad_input import assert_one_clear_line
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, run_cli, wait_until
from tests.support.delivery import (
    PIPELINES,
    assert_complete,
    link_state,
    outbox_stats,
    predictions_filter,
    read_stats,
    start_daemon,
    wait_for_all,
    wait_results,
    write_config,
)
from tests.support.proxy import TcpProxy
from tests.support.subscriber import read_retained

KILLS = 3


def test_daemon_killed_three_times_loses_nothing(
        broker: MosquittoBroker, proxy: TcpProxy, subscriber_factory: SubscriberFactory,
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    device = "killed"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    # 40 ms each way keeps messages in flight (and some waiting) when the kill comes.
    proxy.set_delay(0.04)
    config = write_config(tmp_path, proxy.port, device=device, fps=150)
    for _ in range(KILLS):
        daemon = start_daemon(daemons, config, tmp_path)
        before = subscriber.count("a")
        assert subscriber.wait_for_count("a", before + 150, timeout_s=30), daemon.log_text()
        assert daemon.kill() == -signal.SIGKILL
    waiting = outbox_stats(config)["depth"]
    daemon = start_daemon(daemons, config, tmp_path)
    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=15)
    before = subscriber.count("a")
    assert subscriber.wait_for_count("a", before + 100, timeout_s=30), daemon.log_text()
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=30)
    duplicates = assert_complete(subscriber, counters)
    print(f"{waiting} message(s) were waiting after the last kill; duplicates {duplicates}")


STOP_TIMEOUT_S = 4.0
SLOW_LINK_DELAY_S = 0.3  # each way: about 100 / 0.6 s = 170 msg/s, less than produced


def test_sigterm_under_load_exits_in_time_and_the_next_start_delivers_the_rest(
        broker: MosquittoBroker, proxy: TcpProxy, subscriber_factory: SubscriberFactory,
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    device = "sigterm"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    proxy.set_delay(SLOW_LINK_DELAY_S)
    config = write_config(tmp_path, proxy.port, device=device, fps=300,
                          stop_timeout_s=STOP_TIMEOUT_S)
    daemon = start_daemon(daemons, config, tmp_path)
    assert wait_until(lambda: (read_stats(tmp_path) or {}).get("outbox", {}).get("depth", 0)
                      >= 500, timeout=30), daemon.log_text()
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(STOP_TIMEOUT_S + 5)
    elapsed = time.monotonic() - signalled
    print(f"SIGTERM -> exit {code} in {elapsed:.2f} s (stop_timeout_s {STOP_TIMEOUT_S})")
    assert code == 0, daemon.log_text()
    assert elapsed <= STOP_TIMEOUT_S
    assert read_retained(broker.host, broker.port, f"edge/{device}/status") == b"offline"
    left = outbox_stats(config)["depth"]
    assert left > 0, "the test needs messages left unsent at shutdown"
    assert f"outbox: {left} message(s) stay for the next start" in daemon.log_text()

    proxy.set_delay(0.0)
    daemon = start_daemon(daemons, config, tmp_path)
    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=15)
    assert wait_until(lambda: (read_stats(tmp_path) or {}).get("outbox", {}).get("depth", left)
                      < 100, timeout=30), daemon.log_text()
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=30)
    assert_complete(subscriber, counters)


TMPFS_SIZE = "16m"  # room for the WAL (about 4 MiB between checkpoints)
FILL_CHUNK = 64 * 1024


@pytest.fixture
def small_state_fs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted as the daemon's state directory (needs root)."""
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                              str(state)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the disk-full "
                    "code path is covered by tests/unit/test_outbox.py")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full."""
    filler = directory / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * FILL_CHUNK)
            out.flush()
    return filler


def test_disk_full_counts_drops_exactly_and_recovers(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path,
        small_state_fs: Path, daemons: list[DaemonProcess]) -> None:
    device = "disk-full"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    config = write_config(tmp_path, broker.port, device=device, fps=100)
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 100, timeout_s=30), daemon.log_text()
    broker.stop()  # from now on the outbox has to grow
    filler = fill(small_state_fs)
    try:
        (small_state_fs / "probe").write_bytes(b"\0" * FILL_CHUNK)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    time.sleep(3.0)
    assert daemon.alive()
    filler.unlink()  # space returns
    assert wait_until(lambda: (read_stats(tmp_path) or {}).get("outbox", {}).get(
        "dropped_disk_full", 0) > 0, timeout=10), daemon.log_text()
    assert wait_results(tmp_path, 600, timeout=15)  # inference went on all along
    broker.start()
    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=15)
    before = subscriber.count("a")
    assert subscriber.wait_for_count("a", before + 100, timeout_s=30), daemon.log_text()
    assert daemon.terminate() == 0, daemon.log_text()
    log_text = daemon.log_text()
    assert "cannot store messages" in log_text and "Traceback" not in log_text

    counters = outbox_stats(config)
    for name in PIPELINES:
        next_seq = counters["pipelines"][name]["next_seq"]
        assert subscriber.wait_for_seqs(name, [next_seq - 1], timeout_s=30)
        missing = subscriber.missing(name, range(next_seq))
        dropped = counters["pipelines"][name]["dropped"]
        print(f"pipeline {name}: {dropped} dropped while the disk was full")
        assert dropped > 0 and len(missing) == dropped, (name, len(missing), dropped)


def test_state_dir_full_at_start_is_one_clear_line_and_exit_73(
        tmp_path: Path, small_state_fs: Path) -> None:
    config = write_config(tmp_path, 1, device="full-at-start", fps=10)
    fill(small_state_fs)
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 73, result.stderr  # transient: systemd restarts it
    assert_one_clear_line(result.stderr, "state_dir", "cannot be written", "full")


def test_unusable_state_dir_is_one_clear_line_and_exit_78(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path, 1, device="bad-state", fps=10,
                          state_dir=str(blocker / "state"))
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert_one_clear_line(result.stderr, "state_dir", str(blocker / "state"))


def test_second_daemon_on_the_same_state_dir_is_refused(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, 1, device="twice", fps=10, pipelines=("a",))
    first = start_daemon(daemons, config, tmp_path)
    assert wait_results(tmp_path, 1, timeout=15, pipelines=("a",)), first.log_text()
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert_one_clear_line(result.stderr, "in use by another edge-runtime process")
    assert first.alive()
    assert first.terminate() == 0
