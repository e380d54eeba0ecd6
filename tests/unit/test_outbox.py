"""The outbox's accounting: every message that leaves without a broker acknowledgement is a
counted drop of its pipeline, and its seq is never reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.publishing.outbox import OUTBOX_FILE, Outbox, read_outbox


def enqueue(outbox: Outbox, pipeline: str, n: int, size: int = 10) -> list[int | None]:
    return [outbox.enqueue(pipeline, "t", 1, lambda seq: b"x" * size) for _ in range(n)]


def test_drop_oldest_spares_messages_in_flight(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_oldest")
    enqueue(outbox, "a", 10)
    in_flight = outbox.claim(0, 3)  # ids 1..3 were published, not yet acknowledged
    enqueue(outbox, "a", 2)
    assert [m.id for m in outbox.fetch_after(0, 100)] == [1, 2, 3, 6, 7, 8, 9, 10, 11, 12]
    assert outbox.stats.dropped == {"a": 2}
    outbox.delete(m.id for m in in_flight)
    assert outbox.stats.depth == 7


def test_drop_oldest_drops_the_new_message_when_only_messages_in_flight_are_left(
        tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_oldest")
    enqueue(outbox, "a", 10)
    outbox.claim(0, 10)
    assert enqueue(outbox, "b", 1) == [None]
    assert outbox.stats.dropped == {"b": 1} and outbox.stats.depth == 10
    outbox.release(range(1, 11))  # connection lost: they may be dropped again
    assert enqueue(outbox, "b", 1) == [1]
    assert outbox.stats.dropped == {"a": 1, "b": 1}


def test_rejected_messages_count_as_drops_of_their_pipeline_across_restarts(
        tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    enqueue(outbox, "a", 2)
    enqueue(outbox, "b", 1)
    claimed = outbox.claim(0, 10)
    assert outbox.reject([claimed[0].id, claimed[2].id]) == 2
    assert outbox.reject([claimed[0].id]) == 0  # already gone: not counted twice
    assert outbox.stats.dropped == {"a": 1, "b": 1} and outbox.stats.depth == 1
    outbox.close()
    assert Outbox(tmp_path).stats.dropped == {"a": 1, "b": 1}


def test_a_message_that_cannot_be_stored_is_a_counted_drop_with_a_seq_gap(
        tmp_path: Path) -> None:
    """Disk full, simulated with SQLite's max_page_count (the integration test uses a
    full tmpfs)."""
    outbox = Outbox(tmp_path)
    assert enqueue(outbox, "a", 1) == [0]
    connection = outbox._conn()
    (pages,) = connection.execute("PRAGMA page_count").fetchone()
    connection.execute(f"PRAGMA max_page_count = {pages}")
    assert enqueue(outbox, "a", 3, size=50_000) == [None, None, None]
    assert outbox.stats.dropped == {"a": 3} and outbox.stats.dropped_disk_full == 3
    connection.execute("PRAGMA max_page_count = 1073741823")
    assert enqueue(outbox, "b", 1) == [0]  # the next commit also saves a's counters
    outbox.close()
    reopened = Outbox(tmp_path)
    assert reopened.stats.dropped == {"a": 3, "b": 0}
    assert enqueue(reopened, "a", 1) == [4]  # seq 1..3 are the visible gap of 3 drops


def test_corrupt_store_is_set_aside_and_its_counters_carried_over(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_messages=2000)
    enqueue(outbox, "a", 1500, size=200)
    outbox.close()
    path = tmp_path / OUTBOX_FILE
    content = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 20, page * 40):  # message pages; the counters live in page 3
        content[offset] = 0x5A
    path.write_bytes(bytes(content))
    reopened = Outbox(tmp_path)
    assert reopened.stats.corrupt_files_set_aside == 1
    assert reopened.stats.depth == 0
    assert [p.name for p in tmp_path.glob(f"{OUTBOX_FILE}.corrupt-*")]
    assert enqueue(reopened, "a", 1) == [1500]  # seq not reused


def test_a_state_dir_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    first = Outbox(tmp_path)
    with pytest.raises(ConfigError, match="in use by another"):
        Outbox(tmp_path)
    first.close()
    Outbox(tmp_path).close()


def test_a_state_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="state_dir"):
        Outbox(blocker / "state")


def test_read_outbox_reports_what_waits_and_what_was_dropped(tmp_path: Path) -> None:
    assert read_outbox(tmp_path) is None
    outbox = Outbox(tmp_path, max_messages=10, drop_policy="drop_newest")
    enqueue(outbox, "a", 12)
    enqueue(outbox, "b", 1)
    report = read_outbox(tmp_path)  # while the outbox is open, as the CLI does
    assert report is not None
    assert report["depth"] == 10
    assert report["pipelines"] == {"a": {"next_seq": 12, "dropped": 2, "waiting": 10},
                                   "b": {"next_seq": 1, "dropped": 1, "waiting": 0}}
    outbox.close()

