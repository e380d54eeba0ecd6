"""The READY and WATCHDOG rules and the STATUS line, as pure functions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edge_runtime.service.rules import (
    PipelineView,
    fps_since,
    not_ready,
    pipeline_problem,
    pipeline_ready,
    stall_after_s,
    status_line,
    watchdog_problems,
)

NOW = 1000.0
PING_S = 1.0  # half of WATCHDOG_USEC
RETRY_LIMIT_S = 60.0

RUNNING = PipelineView(name="cam", state="running", live=True, source_online=True,
                       source_reason="open", results=10, last_progress_mono=NOW - 0.2,
                       last_retry_mono=None, fps_cap=None)


def problem(view: PipelineView) -> str | None:
    return pipeline_problem(view, NOW, PING_S, RETRY_LIMIT_S)


# --- READY ------------------------------------------------------------------------------


def test_ready_needs_a_first_prediction_from_an_online_source() -> None:
    assert not pipeline_ready(replace(RUNNING, results=0))
    assert pipeline_ready(replace(RUNNING, results=1))


def test_a_live_source_being_retried_is_waiting_legitimately() -> None:
    assert pipeline_ready(replace(RUNNING, results=0, source_online=False))


def test_an_offline_file_source_is_not_ready() -> None:
    # files are not retried: an offline non-live source cannot be "waiting"
    assert not pipeline_ready(replace(RUNNING, results=0, live=False, source_online=False))


@pytest.mark.parametrize("state", ["finished", "stopped", "failed"])
def test_an_ended_pipeline_does_not_hold_ready_back(state: str) -> None:
    assert pipeline_ready(replace(RUNNING, results=0, state=state))


def test_ready_waits_for_every_pipeline() -> None:
    views = [replace(RUNNING, name="a"), replace(RUNNING, name="b", results=0)]
    assert not_ready(views) == ["b"]
    assert not_ready(views[:1]) == []


# --- WATCHDOG ---------------------------------------------------------------------------


def test_progress_within_the_ping_interval_is_alive() -> None:
    assert problem(replace(RUNNING, last_progress_mono=NOW - 0.9)) is None


def test_no_inference_for_longer_than_the_ping_interval_is_a_stall() -> None:
    found = problem(replace(RUNNING, last_progress_mono=NOW - 1.5))
    assert found == "stalled (no inference for 1.5 s)"


def test_a_slow_capped_source_gets_three_frame_periods() -> None:
    assert stall_after_s(PING_S, 0.5) == 6.0  # 3 periods of 2 s
    assert stall_after_s(PING_S, 30.0) == PING_S  # fast sources: the ping interval
    assert stall_after_s(PING_S, None) == PING_S
    assert problem(replace(RUNNING, fps_cap=0.5, last_progress_mono=NOW - 5.0)) is None
    assert problem(replace(RUNNING, fps_cap=0.5, last_progress_mono=NOW - 7.0)) is not None


def test_a_source_down_and_retried_is_not_a_hang() -> None:
    offline = replace(RUNNING, source_online=False, last_progress_mono=NOW - 500,
                      last_retry_mono=NOW - 25)
    assert problem(offline) is None


def test_a_retry_loop_that_stopped_attempting_is_a_hang() -> None:
    offline = replace(RUNNING, source_online=False, last_progress_mono=NOW - 500,
                      last_retry_mono=NOW - 61)
    assert problem(offline) == "stuck reopening its source (61 s without an attempt)"


def test_an_offline_source_without_an_attempt_yet_counts_from_its_last_progress() -> None:
    offline = replace(RUNNING, source_online=False, last_retry_mono=None)
    assert problem(replace(offline, last_progress_mono=NOW - 10)) is None
    assert problem(replace(offline, last_progress_mono=NOW - 100)) is not None


def test_failed_pipelines_stop_the_pings_and_ended_ones_do_not() -> None:
    old = NOW - 10_000
    assert problem(replace(RUNNING, state="failed")) == "failed"
    assert problem(replace(RUNNING, state="finished", last_progress_mono=old)) is None
    assert problem(replace(RUNNING, state="stopped", last_progress_mono=old)) is None


def test_watchdog_problems_name_each_pipeline_and_a_dead_link() -> None:
    stalled = replace(RUNNING, name="b", last_progress_mono=NOW - 5)
    found = watchdog_problems([RUNNING, stalled], NOW, PING_S, RETRY_LIMIT_S, link_alive=False)
    assert set(found) == {"b", "mqtt"}
    assert watchdog_problems([RUNNING], NOW, PING_S, RETRY_LIMIT_S, link_alive=True) == {}


# --- STATUS -----------------------------------------------------------------------------


def test_fps_since_counts_results_over_time() -> None:
    assert fps_since((100, 10.0), 150, 15.0) == 10.0
    assert fps_since(None, 150, 15.0) is None
    assert fps_since((100, 15.0), 150, 15.0) is None  # no time passed
    assert fps_since((100, 10.0), 5, 15.0) is None  # counter restarted (reload)


def test_status_line_reads_like_a_sentence() -> None:
    offline = replace(RUNNING, name="door", source_online=False,
                      source_reason="camera 2 cannot be opened")
    waiting = replace(RUNNING, name="belt", results=0)
    line = status_line([RUNNING, offline, waiting], {"cam": 29.96}, {}, "connected", "", 3)
    assert line == ("cam 30.0 fps, door source offline (camera 2 cannot be opened), retrying, "
                    "belt waiting for its first prediction; mqtt connected; outbox 3 queued")


def test_status_line_shows_problems_and_why_the_broker_is_not_connected() -> None:
    long_reason = "no broker listening on localhost:1883 (connection refused) " * 3
    line = status_line([RUNNING], {"cam": None}, {"cam": "stalled (no inference for 3.0 s)"},
                       "disconnected", long_reason, 1200)
    assert line.startswith("cam stalled (no inference for 3.0 s); mqtt disconnected (no broker")
    assert line.endswith("…); outbox 1200 queued")
    assert len(line) < 160
