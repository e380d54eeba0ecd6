"""A fault-injecting TCP proxy on loopback for network failure tests.

One background thread runs a ``selectors`` loop over the listening socket and every proxied
connection; the public methods hand commands to that thread and wait until they took effect,
so when e.g. :meth:`TcpProxy.cut_all` returns, the connections are already reset.

Faults:

* :meth:`TcpProxy.cut_all` resets every open connection (RST on both sides).
* :meth:`TcpProxy.blackhole` makes the path silent in both directions while the sockets stay
  open. By default bytes are *held* (not read, not forwarded), like packets vanishing on a
  real network where TCP delivers them intact once the path heals; FINs are held too. With
  ``discard=True`` bytes are read and thrown away, so the TCP stream is corrupt once the path
  heals and only a new connection works. Either way a keepalive timeout is what notices it.
* :meth:`TcpProxy.pause_accept` leaves new connections in the kernel backlog (the client's
  connect succeeds, then nothing happens); :meth:`TcpProxy.refuse` resets new connections
  right after accepting them.
* :meth:`TcpProxy.set_delay` adds latency to every chunk in both directions.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import queue
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

LOOPBACK_HOST = "127.0.0.1"
RECV_CHUNK_BYTES = 65536
"""Bytes read from a socket at once."""
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
"""Per direction: reading from the source stops while this much waits to be written."""
COMMAND_TIMEOUT_S = 5.0
"""How long a public method waits for the proxy thread to carry out its command."""
JOIN_TIMEOUT_S = 5.0
"""How long :meth:`TcpProxy.close` waits for the proxy thread to end."""
IDLE_SELECT_TIMEOUT_S = 0.5
"""Longest select() wait when nothing is scheduled (commands wake the loop at once)."""
LISTEN_BACKLOG = 128

T = TypeVar("T")
_LINGER_RESET = struct.pack("ii", 1, 0)


def _reset_close(sock: socket.socket | None) -> None:
    """Close ``sock`` with an RST instead of a FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Pipe:
    """Bytes travelling in one direction of a connection, each chunk with its release time."""

    chunks: deque[tuple[float, bytes]] = field(default_factory=deque)
    size: int = 0
    eof: bool = False
    """The source sent FIN; forward it once the chunks are written."""
    shut: bool = False
    """The FIN was forwarded (shutdown(SHUT_WR) on the destination)."""

    def push(self, release_at: float, data: bytes) -> None:
        """Queue ``data`` for release at monotonic time ``release_at``."""
        self.chunks.append((release_at, data))
        self.size += len(data)

    def clear(self) -> None:
        """Drop everything queued."""
        self.chunks.clear()
        self.size = 0

    def due(self, now: float) -> bool:
        """True when the first chunk may be written."""
        return bool(self.chunks) and self.chunks[0][0] <= now

    def next_release(self) -> float | None:
        """Release time of the first chunk, if any."""
        return self.chunks[0][0] if self.chunks else None

    @property
    def done(self) -> bool:
        """True when the FIN went through."""
        return self.shut


@dataclass
class _Conn:
    """One proxied connection: the accepted client socket and the socket to the target."""

    ident: int
    client: socket.socket
    upstream: socket.socket | None = None
    connecting: bool = False
    c2u: _Pipe = field(default_factory=_Pipe)
    u2c: _Pipe = field(default_factory=_Pipe)
    dead_side: bool = False
    """In discard black-hole mode one endpoint closed; reset the other when the path heals."""


class TcpProxy:
    """Forward TCP connections from a free loopback port to (target_host, target_port)."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = LOOPBACK_HOST
    ) -> None:
        """Bind the listening socket and start the proxy thread."""
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(LISTEN_BACKLOG)
        self._listener.setblocking(False)
        self._host: str = listen_host
        self._port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._registered: dict[socket.socket, int] = {}
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._blackhole = False
        self._discard = False
        self._paused = False
        self._refusing = False
        self._delay_s = 0.0
        self._accepted = 0
        self._refused = 0
        self._stopping = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self._port}", daemon=True
        )
        self._thread.start()

    # -- public API -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address clients connect to."""
        return self._host

    @property
    def port(self) -> int:
        """Port clients connect to."""
        return self._port

    @property
    def target(self) -> tuple[str, int]:
        """Where connections are forwarded."""
        return self._target

    @property
    def connection_count(self) -> int:
        """Number of proxied connections open right now."""
        return self._call(lambda: len(self._conns))

    @property
    def accepted_count(self) -> int:
        """Number of connections accepted since the proxy started (refused ones included)."""
        return self._call(lambda: self._accepted)

    @property
    def refused_count(self) -> int:
        """Number of connections reset right after accept because of :meth:`refuse`."""
        return self._call(lambda: self._refused)

    def cut_all(self) -> int:
        """Reset every open connection (RST to both ends) now; return how many were cut."""

        def cut() -> int:
            count = len(self._conns)
            for conn in list(self._conns.values()):
                self._reset_conn(conn)
            return count

        return self._call(cut)

    def blackhole(self, on: bool, *, discard: bool = False) -> None:
        """Make every connection, open or new, silent in both directions (see module doc)."""

        def apply() -> None:
            self._blackhole = on
            self._discard = discard if on else False
            if on and discard:
                for conn in self._conns.values():
                    conn.c2u.clear()
                    conn.u2c.clear()
            if not on:
                for conn in list(self._conns.values()):
                    if conn.dead_side:
                        self._reset_conn(conn)
                    elif conn.upstream is None:
                        self._start_upstream(conn)

        self._call(apply)

    def pause_accept(self, on: bool) -> None:
        """Stop (or resume) accepting: new connections wait in the kernel backlog."""

        def apply() -> None:
            self._paused = on

        self._call(apply)

    def refuse(self, on: bool) -> None:
        """Reset (or stop resetting) every new connection right after accepting it."""

        def apply() -> None:
            self._refusing = on

        self._call(apply)

    def set_delay(self, delay_s: float) -> None:
        """Delay every chunk by ``delay_s`` seconds in both directions (0 turns it off)."""
        if delay_s < 0:
            raise ValueError("delay must be >= 0")

        def apply() -> None:
            self._delay_s = delay_s

        self._call(apply)

    def close(self) -> None:
        """Reset all connections, close every socket and join the proxy thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._commands.put(self._request_stop)
            self._wake()
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError("proxy thread did not stop")
        self._close_everything()

    def __enter__(self) -> TcpProxy:
        """Return the running proxy."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the proxy."""
        self.close()

    def __repr__(self) -> str:
        """Show the forwarding."""
        return f"TcpProxy({self._host}:{self._port} -> {self._target[0]}:{self._target[1]})"

    # -- command plumbing -------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the proxy thread and return its result."""
        if self._closed:
            raise RuntimeError("proxy is closed")
        if self._error is not None:
            raise RuntimeError("proxy thread failed") from self._error
        done = threading.Event()
        box: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                box.append(fn())
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        self._commands.put(run)
        self._wake()
        if not done.wait(COMMAND_TIMEOUT_S):
            if self._error is not None:
                raise RuntimeError("proxy thread failed") from self._error
            raise TimeoutError(f"proxy thread did not answer within {COMMAND_TIMEOUT_S} s")
        if failure:
            raise failure[0]
        return box[0]

    def _wake(self) -> None:
        """Interrupt the select() of the proxy thread."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _request_stop(self) -> None:
        """Command: leave the loop."""
        self._stopping = True

    # -- proxy thread -----------------------------------------------------------------------

    def _run(self) -> None:
        """Proxy thread main loop."""
        try:
            while not self._stopping:
                self._run_commands()
                if self._stopping:
                    break
                self._update_registrations()
                for key, events in self._selector.select(self._select_timeout()):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    self._on_event(sock, events)
                self._flush_all()
        except BaseException as exc:
            self._error = exc
        finally:
            for conn in list(self._conns.values()):
                self._reset_conn(conn)
            # Unblock anyone waiting for a command that will never run.
            self._run_commands()

    def _run_commands(self) -> None:
        """Execute queued commands."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _select_timeout(self) -> float:
        """Wait until the next delayed chunk is due, or the idle timeout."""
        if self._blackhole:
            return IDLE_SELECT_TIMEOUT_S
        now = time.monotonic()
        timeout = IDLE_SELECT_TIMEOUT_S
        for conn in self._conns.values():
            for pipe in (conn.c2u, conn.u2c):
                release = pipe.next_release()
                # Due chunks wait for EVENT_WRITE instead; only future releases set a timer.
                if release is not None and release > now:
                    timeout = min(timeout, release - now)
        return timeout

    def _wanted_events(self) -> dict[socket.socket, int]:
        """Events each socket should be watched for in the current state."""
        wanted: dict[socket.socket, int] = {self._wake_r: selectors.EVENT_READ}
        if not self._paused:
            wanted[self._listener] = selectors.EVENT_READ
        now = time.monotonic()
        for conn in self._conns.values():
            if self._blackhole and not self._discard:
                continue  # hold: neither read nor write, so nothing (not even a FIN) passes
            if self._blackhole:
                for sock in (conn.client, conn.upstream):
                    if sock is not None and sock.fileno() >= 0:
                        wanted[sock] = selectors.EVENT_READ
                continue
            client_events = 0
            if not conn.c2u.eof and conn.c2u.size < MAX_BUFFERED_BYTES:
                client_events |= selectors.EVENT_READ
            if conn.u2c.due(now):
                client_events |= selectors.EVENT_WRITE
            if client_events:
                wanted[conn.client] = client_events
            if conn.upstream is None:
                continue
            if conn.connecting:
                wanted[conn.upstream] = selectors.EVENT_WRITE
                continue
            upstream_events = 0
            if not conn.u2c.eof and conn.u2c.size < MAX_BUFFERED_BYTES:
                upstream_events |= selectors.EVENT_READ
            if conn.c2u.due(now):
                upstream_events |= selectors.EVENT_WRITE
            if upstream_events:
                wanted[conn.upstream] = upstream_events
        return wanted

    def _update_registrations(self) -> None:
        """Bring the selector in line with :meth:`_wanted_events`."""
        wanted = self._wanted_events()
        for sock in list(self._registered):
            if sock not in wanted:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                del self._registered[sock]
        for sock, events in wanted.items():
            current = self._registered.get(sock)
            if current == events:
                continue
            if current is None:
                self._selector.register(sock, events)
            else:
                self._selector.modify(sock, events)
            self._registered[sock] = events

    def _forget(self, sock: socket.socket | None) -> None:
        """Unregister ``sock`` before it is closed."""
        if sock is None or sock not in self._registered:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)
        del self._registered[sock]

    def _on_event(self, sock: socket.socket, events: int) -> None:
        """Dispatch one selector event."""
        if sock is self._wake_r:
            with contextlib.suppress(BlockingIOError, OSError):
                while self._wake_r.recv(4096):
                    pass
            return
        if sock is self._listener:
            self._accept_all()
            return
        conn = self._conn_of(sock)
        if conn is None:
            return
        if sock is conn.upstream and conn.connecting:
            self._finish_upstream_connect(conn)
            return
        if events & selectors.EVENT_READ:
            self._read(conn, sock)

    def _conn_of(self, sock: socket.socket) -> _Conn | None:
        """Find the connection a socket belongs to."""
        for conn in self._conns.values():
            if sock is conn.client or sock is conn.upstream:
                return conn
        return None

    def _accept_all(self) -> None:
        """Accept every pending connection."""
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._accepted += 1
            if self._refusing:
                self._refused += 1
                _reset_close(client)
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(ident=next(self._ids), client=client)
            self._conns[conn.ident] = conn
            if not self._blackhole:
                self._start_upstream(conn)

    def _start_upstream(self, conn: _Conn) -> None:
        """Begin the non-blocking connect to the target."""
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = upstream
        conn.connecting = True
        err = upstream.connect_ex(self._target)
        if err not in (0, errno.EINPROGRESS):
            self._reset_conn(conn)

    def _finish_upstream_connect(self, conn: _Conn) -> None:
        """Complete the connect; a refused target resets the client like a refusing server."""
        assert conn.upstream is not None
        err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self._reset_conn(conn)
            return
        conn.connecting = False

    def _read(self, conn: _Conn, sock: socket.socket) -> None:
        """Read what ``sock`` has and queue it for the other side."""
        try:
            data = sock.recv(RECV_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._side_failed(conn, sock)
            return
        if not data:
            if self._blackhole:
                self._side_failed(conn, sock)
                return
            pipe = conn.c2u if sock is conn.client else conn.u2c
            pipe.eof = True
            return
        if self._blackhole:
            return  # discard mode: the bytes vanish
        pipe = conn.c2u if sock is conn.client else conn.u2c
        pipe.push(time.monotonic() + self._delay_s, data)

    def _side_failed(self, conn: _Conn, sock: socket.socket) -> None:
        """An endpoint reset or closed; propagate unless a discard black hole swallows it."""
        if not self._blackhole:
            self._reset_conn(conn)
            return
        # In a black hole nothing reaches the other end: close this side only, quietly.
        self._forget(sock)
        with contextlib.suppress(OSError):
            sock.close()
        conn.dead_side = True
        if conn.client.fileno() < 0 and (conn.upstream is None or conn.upstream.fileno() < 0):
            self._drop_conn(conn)

    def _flush_all(self) -> None:
        """Write due chunks and forward FINs for every connection."""
        if self._blackhole:
            return
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if conn.upstream is None or conn.connecting:
                continue
            ok = self._flush(conn, conn.c2u, conn.upstream, now) and self._flush(
                conn, conn.u2c, conn.client, now
            )
            if ok and conn.c2u.done and conn.u2c.done:
                self._drop_conn(conn)

    def _flush(self, conn: _Conn, pipe: _Pipe, dest: socket.socket, now: float) -> bool:
        """Write due chunks of ``pipe`` to ``dest``; False when the connection was reset."""
        while pipe.due(now):
            release_at, data = pipe.chunks[0]
            try:
                sent = dest.send(data)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._reset_conn(conn)
                return False
            pipe.size -= sent
            if sent < len(data):
                pipe.chunks[0] = (release_at, data[sent:])
                return True
            pipe.chunks.popleft()
        if pipe.eof and not pipe.chunks and not pipe.shut:
            with contextlib.suppress(OSError):
                dest.shutdown(socket.SHUT_WR)
            pipe.shut = True
        return True

    def _reset_conn(self, conn: _Conn) -> None:
        """Reset both sides of ``conn`` and forget it."""
        for sock in (conn.client, conn.upstream):
            self._forget(sock)
            _reset_close(sock)
        self._conns.pop(conn.ident, None)

    def _drop_conn(self, conn: _Conn) -> None:
        """Close both sides of a finished connection normally."""
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            self._forget(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._conns.pop(conn.ident, None)

    def _close_everything(self) -> None:
        """Close the selector, the listener and the wake-up pair (after the thread ended)."""
        for conn in list(self._conns.values()):
            self._reset_conn(conn)
        self._registered.clear()
        with contextlib.suppress(OSError):
            self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
