"""The durable outbox: every prediction is committed here before it counts as produced.

SQLite in WAL mode. A message is deleted only when the broker acknowledged it, so it
survives broker outages and daemon crashes. The outbox also owns the per-pipeline ``seq``
counter (assigned in the same transaction as the insert, so ``seq`` never repeats and a
gap in ``seq`` always means a counted drop).

Bounds: ``max_messages`` and ``max_bytes``; when full, ``drop_oldest`` deletes the oldest
messages that are not in flight, ``drop_newest`` refuses the new one. Every message that
leaves the outbox without a broker acknowledgement is counted per pipeline, persistently:
drops for room, messages that could not be stored (disk full, I/O error), and publishes the
broker rejected. So ``seq`` gaps seen by a subscriber == the drop counter.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from edge_runtime.errors import ConfigError, StateError

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"
LOCK_FILE = "outbox.lock"
BUSY_TIMEOUT_MS = 5000
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024**2  # the WAL file is truncated to this after a checkpoint
STORE_FAILURE_LOG_INTERVAL_S = 30.0
DROP_BATCH = 64  # oldest rows examined per query when making room
DELETE_CHUNK = 500  # ids per DELETE statement (SQLite parameter limit is 32766)
CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
NOT_WRITABLE_CODES = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
                                sqlite3.SQLITE_PERM})
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
"""
SAVE_PIPELINE = ("INSERT INTO pipelines (name, next_seq, dropped) VALUES (?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq, "
                 "dropped = excluded.dropped")
DropPolicy = Literal["drop_oldest", "drop_newest"]
Synchronous = Literal["normal", "full"]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    pipeline: str
    topic: str
    qos: int
    payload: bytes


@dataclass
class _Room:
    """What making room for one message decided (applied to the stats after COMMIT)."""

    stored: bool = True
    victims: list[int] = field(default_factory=list)  # row ids deleted to make room
    removed_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # per pipeline, this decision


@dataclass
class OutboxStats:
    depth: int = 0
    bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # per pipeline, persistent
    dropped_disk_full: int = 0  # this run: could not be stored (disk full or I/O error)
    rejected: int = 0  # this run: refused by the broker (counted in ``dropped`` too)
    corrupt_files_set_aside: int = 0


def _code(err: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (extended codes carry it in the low byte)."""
    return int(getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF


class Outbox:
    """Thread-safe durable queue. Each thread uses its own SQLite connection.

    One process owns a state directory at a time (an advisory lock, released by the kernel
    when the process dies, so a ``kill -9`` never blocks the next start).
    """

    def __init__(self, state_dir: Path, *, max_messages: int = 1_000_000,
                 max_bytes: int = 256 * 1024**2, drop_policy: DropPolicy = "drop_oldest",
                 synchronous: Synchronous = "normal") -> None:
        self.path = state_dir / OUTBOX_FILE
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.drop_policy = drop_policy
        self.synchronous = synchronous
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._next_seq: dict[str, int] = {}
        self._unsaved: set[str] = set()  # pipelines whose counters changed without a commit
        self._in_flight: set[int] = set()  # row ids published and not yet acknowledged
        self._last_failure_log = 0.0
        self.stats = OutboxStats()
        self._listeners: list[Callable[[], None]] = []
        self._lock_file = _lock_state_dir(state_dir)
        try:
            self._open_checked()
        except BaseException:
            self._lock_file.close()
            raise

    # --- opening ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        with self._connections_lock:
            self._connections.append(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        return conn

    def _open_checked(self) -> None:
        """Open the store; a corrupt file is renamed aside (never deleted) and replaced.

        A store that cannot be written is a start-up error: :class:`ConfigError` when the
        directory is not writable, :class:`StateError` when it is full or failing.
        """
        try:
            try:
                self._load()
            except sqlite3.DatabaseError as err:
                if _code(err) not in CORRUPT_CODES:
                    raise
                aside = self._set_aside(err)
                self._load()
                self._restore_counters(aside)
                self.stats.corrupt_files_set_aside += 1
        except sqlite3.Error as err:
            self._close_all()
            where = self.path.parent
            if _code(err) in NOT_WRITABLE_CODES:
                raise ConfigError(
                    f"state_dir {where}: cannot open {self.path.name} for writing ({err})",
                    hint="set state_dir to a writable directory, or run as a user that "
                    "owns it") from err
            raise StateError(f"state_dir {where}: the outbox cannot be written ({err})",
                             hint="free space on that file system") from err

    def _set_aside(self, err: sqlite3.Error) -> Path:
        self._close_all()
        self._next_seq, self.stats = {}, OutboxStats()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.warning("outbox %s is corrupt (%s): moved to %s, starting a new one",
                    self.path, err, aside)
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        self._local = threading.local()
        return aside

    def _restore_counters(self, aside: Path) -> None:
        """Carry seq and drop counters over from a corrupt store when they are still
        readable, so that seq is not reused."""
        try:
            old = sqlite3.connect(f"{aside.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = [(str(n), int(s), int(d)) for n, s, d in old.execute(
                    "SELECT name, next_seq, dropped FROM pipelines")]
            finally:
                old.close()
        except sqlite3.Error as err:
            log.warning("outbox: the counters in %s are unreadable too (%s): seq restarts at 0",
                        aside, err)
            return
        self._conn().executemany(SAVE_PIPELINE, rows)
        for name, next_seq, dropped in rows:
            self._next_seq[name] = next_seq
            self.stats.dropped[name] = dropped
        log.warning("outbox: seq and drop counters of %d pipeline(s) carried over from %s",
                    len(rows), aside.name)

    def _load(self) -> None:
        conn = self._conn()
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            error = sqlite3.DatabaseError(f"quick_check: {result}")
            error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
            raise error
        conn.executescript(SCHEMA)
        depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages"
                                   ).fetchone()
        self.stats.depth, self.stats.bytes = int(depth), int(size)
        for name, next_seq, dropped in conn.execute(
                "SELECT name, next_seq, dropped FROM pipelines"):
            self._next_seq[name] = int(next_seq)
            self.stats.dropped[name] = int(dropped)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a changed ``synchronous`` (config reload) is applied
        here, by the thread that owns the connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.synchronous = self.synchronous
        elif self._local.synchronous != self.synchronous:
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            self._local.synchronous = self.synchronous
        return conn

    # --- writing ---------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (without locks held) after every successful enqueue."""
        self._listeners.append(callback)

    def next_seq(self, pipeline: str) -> int:
        with self._write_lock:
            return self._next_seq.get(pipeline, 0)

    def enqueue(self, pipeline: str, topic: str, qos: int,
                encode: Callable[[int], bytes]) -> int | None:
        """Commit one message built by ``encode(seq)``; return its seq, or None if dropped.

        The seq is consumed either way, so a dropped message leaves a visible gap.
        """
        with self._write_lock:
            seq = self._next_seq.get(pipeline, 0)
            payload = encode(seq)
            size = len(payload) + len(topic)
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    room = self._make_room(conn, pipeline, size)
                    if room.stored:
                        conn.execute(
                            "INSERT INTO messages (pipeline, topic, qos, payload, size) "
                            "VALUES (?, ?, ?, ?, ?)", (pipeline, topic, qos, payload, size))
                    next_seq = {**self._next_seq, pipeline: seq + 1}
                    dropped = _add_counts(self.stats.dropped, room.dropped)
                    self._save_pipelines(conn, {pipeline, *room.dropped}, next_seq, dropped)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as err:
                self._on_store_failure(pipeline, seq, err)
                return None
            self._next_seq = next_seq
            self.stats.dropped = dropped
            self._unsaved.clear()
            self.stats.depth += int(room.stored) - len(room.victims)
            self.stats.bytes += (size if room.stored else 0) - room.removed_bytes
        if not room.stored:
            return None
        for callback in self._listeners:
            callback()
        return seq

    def _save_pipelines(self, conn: sqlite3.Connection, names: set[str],
                        next_seq: dict[str, int], dropped: dict[str, int]) -> None:
        """Write the counters of ``names`` and of every pipeline left unsaved by a failure."""
        conn.executemany(SAVE_PIPELINE, [(name, next_seq.get(name, 0), dropped.get(name, 0))
                                         for name in sorted(names | self._unsaved)])

    def _make_room(self, conn: sqlite3.Connection, pipeline: str, size: int) -> _Room:
        """Apply the drop policy inside the open transaction.

        ``drop_oldest`` never drops a message in flight (it may reach the broker anyway, and
        would then be counted as a drop that is not missing); when only messages in flight
        are left to drop, the new message is dropped instead.
        """
        room = _Room()
        depth, used = self.stats.depth, self.stats.bytes

        def fits() -> bool:
            return (depth - len(room.victims) + 1 <= self.max_messages
                    and used - room.removed_bytes + size <= self.max_bytes)

        if fits():
            return room
        after = 0
        while self.drop_policy == "drop_oldest" and size <= self.max_bytes and not fits():
            rows = conn.execute("SELECT id, pipeline, size FROM messages WHERE id > ? "
                                "ORDER BY id LIMIT ?", (after, DROP_BATCH)).fetchall()
            if not rows:
                break
            for row_id, row_pipeline, row_size in rows:
                after = row_id
                if row_id in self._in_flight:
                    continue
                room.victims.append(row_id)
                room.removed_bytes += int(row_size)
                room.dropped[row_pipeline] = room.dropped.get(row_pipeline, 0) + 1
                if fits():
                    break
        if not fits():
            room = _Room(stored=False, dropped={pipeline: 1})
        else:
            _delete_rows(conn, room.victims)
        return room

    def _on_store_failure(self, pipeline: str, seq: int, err: sqlite3.Error) -> None:
        """Disk full, I/O error: the message is lost. Count it and keep running.

        The counters are written with the next successful commit.
        """
        self._next_seq[pipeline] = seq + 1
        self.stats.dropped[pipeline] = self.stats.dropped.get(pipeline, 0) + 1
        self._unsaved.add(pipeline)
        self.stats.dropped_disk_full += 1
        now = time.monotonic()
        if now - self._last_failure_log >= STORE_FAILURE_LOG_INTERVAL_S:
            self._last_failure_log = now
            log.error("outbox %s cannot store messages (%s); %d dropped so far this run - free "
                      "space in the state directory", self.path, err,
                      self.stats.dropped_disk_full)

    # --- reading and acknowledging ------------------------------------------------------

    def fetch_after(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """The oldest ``limit`` messages with id > ``after_id``, oldest first."""
        rows = self._conn().execute(
            "SELECT id, pipeline, topic, qos, payload FROM messages WHERE id > ? "
            "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [OutboxMessage(int(r[0]), r[1], r[2], int(r[3]), bytes(r[4])) for r in rows]

    def claim(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """Like :meth:`fetch_after`, and mark the messages in flight (safe from drop_oldest)
        until :meth:`delete`, :meth:`reject` or :meth:`release`."""
        with self._write_lock:
            messages = self.fetch_after(after_id, limit)
            self._in_flight.update(m.id for m in messages)
        return messages

    def release(self, ids: Iterable[int]) -> None:
        """Messages no longer in flight (connection lost): they stay and are sent again."""
        with self._write_lock:
            self._in_flight.difference_update(ids)

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged messages; returns how many existed."""
        return self._remove(list(ids), count_as_dropped=False)

    def reject(self, ids: Iterable[int]) -> int:
        """Remove messages the broker refused; each counts as a drop of its pipeline."""
        return self._remove(list(ids), count_as_dropped=True)

    def _remove(self, id_list: list[int], *, count_as_dropped: bool) -> int:
        if not id_list:
            return 0
        with self._write_lock:
            self._in_flight.difference_update(id_list)
            conn = self._conn()
            removed_bytes = 0
            per_pipeline: dict[str, int] = {}
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for pipeline, row_size in _delete_rows(conn, id_list):
                        removed_bytes += row_size
                        per_pipeline[pipeline] = per_pipeline.get(pipeline, 0) + 1
                    totals = self.stats.dropped
                    if count_as_dropped:
                        totals = _add_counts(totals, per_pipeline)
                        self._save_pipelines(conn, set(per_pipeline), self._next_seq, totals)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as err:
                log.warning("outbox: could not delete %d acknowledged message(s) (%s); they "
                            "will be sent again", len(id_list), err)
                return 0
            removed = sum(per_pipeline.values())
            if count_as_dropped:
                self.stats.dropped = totals
                self.stats.rejected += removed
                self._unsaved.clear()
            self.stats.depth -= removed
            self.stats.bytes -= removed_bytes
        return removed

    def snapshot(self) -> dict[str, Any]:
        with self._write_lock:
            return {"depth": self.stats.depth, "bytes": self.stats.bytes,
                    "max_messages": self.max_messages, "max_bytes": self.max_bytes,
                    "drop_policy": self.drop_policy, "in_flight": len(self._in_flight),
                    "dropped": dict(self.stats.dropped),
                    "dropped_disk_full": self.stats.dropped_disk_full,
                    "rejected": self.stats.rejected,
                    "next_seq": dict(self._next_seq)}

    def _close_all(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    def close(self) -> None:
        with self._write_lock:
            self._close_all()
            self._lock_file.close()


def _add_counts(totals: dict[str, int], extra: dict[str, int]) -> dict[str, int]:
    return {**totals, **{name: totals.get(name, 0) + n for name, n in extra.items()}}


def _delete_rows(conn: sqlite3.Connection, ids: list[int]) -> list[tuple[str, int]]:
    """Delete rows by id inside the caller's transaction; (pipeline, size) of each one."""
    deleted: list[tuple[str, int]] = []
    for start in range(0, len(ids), DELETE_CHUNK):
        chunk = ids[start:start + DELETE_CHUNK]
        marks = ",".join("?" * len(chunk))
        deleted += [(str(p), int(s)) for p, s in conn.execute(
            f"DELETE FROM messages WHERE id IN ({marks}) RETURNING pipeline, size", chunk)]
    return deleted


def _lock_state_dir(state_dir: Path) -> IO[bytes]:
    """Create the state directory and take its lock, or explain why not."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock_file = (state_dir / LOCK_FILE).open("ab", buffering=0)
    except OSError as err:
        raise ConfigError(f"state_dir {state_dir} is not usable ({err.strerror or err})",
                          hint="set state_dir to a writable directory, or run as a user that "
                          "owns it") from err
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        lock_file.close()
        raise ConfigError(f"state_dir {state_dir} is in use by another edge-runtime process",
                          hint="give each instance its own state_dir") from err
    with contextlib.suppress(OSError):  # the pid is for people; a full disk may refuse it
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n".encode())
    return lock_file


def read_outbox(state_dir: Path) -> dict[str, Any] | None:
    """Depth, bytes and per-pipeline counters of the outbox in ``state_dir``, read-only.

    Works while the daemon runs (WAL readers do not block the writer) and after it stopped;
    None when there is no outbox yet.
    """
    path = state_dir / OUTBOX_FILE
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        depth, size = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM messages").fetchone()
        pipelines = {str(name): {"next_seq": int(next_seq), "dropped": int(dropped)}
                     for name, next_seq, dropped in conn.execute(
                         "SELECT name, next_seq, dropped FROM pipelines ORDER BY name")}
        per_pipeline = dict(conn.execute(
            "SELECT pipeline, count(*) FROM messages GROUP BY pipeline").fetchall())
    finally:
        conn.close()
    for name, counters in pipelines.items():
        counters["waiting"] = int(per_pipeline.get(name, 0))
    return {"path": str(path), "depth": int(depth), "bytes": int(size), "pipelines": pipelines}
