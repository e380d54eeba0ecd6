"""The durable outbox: every prediction is committed here before it counts as produced.

SQLite in WAL mode. A message is deleted only when the broker acknowledged it, so it
survives broker outages and daemon crashes. The outbox also owns the per-pipeline ``seq``
counter (assigned in the same transaction as the insert, so ``seq`` never repeats and a
gap in ``seq`` always means a counted drop).

Bounds: ``max_messages`` and ``max_bytes``; when full, ``drop_oldest`` deletes the oldest
messages, ``drop_newest`` refuses the new one. Each drop consumes no storage but is counted
per pipeline, persistently.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"
BUSY_TIMEOUT_MS = 5000
DISK_FULL_LOG_INTERVAL_S = 30.0
DROP_BATCH = 64  # oldest rows examined per query when making room
DELETE_CHUNK = 500  # ids per DELETE statement (SQLite parameter limit is 32766)
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
    """What making room for one message did (applied to the stats after COMMIT)."""

    stored: bool = True
    removed: int = 0
    removed_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # new per-pipeline totals

    def count_drop(self, pipeline: str, totals: dict[str, int]) -> None:
        self.dropped[pipeline] = self.dropped.get(pipeline, totals.get(pipeline, 0)) + 1


@dataclass
class OutboxStats:
    depth: int = 0
    bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # per pipeline, persistent
    dropped_disk_full: int = 0  # this run: could not be stored at all
    corrupt_files_set_aside: int = 0


class Outbox:
    """Thread-safe durable queue. Each thread uses its own SQLite connection."""

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
        self._last_disk_full_log = 0.0
        self.stats = OutboxStats()
        self._listeners: list[Callable[[], None]] = []
        state_dir.mkdir(parents=True, exist_ok=True)
        self._open_checked()

    # --- opening ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _open_checked(self) -> None:
        """Open the store; a corrupt file is renamed aside (never deleted) and replaced."""
        try:
            self._load()
        except sqlite3.DatabaseError as err:
            self._close_all()
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("outbox %s is corrupt (%s): moved to %s, starting a new one",
                        self.path, err, aside)
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.rename(aside.with_name(aside.name + suffix))
            self._local = threading.local()
            self._load()
            self.stats.corrupt_files_set_aside += 1

    def _load(self) -> None:
        conn = self._conn()
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        conn.executescript(SCHEMA)
        depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages"
                                   ).fetchone()
        self.stats.depth, self.stats.bytes = int(depth), int(size)
        for name, next_seq, dropped in conn.execute(
                "SELECT name, next_seq, dropped FROM pipelines"):
            self._next_seq[name] = int(next_seq)
            self.stats.dropped[name] = int(dropped)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
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
        """Commit one message built by ``encode(seq)``; return its seq, or None if dropped."""
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
                    dropped = {**self.stats.dropped, **room.dropped}
                    conn.execute(
                        "INSERT INTO pipelines (name, next_seq, dropped) VALUES (?, ?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq",
                        (pipeline, seq + 1, dropped.get(pipeline, 0)))
                    conn.executemany("UPDATE pipelines SET dropped = ? WHERE name = ?",
                                     [(n, name) for name, n in room.dropped.items()])
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:
                self._on_store_failure(err)
                return None
            self._next_seq[pipeline] = seq + 1
            self.stats.dropped.update(room.dropped)
            self.stats.depth += int(room.stored) - room.removed
            self.stats.bytes += (size if room.stored else 0) - room.removed_bytes
        if not room.stored:
            return None
        for callback in self._listeners:
            callback()
        return seq

    def _make_room(self, conn: sqlite3.Connection, pipeline: str, size: int) -> _Room:
        """Apply the drop policy inside the open transaction."""
        room = _Room()
        depth, used = self.stats.depth, self.stats.bytes

        def fits() -> bool:
            return (depth - room.removed + 1 <= self.max_messages
                    and used - room.removed_bytes + size <= self.max_bytes)

        if fits():
            return room
        if self.drop_policy == "drop_newest" or size > self.max_bytes:
            room.stored = False
            room.count_drop(pipeline, self.stats.dropped)
            return room
        while not fits():
            rows = conn.execute("SELECT id, pipeline, size FROM messages ORDER BY id LIMIT ?",
                                (DROP_BATCH,)).fetchall()
            if not rows:
                break
            for row_id, row_pipeline, row_size in rows:
                conn.execute("DELETE FROM messages WHERE id = ?", (row_id,))
                room.count_drop(row_pipeline, self.stats.dropped)
                room.removed += 1
                room.removed_bytes += int(row_size)
                if fits():
                    break
        return room

    def _on_store_failure(self, err: sqlite3.OperationalError) -> None:
        """Disk full or I/O error: the message is lost; count it and keep running."""
        self.stats.dropped_disk_full += 1
        now = time.monotonic()
        if now - self._last_disk_full_log >= DISK_FULL_LOG_INTERVAL_S:
            self._last_disk_full_log = now
            log.error("outbox %s cannot store messages (%s); %d dropped so far - free space "
                      "in the state directory", self.path, err, self.stats.dropped_disk_full)

    # --- reading and acknowledging ------------------------------------------------------

    def fetch_after(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """The oldest ``limit`` messages with id > ``after_id``, oldest first."""
        rows = self._conn().execute(
            "SELECT id, pipeline, topic, qos, payload FROM messages WHERE id > ? "
            "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [OutboxMessage(int(r[0]), r[1], r[2], int(r[3]), bytes(r[4])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged messages; returns how many existed."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._write_lock:
            conn = self._conn()
            removed = removed_bytes = 0
            try:
                conn.execute("BEGIN IMMEDIATE")
                for start in range(0, len(id_list), DELETE_CHUNK):
                    chunk = id_list[start:start + DELETE_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for (row_size,) in conn.execute(
                            f"DELETE FROM messages WHERE id IN ({marks}) RETURNING size", chunk):
                        removed += 1
                        removed_bytes += int(row_size)
                conn.execute("COMMIT")
            except sqlite3.OperationalError as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.warning("outbox: could not delete acknowledged messages (%s); they will "
                            "be sent again", err)
                return 0
            self.stats.depth -= removed
            self.stats.bytes -= removed_bytes
        return removed

    def snapshot(self) -> dict[str, Any]:
        with self._write_lock:
            return {"depth": self.stats.depth, "bytes": self.stats.bytes,
                    "dropped": dict(self.stats.dropped),
                    "dropped_disk_full": self.stats.dropped_disk_full}

    def _close_all(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    def close(self) -> None:
        with self._write_lock:
            self._close_all()
