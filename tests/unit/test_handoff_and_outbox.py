"""The latest-frame-wins slot, backoff, and the outbox's bounds and persistence."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from edge_runtime.backoff import Backoff
from edge_runtime.handoff import FrameSlot, HandoffClosed
from edge_runtime.publishing.outbox import Outbox


def test_latest_frame_wins_and_counts_drops() -> None:
    slot: FrameSlot[int] = FrameSlot(drop_stale=True)
    for i in range(5):
        slot.put(i)
        assert len(slot) == 1  # never grows
    assert slot.take(0) == 4
    assert slot.dropped == 4
    assert slot.take(0) is None


def test_blocking_slot_loses_nothing() -> None:
    slot: FrameSlot[int] = FrameSlot(drop_stale=False)
    received: list[int] = []

    def consume() -> None:
        try:
            while True:
                item = slot.take(1.0)
                if item is not None:
                    received.append(item)
        except HandoffClosed:
            pass

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(200):
        slot.put(i)
    slot.close()
    consumer.join(5)
    assert received == list(range(200))
    assert slot.dropped == 0


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert backoff.ceiling() == 4.0
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.ceiling() == 0.5


def enqueue(outbox: Outbox, pipeline: str, n: int, size: int = 10) -> list[int | None]:
    return [outbox.enqueue(pipeline, "t", 1, lambda seq: b"x" * size) for _ in range(n)]


def test_seq_continues_after_reopen(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    assert enqueue(outbox, "a", 3) == [0, 1, 2]
    assert enqueue(outbox, "b", 1) == [0]
    outbox.close()
    reopened = Outbox(tmp_path)
    assert enqueue(reopened, "a", 1) == [3]
    assert reopened.stats.depth == 5
    assert [m.pipeline for m in reopened.fetch_after(0, 10)] == ["a", "a", "a", "b", "a"]


def test_drop_oldest_keeps_the_newest_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_oldest")
    enqueue(outbox, "a", 15)
    assert outbox.stats.depth == 10
    assert outbox.stats.dropped == {"a": 5}
    payload_ids = [m.id for m in outbox.fetch_after(0, 100)]
    assert payload_ids == list(range(6, 16))


def test_drop_newest_refuses_new_messages_but_consumes_their_seq(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_newest")
    seqs = enqueue(outbox, "a", 12)
    assert seqs[:10] == list(range(10)) and seqs[10:] == [None, None]
    assert outbox.stats.dropped == {"a": 2}
    assert enqueue(outbox, "a", 1) == [None]
    outbox.delete([m.id for m in outbox.fetch_after(0, 1)])
    assert enqueue(outbox, "a", 1) == [13]  # seq 10..12 were dropped: a visible gap of 3


def test_byte_bound_applies(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_bytes=64 * 1024, drop_policy="drop_oldest")
    enqueue(outbox, "a", 20, size=8 * 1024)
    assert outbox.stats.bytes <= 64 * 1024
    assert outbox.stats.depth + outbox.stats.dropped["a"] == 20


def test_drop_counter_survives_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_newest")
    enqueue(outbox, "a", 13)
    outbox.close()
    assert Outbox(tmp_path, max_messages=10).stats.dropped == {"a": 3}


def test_delete_acknowledged_messages(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    enqueue(outbox, "a", 5)
    ids = [m.id for m in outbox.fetch_after(0, 2)]
    assert outbox.delete(ids) == 2
    assert outbox.delete(ids) == 0
    assert outbox.stats.depth == 3
    assert [m.id for m in outbox.fetch_after(0, 10)] == [3, 4, 5]


def test_corrupt_outbox_is_set_aside_not_deleted(tmp_path: Path) -> None:
    (tmp_path / "outbox.db").write_bytes(b"this is not a database" * 100)
    outbox = Outbox(tmp_path)
    assert outbox.stats.corrupt_files_set_aside == 1
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert aside and aside[0].read_bytes().startswith(b"this is not a database")
    assert enqueue(outbox, "a", 1) == [0]

