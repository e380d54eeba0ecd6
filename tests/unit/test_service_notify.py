"""sd_notify transport: addresses, the watchdog variables, datagrams on a real socket."""

from __future__ import annotations

import socket
from pathlib import Path

from edge_runtime.service.notify import Notifier, socket_address, watchdog_interval_s


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@sd-notify-42") == "\0sd-notify-42"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, pid=7) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval_s({}, pid=7) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}, pid=7) is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    env = {"WATCHDOG_USEC": "2000000"}
    notifier, interval = Notifier.from_environment(env)
    assert not notifier.enabled and interval is None
    assert notifier.send("READY=1") is False


def test_one_datagram_per_message_and_the_variables_are_consumed(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    receiver.bind(str(path))
    receiver.settimeout(5)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000", "OTHER": "kept"}
    notifier, interval = Notifier.from_environment(env)
    try:
        assert interval == 2.0
        assert env == {"OTHER": "kept"}, "a child process must not notify in our name"
        assert notifier.send("READY=1", "STATUS=cam 10.0 fps")
        assert notifier.send("WATCHDOG=1")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=cam 10.0 fps"
        assert receiver.recv(4096) == b"WATCHDOG=1"
    finally:
        notifier.close()
        receiver.close()


def test_abstract_socket(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"edge-runtime-unit-{tmp_path.name}"
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    notifier, _ = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.send("STOPPING=1")
        assert receiver.recv(4096) == b"STOPPING=1"
    finally:
        notifier.close()
        receiver.close()


def test_a_vanished_manager_does_not_break_the_daemon(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    try:
        assert notifier.send("WATCHDOG=1") is False
        assert notifier.send("WATCHDOG=1") is False
    finally:
        notifier.close()
