"""Run the daemon as a subprocess, the way systemd would, and talk to it with signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 20.0


def cli_command(*args: str) -> list[str]:
    """``python -m edge_runtime ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", "edge_runtime", *args]


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion, capturing its output."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


class DaemonProcess:
    """``edge-runtime run`` in a subprocess; stderr goes to a log file for post-mortems."""

    def __init__(self, config: Path | None, overrides: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.overrides = overrides
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> DaemonProcess:
        args = ["run"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        for item in self.overrides:
            args += ["--set", item]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(cli_command(*args), stdout=self._log,
                                        stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        assert self.process is not None
        self.process.kill()
        return self.wait(STOP_TIMEOUT_S)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` on the monotonic clock until true or ``timeout`` seconds pass."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
