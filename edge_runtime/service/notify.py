"""sd_notify(3) without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``.

The protocol is newline-separated ``KEY=VALUE`` assignments in a single datagram sent to
the Unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` names an abstract socket).
Without ``$NOTIFY_SOCKET`` (not started by systemd) every send is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
USEC_PER_S = 1_000_000


def socket_address(value: str) -> str | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value; None if unusable.

    ``@name`` is the abstract socket ``\\0name``; an absolute path is a filesystem socket.
    Other forms (``vsock:``, relative paths) are not supported and give None.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval_s(environ: MutableMapping[str, str], pid: int) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``; None if no watchdog.

    ``$WATCHDOG_PID``, when set, must be this process (sd_watchdog_enabled(3)).
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watched_pid = environ.get("WATCHDOG_PID")
    if watched_pid is not None and watched_pid.strip() != str(pid):
        return None
    return usec / USEC_PER_S / 2


class Notifier:
    """Sends notifications to the service manager; silent when there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None
                         ) -> tuple[Notifier, float | None]:
        """The notifier and the watchdog interval for this process.

        The variables are removed from the environment, as sd_notify's ``unset_environment``
        does, so a child process never notifies (or feeds the watchdog) in our name.
        """
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET")
        interval = watchdog_interval_s(env, os.getpid())
        for name in NOTIFY_ENV:
            env.pop(name, None)
        address = socket_address(value) if value else None
        if value and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket path or @abstract name; "
                        "systemd notifications are off", value)
        return cls(address), interval if address is not None else None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True if sent (False also when off)."""
        if self._socket is None or self.address is None:
            return False
        try:
            self._socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError as err:
            if not self._failed:  # the manager went away: say so once, keep running
                log.warning("cannot notify the service manager at %s: %s",
                            self.address.replace("\0", "@"), err.strerror or err)
            self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
