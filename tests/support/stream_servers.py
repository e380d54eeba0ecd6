"""Camera servers as processes a test can kill, freeze and start again on the same port.

- HTTP MJPEG: ``tests/support/mjpeg_server.py`` (standard library) under the test's Python.
- RTSP: ``tests/support/rtsp_server.py``, GStreamer's gst-rtsp-server from Debian packages
  (``gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good``) under the system Python that
  has PyGObject. Tests needing it skip when it is missing, unless
  ``EDGE_RUNTIME_REQUIRE_RTSP=1`` (set by deploy/run-tests.sh after installing it) turns the
  skip into a failure.
"""

from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from edge_runtime.bundled import models_dir

SUPPORT = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 15.0
RTSP_PROBE = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
              "from gi.repository import GstRtspServer")
RTSP_PACKAGES = "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"


def digits_dir() -> Path:
    return models_dir() / "demo" / "digits"


class ServerProcess:
    """A server subprocess that prints ``ready`` on stdout once it listens."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ServerProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._log,
                                        stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if select.select([self.process.stdout], [], [], 0.1)[0]:
                line = self.process.stdout.readline()
                if line.strip() == b"ready":
                    return self
                if not line:
                    break
        self.close()
        raise AssertionError(f"server {self.args} did not start: {self.log_text()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def freeze(self) -> None:
        """SIGSTOP: the kernel keeps the connections open, nothing is sent."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        self.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)  # a frozen process cannot die
                self.process.kill()
            self.process.wait(10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def mjpeg_server(port: int, log_path: Path, *, fps: float = 10.0, user: str | None = None,
                 password: str | None = None) -> ServerProcess:
    """The HTTP MJPEG camera (not started) serving the bundled digit frames."""
    args = [sys.executable, str(SUPPORT / "mjpeg_server.py"), "--port", str(port),
            "--frames-dir", str(digits_dir()), "--fps", str(fps)]
    if user is not None:
        args += ["--user", user, "--password", password or ""]
    return ServerProcess(args, log_path)


@functools.cache
def rtsp_server_missing() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", RTSP_PROBE], capture_output=True, timeout=30,
                           check=False)
    if probe.returncode != 0:
        return (f"gst-rtsp-server not importable by {SYSTEM_PYTHON} "
                f"(apt-get install {RTSP_PACKAGES})")
    return None


def require_rtsp_server() -> None:
    """Skip the test when the RTSP server is missing, or fail when it is required."""
    missing = rtsp_server_missing()
    if missing is None:
        return
    if os.environ.get("EDGE_RUNTIME_REQUIRE_RTSP") == "1":
        pytest.fail(f"RTSP test server required but unavailable: {missing}")
    pytest.skip(missing)


def rtsp_frames(folder: Path, count: int = 30) -> Path:
    """Copy the first digit frames as 000.jpg, 001.jpg, ... (multifilesrc's naming)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(sorted(digits_dir().glob("*.jpg"))[:count]):
        shutil.copyfile(source, folder / f"{i:03d}.jpg")
    return folder


def rtsp_server(port: int, frames: Path, log_path: Path, *, fps: int = 25,
                user: str | None = None, password: str | None = None,
                protocols: str = "tcp+udp") -> ServerProcess:
    """The RTSP camera (not started) at ``rtsp://127.0.0.1:PORT/cam``."""
    args = [SYSTEM_PYTHON, str(SUPPORT / "rtsp_server.py"), "--port", str(port),
            "--frames", str(frames), "--fps", str(fps), "--protocols", protocols]
    if user is not None:
        args += ["--user", user, "--password", password or ""]
    return ServerProcess(args, log_path)


def threads_and_fds(pid: int | None = None) -> tuple[int, int]:
    """How many threads and open file descriptors a process has (default: this one)."""
    proc = Path("/proc") / (str(pid) if pid is not None else "self")
    return len(os.listdir(proc / "task")), len(os.listdir(proc / "fd"))
