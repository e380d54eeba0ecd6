"""Builds a :class:`DaemonSnapshot` from the running daemon (the I/O side of health).

Reads the pipelines, the broker link and the outbox; keeps the little history the pure rules
need but a single reading cannot give: recent predictions per second and when the outbox
last dropped a message. Durations are measured on the monotonic clock.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Protocol

from edge_runtime import __version__
from edge_runtime.config.schema import Config
from edge_runtime.health.evaluate import (
    BrokerSnapshot,
    DaemonSnapshot,
    HealthReport,
    HealthRules,
    OutboxSnapshot,
    PipelineSnapshot,
    SourceSnapshot,
    evaluate,
)
from edge_runtime.pipeline import STAGES, Pipeline
from edge_runtime.publishing.mqtt import MqttLink
from edge_runtime.publishing.outbox import Outbox
from edge_runtime.runners.accelerators import CPU_LABEL
from edge_runtime.runners.interpreter import RunnerInfo

FPS_WINDOW_S = 10.0  # predictions per second are averaged over this long
MIN_RATE_SPAN_S = 0.5  # a rate over a shorter span is noise: reported as 0


class Observed(Protocol):
    """What health reads from the daemon (``supervisor.Daemon`` provides it)."""

    config: Config
    pipelines: list[Pipeline]
    link: MqttLink
    outbox: Outbox


def accelerator_of(info: RunnerInfo) -> str:
    """Where inference runs, for humans and as a metric label (the delegate's label, e.g.
    ``edgetpu (usb)``, while an accelerator runs it)."""
    if info.accelerator != CPU_LABEL:
        return info.accelerator
    return "cpu/xnnpack" if info.xnnpack else "cpu"


class HealthMonitor:
    """Thread-safe: ``sample`` runs on the health thread, ``snapshot`` on HTTP threads."""

    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon
        self._started_mono = time.monotonic()
        self._history: dict[str, collections.deque[tuple[float, int]]] = {}
        self._drops_seen: int | None = None
        self._last_drop_mono: float | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Record prediction counts and outbox drops (call about once a second)."""
        now = time.monotonic()
        outbox = self.daemon.outbox.snapshot()
        with self._lock:
            self._note_drops(now, outbox["dropped"], outbox["dropped_disk_full"])
            for pipeline in self.daemon.pipelines:
                history = self._history.setdefault(pipeline.name, collections.deque())
                results = pipeline.stats.results
                if history and history[-1][1] > results:  # a new pipeline after a reload
                    history.clear()
                history.append((now, results))
                while now - history[0][0] > FPS_WINDOW_S:
                    history.popleft()

    def snapshot(self) -> DaemonSnapshot:
        daemon = self.daemon
        now, wall = time.monotonic(), time.time()
        outbox = daemon.outbox.snapshot()
        link = daemon.link.snapshot()
        with self._lock:
            self._note_drops(now, outbox["dropped"], outbox["dropped_disk_full"])
            last_drop = self._last_drop_mono
            pipelines = tuple(self._pipeline(p, now) for p in daemon.pipelines)
        return DaemonSnapshot(
            device=daemon.config.device_id, version=__version__, pid=os.getpid(), ts=wall,
            uptime_s=now - self._started_mono, pipelines=pipelines,
            broker=BrokerSnapshot(
                state=link["state"], reason=link["reason"],
                state_for_s=max(0.0, wall - link["since"]), connects=link["connects"],
                disconnects=link["disconnects"], sent=link["sent"], acked=link["acked"],
                rejected=link["rejected"], inflight=link["inflight"]),
            outbox=OutboxSnapshot(
                depth=outbox["depth"], bytes=outbox["bytes"],
                max_messages=daemon.outbox.max_messages, max_bytes=daemon.outbox.max_bytes,
                dropped=outbox["dropped"], dropped_disk_full=outbox["dropped_disk_full"],
                last_drop_age_s=None if last_drop is None else now - last_drop))

    def report(self) -> tuple[DaemonSnapshot, HealthReport]:
        snapshot = self.snapshot()
        return snapshot, evaluate(snapshot, HealthRules.from_config(self.daemon.config.health))

    def _note_drops(self, now: float, dropped: dict[str, int], disk_full: int) -> None:
        total = sum(dropped.values()) + disk_full
        if self._drops_seen is not None and total > self._drops_seen:
            self._last_drop_mono = now
        self._drops_seen = total  # the first reading is the baseline: older drops are history

    def _pipeline(self, pipeline: Pipeline, now: float) -> PipelineSnapshot:
        snap = pipeline.snapshot()
        stats = pipeline.stats
        started = pipeline.started_mono
        last = stats.last_result_mono
        runner = pipeline.stages.runner
        info = runner.info
        accelerator = runner.accelerator_status()
        return PipelineSnapshot(
            name=pipeline.name, state=pipeline.state,
            error=None if pipeline.error is None else str(pipeline.error),
            source=SourceSnapshot(
                description=pipeline.source.description, online=pipeline.source_online,
                reason=pipeline.source_reason, state_for_s=now - pipeline.source_since_mono,
                fps_limit=pipeline.config.fps_limit()),
            captured=snap["captured"], inferred=snap["inferred"], results=snap["results"],
            dropped_frames=snap["dropped_frames"], decode_errors=snap["decode_errors"],
            source_errors=snap["source_errors"], fps=self._fps(pipeline, now),
            last_result_age_s=None if last is None else now - last,
            running_s=0.0 if started is None else now - started,
            model_name=pipeline.stages.model.name, model_sha256=pipeline.stages.model.sha256,
            backend=info.backend, accelerator=accelerator_of(info), threads=info.threads,
            latency_ms=snap["latency_ms"],
            latency_histograms={stage: stats.windows[stage].histogram() for stage in STAGES},
            accelerator_fallback=accelerator.reason if accelerator.degraded else None)

    def _fps(self, pipeline: Pipeline, now: float) -> float:
        """Predictions per second over the last FPS_WINDOW_S (since start, early on)."""
        results = pipeline.stats.results
        history = self._history.get(pipeline.name)
        if history and history[0][1] <= results and now - history[0][0] >= MIN_RATE_SPAN_S:
            since, base = history[0]
        elif pipeline.started_mono is not None:
            since, base = pipeline.started_mono, 0
        else:
            return 0.0
        span = now - since
        return (results - base) / span if span >= MIN_RATE_SPAN_S else 0.0
