"""Run the real ``mosquitto`` binary on a free loopback port for integration tests.

The generated configuration makes the broker itself lossless for slow test subscribers
(unbounded per-client queue, raised in-flight window) and turns persistence on, so a
persistent session and its queued messages survive a graceful :meth:`MosquittoBroker.restart`.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

MOSQUITTO_FALLBACK_PATH = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD_FALLBACK_PATH = "/usr/bin/mosquitto_passwd"
ALLOW_SKIP_ENV = "EDGE_RUNTIME_ALLOW_SKIP_BROKER"
LOOPBACK_HOST = "127.0.0.1"

START_TIMEOUT_S = 10.0
"""How long :meth:`MosquittoBroker.start` waits for the listeners to accept."""
STOP_TIMEOUT_S = 10.0
"""How long :meth:`MosquittoBroker.stop` waits after SIGTERM before it uses SIGKILL."""
PORT_POLL_INTERVAL_S = 0.02
"""Pause between two probes of the listening port during start."""
PROBE_CONNECT_TIMEOUT_S = 0.5
"""Timeout of one TCP probe connection to the broker."""
HELPER_TIMEOUT_S = 30.0
"""Timeout for helper commands (mosquitto_passwd, openssl)."""
LOG_TAIL_LINES = 40
"""Lines of the broker log quoted in start errors."""
FREE_PORT_ATTEMPTS = 5
"""Fresh ports tried when another process grabbed the chosen one before mosquitto bound it."""
MAX_INFLIGHT_MESSAGES = 1000
"""Per-client QoS 1/2 in-flight window (mosquitto's default is 20)."""
TLS_CERT_DAYS = 2
"""Validity of the generated test certificates, in days."""
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
DEFAULT_EPHEMERAL_FLOOR = 32768
PORT_PICK_FLOOR = 20000
"""Broker ports are picked in [PORT_PICK_FLOOR, start of the ephemeral range)."""
PORT_PICK_ATTEMPTS = 50


class BrokerStartError(RuntimeError):
    """Mosquitto did not come up; the message quotes the tail of its log."""


def find_mosquitto() -> str | None:
    """Return the path of the ``mosquitto`` binary, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(MOSQUITTO_FALLBACK_PATH, os.X_OK):
        return MOSQUITTO_FALLBACK_PATH
    return None


def find_mosquitto_passwd() -> str | None:
    """Return the path of ``mosquitto_passwd``, or None when it is not installed."""
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    if os.access(MOSQUITTO_PASSWD_FALLBACK_PATH, os.X_OK):
        return MOSQUITTO_PASSWD_FALLBACK_PATH
    return None


def require_mosquitto(finder: Callable[[], str | None] = find_mosquitto) -> str:
    """Return the mosquitto path; fail the test loudly when it is missing.

    Skips instead only when ``EDGE_RUNTIME_ALLOW_SKIP_BROKER=1``: CI installs mosquitto, and a
    silently skipped broker test would hide a missing install step.
    """
    path = finder()
    if path is not None:
        return path
    reason = (
        "mosquitto binary not found (looked in PATH and "
        f"{MOSQUITTO_FALLBACK_PATH}); install it with `apt-get install mosquitto`"
    )
    if os.environ.get(ALLOW_SKIP_ENV) == "1":
        pytest.skip(f"{reason} [skipped because {ALLOW_SKIP_ENV}=1]")
    pytest.fail(f"{reason}; set {ALLOW_SKIP_ENV}=1 to skip broker tests instead", pytrace=False)


def _ephemeral_port_floor() -> int:
    """Lowest port the kernel hands out to outgoing connections."""
    try:
        return int(Path(EPHEMERAL_RANGE_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_FLOOR


def free_port(host: str = LOOPBACK_HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Picked below the ephemeral range, so that while the broker is down during a restart no
    outgoing client connection can take the port as its local port.
    """
    ceiling = _ephemeral_port_floor()
    for _ in range(PORT_PICK_ATTEMPTS if ceiling > PORT_PICK_FLOOR else 0):
        candidate = random.randrange(PORT_PICK_FLOOR, ceiling)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener and for clients that talk to it."""

    cafile: Path
    certfile: Path
    keyfile: Path
    client_certfile: Path | None = None
    client_keyfile: Path | None = None
    require_certificate: bool = False


def _run_helper(args: Sequence[str], cwd: Path | None = None) -> None:
    """Run a helper command; raise with its output when it fails."""
    result = subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HELPER_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with exit code {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )


def make_tls_files(
    directory: Path, *, hostname: str = "localhost", require_certificate: bool = False
) -> TlsFiles:
    """Create a throw-away CA, a server certificate for ``hostname``/127.0.0.1 and a client one.

    Uses the ``openssl`` command line with P-256 keys (fast to generate).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl command not found; install the Debian package `openssl`")
    directory.mkdir(parents=True, exist_ok=True)
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run_helper(
        [openssl, "req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.crt",
         "-days", str(TLS_CERT_DAYS), "-subj", "/CN=edge-runtime test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    (directory / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    for name, subject in (("server", f"/CN={hostname}"), ("client", "/CN=edge-runtime-test")):
        _run_helper(
            [openssl, "req", *ec_key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject],
            cwd=directory,
        )  # fmt: skip
        _run_helper(
            [openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", str(TLS_CERT_DAYS),
             "-extfile", f"{name}.ext"],
            cwd=directory,
        )  # fmt: skip
    return TlsFiles(
        cafile=directory / "ca.crt",
        certfile=directory / "server.crt",
        keyfile=directory / "server.key",
        client_certfile=directory / "client.crt",
        client_keyfile=directory / "client.key",
        require_certificate=require_certificate,
    )


class MosquittoBroker:
    """A real mosquitto process on loopback with a generated config in its own directory.

    The port is chosen once and kept across :meth:`restart`. Persistence is on by default:
    mosquitto writes its database on graceful shutdown (SIGTERM), every ``autosave_interval``
    seconds, or after that many changes when ``autosave_on_changes`` is set; a SIGKILL loses
    whatever was not saved yet.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = True,
        autosave_interval: int | None = None,
        autosave_on_changes: bool = False,
        extra_config: Sequence[str] = (),
        verbose: bool = False,
        workdir: Path | None = None,
        mosquitto_path: str | None = None,
    ) -> None:
        """Prepare (but do not start) a broker.

        ``users`` maps user names to passwords and turns anonymous access off unless
        ``allow_anonymous`` says otherwise. ``tls`` adds a second, TLS listener
        (:attr:`tls_port`). ``extra_config`` lines are appended to the generated config.
        ``workdir`` defaults to a temporary directory that :meth:`close` removes.
        """
        binary = mosquitto_path or find_mosquitto()
        if binary is None:
            raise FileNotFoundError(
                f"mosquitto binary not found in PATH or at {MOSQUITTO_FALLBACK_PATH}"
            )
        self._binary = binary
        self._auto_port = port is None
        self._port = port if port is not None else free_port()
        self._tls = tls
        self._tls_port: int | None = free_port() if tls is not None else None
        self._users = dict(users) if users else {}
        self._allow_anonymous = (not self._users) if allow_anonymous is None else allow_anonymous
        self._persistence = persistence
        self._autosave_interval = autosave_interval
        self._autosave_on_changes = autosave_on_changes
        self._extra_config = list(extra_config)
        self._verbose = verbose
        self._owns_workdir = workdir is None
        self._workdir = Path(tempfile.mkdtemp(prefix="mosquitto-")) if workdir is None else workdir
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._persistence_dir = self._workdir / "persistence"
        self._persistence_dir.mkdir(exist_ok=True)
        self._config_path = self._workdir / "mosquitto.conf"
        self._log_path = self._workdir / "mosquitto.log"
        self._password_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._closed = False
        if self._users:
            self._password_path = self._workdir / "passwd"
            self._write_password_file(self._password_path)

    # -- properties -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address the plain listener binds to."""
        return LOOPBACK_HOST

    @property
    def port(self) -> int:
        """Port of the plain MQTT listener (kept across restarts)."""
        return self._port

    @property
    def tls_port(self) -> int | None:
        """Port of the TLS listener, or None when the broker has none."""
        return self._tls_port

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files the broker was configured with."""
        return self._tls

    @property
    def is_running(self) -> bool:
        """True while the mosquitto process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or None."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def workdir(self) -> Path:
        """Directory holding the config, log, password file and persistence database."""
        return self._workdir

    @property
    def config_path(self) -> Path:
        """Path of the generated mosquitto.conf."""
        return self._config_path

    @property
    def log_path(self) -> Path:
        """Path of the broker log (stdout and stderr of every run, appended)."""
        return self._log_path

    @property
    def persistence_file(self) -> Path:
        """Path of the persistence database (exists after the first save)."""
        return self._persistence_dir / "mosquitto.db"

    # -- config -----------------------------------------------------------------------------

    def _write_password_file(self, path: Path) -> None:
        """Create the password file with ``mosquitto_passwd -b``."""
        tool = find_mosquitto_passwd()
        if tool is None:
            raise FileNotFoundError("mosquitto_passwd not found; it ships with mosquitto")
        create = ["-c"]
        for user, password in self._users.items():
            _run_helper([tool, *create, "-b", str(path), user, password])
            create = []

    def config_text(self) -> str:
        """Return the configuration the broker is (or will be) started with."""
        lines = ["# generated by tests/support/broker.py", "per_listener_settings false"]
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to user "mosquitto", which cannot write our dirs.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines.append(f"listener {self._port} {LOOPBACK_HOST}")
        if self._tls is not None:
            lines += [
                f"listener {self._tls_port} {LOOPBACK_HOST}",
                f"cafile {self._tls.cafile}",
                f"certfile {self._tls.certfile}",
                f"keyfile {self._tls.keyfile}",
                f"require_certificate {str(self._tls.require_certificate).lower()}",
            ]
        lines.append(f"allow_anonymous {str(self._allow_anonymous).lower()}")
        if self._password_path is not None:
            lines.append(f"password_file {self._password_path}")
        lines += [
            f"persistence {str(self._persistence).lower()}",
            f"persistence_location {self._persistence_dir}/",
            "persistence_file mosquitto.db",
        ]
        if self._autosave_interval is not None:
            lines.append(f"autosave_interval {self._autosave_interval}")
        if self._autosave_on_changes:
            lines.append("autosave_on_changes true")
        lines += [
            # 0 = unlimited: the broker must never be the one that drops for a slow subscriber.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self._verbose:
            lines += ["log_type debug", "log_type subscribe", "log_type unsubscribe"]
        lines += [
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            *self._extra_config,
        ]
        return "\n".join(lines) + "\n"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start mosquitto and wait until every listener accepts connections.

        Raises :class:`BrokerStartError` (with the log tail) when the process exits or the
        port does not accept within ``timeout_s``.
        """
        if self._closed:
            raise RuntimeError("broker was closed")
        if self.is_running:
            raise RuntimeError(f"broker already running on port {self._port}")
        retry_ports = self._auto_port and not self._started_once
        attempts = FREE_PORT_ATTEMPTS if retry_ports else 1
        for attempt in range(attempts):
            try:
                self._launch(timeout_s)
            except BrokerStartError as exc:
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    self._port = free_port()
                    if self._tls is not None:
                        self._tls_port = free_port()
                    continue
                raise
            self._started_once = True
            return

    def _launch(self, timeout_s: float) -> None:
        """Write the config, spawn mosquitto and poll until it is ready."""
        self._config_path.write_text(self.config_text())
        with self._log_path.open("ab") as log:
            log.write(f"=== starting mosquitto on port {self._port} ===\n".encode())
            log.flush()
            log_offset = log.tell()  # only "running" lines after this belong to this run
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self._config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ports = [self._port] + ([self._tls_port] if self._tls_port is not None else [])
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise BrokerStartError(
                    f"mosquitto exited with code {code} while starting on port {self._port}"
                    f"\n--- log tail ---\n{self.log_tail()}"
                )
            # "running" is logged after all listeners are bound and persistence is restored;
            # checking it (after our own start marker) proves the accepting port is ours.
            if self._logged_running(log_offset) and all(_port_accepts(p) for p in ports):
                return
            if time.monotonic() >= deadline:
                self._terminate(signal.SIGKILL)
                raise BrokerStartError(
                    f"mosquitto did not accept on port(s) {ports} within {timeout_s:.1f} s"
                    f"\n--- log tail ---\n{self.log_tail()}"
                )
            time.sleep(PORT_POLL_INTERVAL_S)

    def _logged_running(self, offset: int) -> bool:
        """True when the log after ``offset`` says the broker is running."""
        try:
            with self._log_path.open("rb") as log:
                log.seek(offset)
                return b" running" in log.read()
        except OSError:
            return False

    def _terminate(self, sig: signal.Signals) -> None:
        """Send ``sig`` and reap the process; escalate to SIGKILL after the stop timeout."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"mosquitto ignored {sig.name} for {STOP_TIMEOUT_S:.0f} s and was killed"
                f"\n--- log tail ---\n{self.log_tail()}"
            ) from None

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and wait; mosquitto saves its persistence database."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the broker with SIGKILL: nothing unsaved survives."""
        self._terminate(signal.SIGKILL)

    def restart(self, *, graceful: bool = True, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop (SIGTERM, or SIGKILL when not ``graceful``) and start again on the same port."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start(timeout_s)

    def close(self) -> None:
        """Stop the broker and remove the working directory when it was a temporary one."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            if self._owns_workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        """Start the broker unless it already runs."""
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker and clean up."""
        self.close()

    # -- logs -------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Return everything the broker logged so far (all runs)."""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the broker log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        """Show port and state."""
        state = "running" if self.is_running else "stopped"
        return f"MosquittoBroker({self.host}:{self._port}, {state})"


def _port_accepts(port: int, host: str = LOOPBACK_HOST) -> bool:
    """True when a TCP connection to (host, port) succeeds."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False
