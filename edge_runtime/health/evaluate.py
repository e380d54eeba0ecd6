"""Health evaluation: a daemon snapshot -> healthy | degraded | unhealthy, with reasons.

Pure: the snapshot is plain frozen values (built by :mod:`edge_runtime.health.monitor`), so
every rule is tested without threads, a broker or a model. The rules are documented in
docs/health.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from edge_runtime.config.schema import HealthConfig
    from edge_runtime.timing import LatencyHistogram

HealthState = Literal["healthy", "degraded", "unhealthy"]
SEVERITY: dict[HealthState, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
HTTP_OK = 200
HTTP_UNAVAILABLE = 503
BODY_SCHEMA = 1  # version of the /healthz and stats JSON

DROP_RECENT_S = 300.0  # outbox drops seen this recently keep the daemon degraded
OUTBOX_FULL_RATIO = 0.9  # outbox this full (messages or bytes) is degraded: drops are near
STALL_FRAME_PERIODS = 3.0  # a source capped at a slow fps may be silent this many periods


@dataclass(frozen=True)
class SourceSnapshot:
    description: str
    online: bool
    reason: str
    state_for_s: float  # time in the current online/offline state (monotonic clock)
    fps_limit: float | None  # the configured cap, if any


@dataclass(frozen=True)
class PipelineSnapshot:
    name: str
    state: str  # starting | running | finished | failed | stopped (pipeline.PipelineState)
    error: str | None
    source: SourceSnapshot
    captured: int
    inferred: int
    results: int
    dropped_frames: int
    decode_errors: int
    source_errors: int
    fps: float  # predictions per second, recent
    last_result_age_s: float | None  # None: no prediction yet
    running_s: float  # since the pipeline's threads started
    model_name: str
    model_sha256: str
    backend: str
    accelerator: str
    threads: int
    latency_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # p50/p95/p99
    latency_histograms: Mapping[str, LatencyHistogram] = field(default_factory=dict)
    # why the pipeline runs on the CPU instead of its configured accelerator; None: it does not
    accelerator_fallback: str | None = None


@dataclass(frozen=True)
class BrokerSnapshot:
    state: str  # connecting | connected | disconnected | refused | stopped
    reason: str
    state_for_s: float
    connects: int
    disconnects: int
    sent: int
    acked: int
    rejected: int
    inflight: int

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


@dataclass(frozen=True)
class OutboxSnapshot:
    depth: int
    bytes: int
    max_messages: int
    max_bytes: int
    # per pipeline, persistent across restarts: every message that left the outbox without
    # a broker acknowledgement (bound, disk full, refused by the broker)
    dropped: Mapping[str, int]
    dropped_disk_full: int  # this run, could not be stored (already counted in ``dropped``)
    last_drop_age_s: float | None  # since a drop was last seen in this run; None: none

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class DaemonSnapshot:
    device: str
    version: str
    pid: int
    ts: float  # wall clock, Unix seconds
    uptime_s: float
    pipelines: tuple[PipelineSnapshot, ...]
    broker: BrokerSnapshot
    outbox: OutboxSnapshot


@dataclass(frozen=True)
class HealthRules:
    stall_after_s: float = 30.0
    source_offline_grace_s: float = 60.0
    drop_recent_s: float = DROP_RECENT_S
    outbox_full_ratio: float = OUTBOX_FULL_RATIO

    @classmethod
    def from_config(cls, config: HealthConfig) -> HealthRules:
        return cls(stall_after_s=config.stall_after_s,
                   source_offline_grace_s=config.source_offline_grace_s)

    def stall_limit_s(self, source: SourceSnapshot) -> float:
        """How long an online source may go without a prediction."""
        if source.fps_limit:
            return max(self.stall_after_s, STALL_FRAME_PERIODS / source.fps_limit)
        return self.stall_after_s


@dataclass(frozen=True)
class PipelineHealth:
    name: str
    state: HealthState
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthReport:
    overall: HealthState
    reasons: tuple[str, ...]  # every problem, pipeline ones prefixed with the pipeline name
    pipelines: tuple[PipelineHealth, ...]

    @property
    def http_status(self) -> int:
        """200 while predictions still flow (healthy, degraded); 503 when they do not."""
        return HTTP_UNAVAILABLE if self.overall == "unhealthy" else HTTP_OK


def worst(states: list[HealthState]) -> HealthState:
    return max(states, key=SEVERITY.__getitem__, default="healthy")


def evaluate_pipeline(pipeline: PipelineSnapshot, rules: HealthRules) -> PipelineHealth:
    """The rules for one pipeline (docs/health.md, "Pipeline rules")."""
    verdict = _pipeline_rules(pipeline, rules)
    if pipeline.accelerator_fallback is not None and pipeline.state == "running":
        return PipelineHealth(verdict.name, worst([verdict.state, "degraded"]), (
            *verdict.reasons, f"running on the CPU: {pipeline.accelerator_fallback}"))
    return verdict


def _pipeline_rules(pipeline: PipelineSnapshot, rules: HealthRules) -> PipelineHealth:
    name, source = pipeline.name, pipeline.source
    if pipeline.state == "failed":
        return PipelineHealth(name, "unhealthy", (f"failed: {pipeline.error or 'unknown error'}",))
    if pipeline.state == "finished":
        return PipelineHealth(name, "healthy")  # a finite source ended as configured
    if pipeline.state != "running":
        return PipelineHealth(name, "degraded", (f"pipeline {pipeline.state}",))
    if not source.online:
        offline = f"source offline for {source.state_for_s:.0f} s: {source.reason}"
        if source.state_for_s >= rules.source_offline_grace_s:
            return PipelineHealth(name, "unhealthy", (offline,))
        return PipelineHealth(name, "degraded", (offline,))
    # Online: time since the last prediction, the pipeline start, or the source coming back
    # online, whichever is latest.
    since_result = (pipeline.last_result_age_s if pipeline.last_result_age_s is not None
                    else pipeline.running_s)
    idle = min(since_result, pipeline.running_s, source.state_for_s)
    limit = rules.stall_limit_s(source)
    if idle > limit:
        what = ("no prediction since start" if pipeline.last_result_age_s is None
                else "no prediction")
        return PipelineHealth(name, "unhealthy", (
            f"{what} for {idle:.0f} s while the source is online (limit {limit:g} s)",))
    return PipelineHealth(name, "healthy")


def evaluate(snapshot: DaemonSnapshot, rules: HealthRules) -> HealthReport:
    """Overall health: the worst of every pipeline and of the broker and outbox rules."""
    pipelines = tuple(evaluate_pipeline(p, rules) for p in snapshot.pipelines)
    states = [p.state for p in pipelines]
    reasons = [f"{p.name}: {r}" for p in pipelines for r in p.reasons]
    broker, outbox = snapshot.broker, snapshot.outbox
    if not broker.connected:
        states.append("degraded")
        reasons.append(f"broker {broker.state}" + (f": {broker.reason}" if broker.reason else ""))
    if outbox.last_drop_age_s is not None and outbox.last_drop_age_s < rules.drop_recent_s:
        states.append("degraded")
        reasons.append(f"outbox dropped messages {outbox.last_drop_age_s:.0f} s ago "
                       f"({outbox.dropped_total} in total)")
    fill = max(outbox.depth / outbox.max_messages, outbox.bytes / outbox.max_bytes)
    if fill >= rules.outbox_full_ratio:
        states.append("degraded")
        reasons.append(f"outbox {fill:.0%} full ({outbox.depth} messages)")
    return HealthReport(worst(states), tuple(reasons), pipelines)


def health_body(snapshot: DaemonSnapshot, report: HealthReport) -> dict[str, Any]:
    """The JSON summary served on /healthz and published on the stats topic."""
    verdicts = {p.name: p for p in report.pipelines}
    broker, outbox = snapshot.broker, snapshot.outbox
    return {
        "schema": BODY_SCHEMA,
        "overall": report.overall,
        "reasons": list(report.reasons),
        "device": snapshot.device,
        "version": snapshot.version,
        "pid": snapshot.pid,
        "ts": round(snapshot.ts, 3),
        "uptime_s": round(snapshot.uptime_s, 1),
        "pipelines": {p.name: _pipeline_body(p, verdicts[p.name]) for p in snapshot.pipelines},
        "broker": {
            "connected": broker.connected, "state": broker.state, "reason": broker.reason,
            "for_s": round(broker.state_for_s, 1), "reconnects": broker.reconnects,
            "sent": broker.sent, "acked": broker.acked, "rejected": broker.rejected,
            "inflight": broker.inflight,
        },
        "outbox": {
            "depth": outbox.depth, "bytes": outbox.bytes, "dropped": outbox.dropped_total,
            "dropped_by_pipeline": dict(outbox.dropped),
            "dropped_disk_full": outbox.dropped_disk_full,
            "last_drop_age_s": _round(outbox.last_drop_age_s),
        },
    }


def _pipeline_body(p: PipelineSnapshot, verdict: PipelineHealth) -> dict[str, Any]:
    return {
        "state": verdict.state,
        "reasons": list(verdict.reasons),
        "pipeline_state": p.state,
        "fps": round(p.fps, 2),
        "last_prediction_age_s": _round(p.last_result_age_s),
        "captured": p.captured, "inferred": p.inferred, "predictions": p.results,
        "dropped_frames": p.dropped_frames, "decode_errors": p.decode_errors,
        "source": {"description": p.source.description, "online": p.source.online,
                   "reason": p.source.reason, "for_s": round(p.source.state_for_s, 1),
                   "errors": p.source_errors},
        "model": {"name": p.model_name, "sha256": p.model_sha256},
        "backend": p.backend,
        "accelerator": p.accelerator,
        "accelerator_fallback": p.accelerator_fallback,
        "threads": p.threads,
        "latency_ms": {stage: dict(summary) for stage, summary in p.latency_ms.items()},
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def one_line(body: Mapping[str, Any]) -> str:
    """A /healthz body as the one line ``edge-runtime health`` prints."""
    overall = str(body.get("overall", "unknown"))
    reasons = [str(r) for r in body.get("reasons", [])]
    if reasons:
        return f"{overall}: " + "; ".join(reasons)
    parts = []
    for name, p in dict(body.get("pipelines", {})).items():
        age = p.get("last_prediction_age_s")
        last = f", last {age:.1f} s ago" if isinstance(age, int | float) else ""
        parts.append(f"{name} {p.get('fps', 0):.1f} fps{last}")
    broker = body.get("broker", {})
    parts.append("broker connected" if broker.get("connected") else "broker not connected")
    parts.append(f"outbox {body.get('outbox', {}).get('depth', 0)}")
    return f"{overall}: " + ", ".join(parts)
