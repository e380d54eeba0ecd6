"""The pure health rules (docs/health.md): each rule, their combination, the JSON body."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.health.evaluate import (
    BrokerSnapshot,
    DaemonSnapshot,
    HealthRules,
    OutboxSnapshot,
    PipelineSnapshot,
    SourceSnapshot,
    evaluate,
    health_body,
    one_line,
)

RULES = HealthRules(stall_after_s=30.0, source_offline_grace_s=60.0, drop_recent_s=300.0,
                    outbox_full_ratio=0.9)


def source(**changes: Any) -> SourceSnapshot:
    base = SourceSnapshot(description="camera 0", online=True, reason="open",
                          state_for_s=1000.0, fps_limit=None)
    return dataclasses.replace(base, **changes)


def pipeline(name: str = "cam", **changes: Any) -> PipelineSnapshot:
    base = PipelineSnapshot(
        name=name, state="running", error=None, source=source(), captured=100, inferred=90,
        results=90, dropped_frames=10, decode_errors=0, source_errors=0, fps=9.5,
        last_result_age_s=0.1, running_s=1000.0, model_name="digits", model_sha256="ab" * 32,
        backend="litert 2.3.0", accelerator="cpu/xnnpack", threads=1)
    return dataclasses.replace(base, **changes)


def broker(**changes: Any) -> BrokerSnapshot:
    base = BrokerSnapshot(state="connected", reason="localhost:1883", state_for_s=1000.0,
                          connects=3, disconnects=2, sent=90, acked=90, rejected=0, inflight=0)
    return dataclasses.replace(base, **changes)


def outbox(**changes: Any) -> OutboxSnapshot:
    base = OutboxSnapshot(depth=0, bytes=0, max_messages=1000, max_bytes=10**6,
                          dropped={}, dropped_disk_full=0, last_drop_age_s=None)
    return dataclasses.replace(base, **changes)


def daemon(*pipelines: PipelineSnapshot, **changes: Any) -> DaemonSnapshot:
    base = DaemonSnapshot(device="pi-1", version="0.1.0", pid=42, ts=1.7e9, uptime_s=1000.0,
                          pipelines=pipelines or (pipeline(),), broker=broker(),
                          outbox=outbox())
    return dataclasses.replace(base, **changes)


def test_everything_flowing_is_healthy_and_http_200() -> None:
    report = evaluate(daemon(), RULES)
    assert (report.overall, report.reasons, report.http_status) == ("healthy", (), 200)
    assert [(p.name, p.state) for p in report.pipelines] == [("cam", "healthy")]


@pytest.mark.parametrize("state", ["disconnected", "connecting", "refused"])
def test_broker_not_connected_is_degraded_but_still_200(state: str) -> None:
    snapshot = daemon(broker=broker(state=state, reason="connection refused"))
    report = evaluate(snapshot, RULES)
    assert report.overall == "degraded" and report.http_status == 200
    assert report.reasons == (f"broker {state}: connection refused",)
    assert report.pipelines[0].state == "healthy"  # predictions still go to the outbox


def test_source_offline_is_degraded_then_unhealthy_after_the_grace_period() -> None:
    offline = source(online=False, reason="camera 0 stopped delivering frames", state_for_s=59)
    early = evaluate(daemon(pipeline(source=offline)), RULES)
    assert early.overall == "degraded"
    assert early.reasons == ("cam: source offline for 59 s: camera 0 stopped delivering frames",)
    late = evaluate(daemon(pipeline(source=dataclasses.replace(offline, state_for_s=60))), RULES)
    assert late.overall == "unhealthy" and late.http_status == 503


def test_no_prediction_while_source_online_is_unhealthy() -> None:
    assert evaluate(daemon(pipeline(last_result_age_s=29.0)), RULES).overall == "healthy"
    report = evaluate(daemon(pipeline(last_result_age_s=31.0)), RULES)
    assert report.overall == "unhealthy"
    assert report.reasons == ("cam: no prediction for 31 s while the source is online "
                              "(limit 30 s)",)


def test_no_prediction_since_start_counts_from_the_start() -> None:
    starting = pipeline(last_result_age_s=None, running_s=5.0, results=0)
    assert evaluate(daemon(starting), RULES).overall == "healthy"
    stuck = dataclasses.replace(starting, running_s=45.0)
    assert evaluate(daemon(stuck), RULES).reasons == (
        "cam: no prediction since start for 45 s while the source is online (limit 30 s)",)


def test_source_back_online_gets_a_fresh_stall_period() -> None:
    back = pipeline(last_result_age_s=500.0, source=source(state_for_s=2.0))
    assert evaluate(daemon(back), RULES).overall == "healthy"


def test_slow_source_may_be_silent_three_frame_periods() -> None:
    slow = source(fps_limit=0.05)  # one frame every 20 s: limit max(30, 3 * 20) = 60 s
    assert evaluate(daemon(pipeline(source=slow, last_result_age_s=59.0)), RULES).overall \
        == "healthy"
    report = evaluate(daemon(pipeline(source=slow, last_result_age_s=61.0)), RULES)
    assert report.overall == "unhealthy" and "(limit 60 s)" in report.reasons[0]


def test_failed_pipeline_is_unhealthy_with_its_error() -> None:
    report = evaluate(daemon(pipeline(state="failed", error="invoke failed")), RULES)
    assert report.overall == "unhealthy"
    assert report.reasons == ("cam: failed: invoke failed",)


def test_finished_finite_source_is_healthy() -> None:
    report = evaluate(daemon(pipeline(state="finished", last_result_age_s=900.0)), RULES)
    assert report.overall == "healthy"


def test_recent_outbox_drops_degrade_old_ones_do_not() -> None:
    recent = outbox(dropped={"cam": 8}, dropped_disk_full=1, last_drop_age_s=12.0)
    report = evaluate(daemon(outbox=recent), RULES)
    assert report.overall == "degraded"
    assert report.reasons == ("outbox dropped messages 12 s ago (8 in total)",)
    old = dataclasses.replace(recent, last_drop_age_s=301.0)
    assert evaluate(daemon(outbox=old), RULES).overall == "healthy"


@pytest.mark.parametrize(("depth", "size", "expected"), [
    (899, 0, "healthy"), (900, 0, "degraded"), (10, 900_000, "degraded")])
def test_nearly_full_outbox_is_degraded(depth: int, size: int, expected: str) -> None:
    report = evaluate(daemon(outbox=outbox(depth=depth, bytes=size)), RULES)
    assert report.overall == expected


def test_worst_state_wins_and_every_reason_is_listed() -> None:
    snapshot = daemon(pipeline("a"), pipeline("b", state="failed", error="boom"),
                      broker=broker(state="disconnected", reason=""))
    report = evaluate(snapshot, RULES)
    assert report.overall == "unhealthy"
    assert report.reasons == ("b: failed: boom", "broker disconnected")
    assert [p.state for p in report.pipelines] == ["healthy", "unhealthy"]


def test_rules_come_from_the_config_section() -> None:
    from edge_runtime.config.schema import HealthConfig

    rules = HealthRules.from_config(HealthConfig(stall_after_s=5, source_offline_grace_s=7))
    assert (rules.stall_after_s, rules.source_offline_grace_s) == (5, 7)


SOURCES = st.builds(SourceSnapshot, description=st.just("s"), online=st.booleans(),
                    reason=st.just("r"), state_for_s=st.floats(0, 1e4),
                    fps_limit=st.none() | st.floats(0.01, 100))
PIPELINES = st.builds(
    PipelineSnapshot, name=st.sampled_from(["a", "b", "c"]),
    state=st.sampled_from(["starting", "running", "finished", "failed", "stopped"]),
    error=st.none(), source=SOURCES, captured=st.just(0), inferred=st.just(0),
    results=st.just(0), dropped_frames=st.just(0), decode_errors=st.just(0),
    source_errors=st.just(0), fps=st.just(0.0), last_result_age_s=st.none() | st.floats(0, 1e4),
    running_s=st.floats(0, 1e4), model_name=st.just("m"), model_sha256=st.just("0" * 64),
    backend=st.just("litert"), accelerator=st.just("cpu"), threads=st.just(1))
BROKER_STATES = st.sampled_from(["connecting", "connected", "disconnected", "refused"])


@given(pipelines=st.lists(PIPELINES, min_size=1, max_size=3, unique_by=lambda p: p.name),
       broker_state=BROKER_STATES, drop_age=st.none() | st.floats(0, 1e4),
       depth=st.integers(0, 1000))
def test_health_is_healthy_exactly_when_nothing_is_wrong(
        pipelines: list[PipelineSnapshot], broker_state: str, drop_age: float | None,
        depth: int) -> None:
    snapshot = daemon(*pipelines, broker=broker(state=broker_state),
                      outbox=outbox(depth=depth, last_drop_age_s=drop_age))
    report = evaluate(snapshot, RULES)
    assert (report.overall == "healthy") == (report.reasons == ())
    assert (report.http_status == 503) == any(p.state == "unhealthy" for p in report.pipelines)
    # losing the broker never makes things look better
    worse = evaluate(dataclasses.replace(snapshot, broker=broker(state="disconnected")), RULES)
    order = ["healthy", "degraded", "unhealthy"]
    assert order.index(worse.overall) >= max(order.index(report.overall), 1)


def test_body_carries_the_numbers_of_the_snapshot() -> None:
    snapshot = daemon(pipeline(captured=120, dropped_frames=20, results=99, fps=9.75,
                               last_result_age_s=0.25),
                      broker=broker(state="disconnected", reason="lost", connects=4),
                      outbox=outbox(depth=17, bytes=4096, dropped={"cam": 3}))
    body = health_body(snapshot, evaluate(snapshot, RULES))
    assert body["overall"] == "degraded"
    cam = body["pipelines"]["cam"]
    assert (cam["state"], cam["pipeline_state"], cam["fps"]) == ("healthy", "running", 9.75)
    assert (cam["captured"], cam["dropped_frames"], cam["predictions"]) == (120, 20, 99)
    assert cam["last_prediction_age_s"] == 0.25
    assert cam["model"] == {"name": "digits", "sha256": "ab" * 32}
    assert (cam["backend"], cam["accelerator"]) == ("litert 2.3.0", "cpu/xnnpack")
    assert body["broker"]["connected"] is False and body["broker"]["reconnects"] == 3
    assert body["outbox"] == {"depth": 17, "bytes": 4096, "dropped": 3,
                              "dropped_by_pipeline": {"cam": 3}, "dropped_disk_full": 0,
                              "last_drop_age_s": None}


def test_one_line_names_the_problems_or_the_flow() -> None:
    snapshot = daemon(broker=broker(state="disconnected", reason="connection refused"))
    assert one_line(health_body(snapshot, evaluate(snapshot, RULES))) == \
        "degraded: broker disconnected: connection refused"
    healthy = daemon(outbox=outbox(depth=2))
    assert one_line(health_body(healthy, evaluate(healthy, RULES))) == \
        "healthy: cam 9.5 fps, last 0.1 s ago, broker connected, outbox 2"


FALLBACK = "pipeline 'cam': the Edge TPU runtime is not installed: libedgetpu.so.1: not found"


def test_pipeline_on_its_cpu_fallback_is_degraded() -> None:
    snapshot = daemon(pipeline(accelerator="cpu/xnnpack", accelerator_fallback=FALLBACK))
    report = evaluate(snapshot, RULES)
    assert report.overall == "degraded" and report.http_status == 200
    assert report.reasons == (f"cam: running on the CPU: {FALLBACK}",)
    body = health_body(snapshot, report)["pipelines"]["cam"]
    assert body["state"] == "degraded" and body["accelerator_fallback"] == FALLBACK


def test_cpu_fallback_does_not_hide_a_worse_problem() -> None:
    stalled = pipeline(last_result_age_s=120.0, accelerator_fallback=FALLBACK)
    report = evaluate(daemon(stalled), RULES)
    assert report.overall == "unhealthy"
    assert len(report.reasons) == 2 and report.reasons[1].startswith("cam: running on the CPU")
    finished = pipeline(state="finished", accelerator_fallback=FALLBACK)
    assert evaluate(daemon(finished), RULES).overall == "healthy"
