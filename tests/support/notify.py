"""Play systemd's side of sd_notify: a datagram socket that records what the daemon sends.

``NotifySocket`` binds an AF_UNIX SOCK_DGRAM socket (a file, or an abstract name) and a
thread records each datagram with its monotonic arrival time; ``env`` gives the
``NOTIFY_SOCKET`` value to hand to the daemon.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAX_DATAGRAM_BYTES = 65536
RECV_TIMEOUT_S = 0.2
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes with the trailing NUL


@dataclass(frozen=True)
class Notification:
    """One datagram: its ``KEY=VALUE`` lines, and when it arrived (time.monotonic())."""

    fields: dict[str, str]
    received_at: float


class NotifySocket:
    """A notify socket a test owns; ``path=None`` makes an abstract socket."""

    def __init__(self, path: Path | None) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"edge-runtime-test-{uuid.uuid4().hex}"
            self._socket.bind("\0" + name)
            self.env_value = "@" + name
        else:
            if len(str(path).encode()) > MAX_SOCKET_PATH_BYTES:
                raise ValueError(f"socket path too long for AF_UNIX: {path}")
            self._socket.bind(str(path))
            self.env_value = str(path)
        self._socket.settimeout(RECV_TIMEOUT_S)
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(MAX_DATAGRAM_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._lock:
                self._received.append(Notification(fields, time.monotonic()))

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value}

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def times(self, key: str, value: str = "1") -> list[float]:
        """Arrival times of the datagrams carrying ``key=value`` (e.g. WATCHDOG=1)."""
        return [n.received_at for n in self.received() if n.fields.get(key) == value]

    def statuses(self) -> list[str]:
        return [n.fields["STATUS"] for n in self.received() if "STATUS" in n.fields]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(RECV_TIMEOUT_S * 5)
        self._socket.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
