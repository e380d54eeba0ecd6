"""Prometheus metrics (``/metrics``): read from a health snapshot at scrape time.

A custom collector instead of prometheus-client's Counter/Histogram objects: the pipeline
threads keep counting with plain integers and the latency windows they already have, so a
frame pays nothing for metrics; a scrape reads everything once. Every name starts with
``edge_runtime_``; the list is in docs/health.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from edge_runtime.health.evaluate import SEVERITY, DaemonSnapshot, HealthReport
from edge_runtime.health.monitor import HealthMonitor
from edge_runtime.timing import LatencyHistogram

PREFIX = "edge_runtime"
MS_PER_S = 1000.0

# (metric suffix, PipelineSnapshot attribute, help) for the per-pipeline counters
PIPELINE_COUNTERS = (
    ("frames_captured", "captured", "Frames read from the source."),
    ("frames_dropped", "dropped_frames", "Frames replaced by a newer one before inference "
     "(live sources, latest frame wins)."),
    ("frames_inferred", "inferred", "Frames run through the interpreter."),
    ("predictions", "results", "Predictions handed to the outbox."),
    ("decode_errors", "decode_errors", "Frames that could not be decoded."),
    ("source_errors", "source_errors", "Failed reads of a live source (each is followed by "
     "a reopen)."),
)
BROKER_COUNTERS = (
    ("broker_messages_sent", "sent", "Outbox messages published to the broker."),
    ("broker_messages_acked", "acked", "Publishes acknowledged by the broker."),
    ("broker_messages_rejected", "rejected", "Publishes the broker refused (deleted, logged)."),
    ("broker_reconnects", "reconnects", "Connections made after the first one."),
)


def metric_families(snapshot: DaemonSnapshot, report: HealthReport) -> list[Metric]:
    """Every edge_runtime_* metric for one snapshot. Pure."""
    out: list[Metric] = []
    info = InfoMetricFamily(PREFIX, "The daemon's version and device.", labels=[])
    info.add_metric([], {"version": snapshot.version, "device": snapshot.device})
    out.append(info)
    out.append(_state_gauge("health_status", "1 for the overall health state, 0 for the "
                            "others.", [], [([], report.overall)]))
    out.append(GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the daemon "
                                 "started.", value=snapshot.uptime_s))
    out += _pipeline_metrics(snapshot, report)
    broker = snapshot.broker
    out.append(GaugeMetricFamily(f"{PREFIX}_broker_connected", "1 while connected to the "
                                 "broker.", value=float(broker.connected)))
    out.append(GaugeMetricFamily(f"{PREFIX}_broker_inflight_messages", "Publishes sent and "
                                 "not yet acknowledged.", value=broker.inflight))
    for suffix, attribute, text in BROKER_COUNTERS:
        out.append(CounterMetricFamily(f"{PREFIX}_{suffix}", text,
                                       value=getattr(broker, attribute)))
    outbox = snapshot.outbox
    out.append(GaugeMetricFamily(f"{PREFIX}_outbox_depth", "Messages waiting in the outbox.",
                                 value=outbox.depth))
    out.append(GaugeMetricFamily(f"{PREFIX}_outbox_bytes", "Bytes waiting in the outbox.",
                                 value=outbox.bytes))
    dropped = CounterMetricFamily(f"{PREFIX}_outbox_dropped", "Messages dropped by the "
                                  "outbox bound (persistent across restarts).",
                                  labels=["pipeline"])
    for name, count in sorted(outbox.dropped.items()):
        dropped.add_metric([name], count)
    out.append(dropped)
    out.append(CounterMetricFamily(f"{PREFIX}_outbox_disk_full_drops", "Messages that could "
                                   "not be stored (disk full or I/O error).",
                                   value=outbox.dropped_disk_full))
    return out


def _pipeline_metrics(snapshot: DaemonSnapshot, report: HealthReport) -> list[Metric]:
    verdicts = {p.name: p.state for p in report.pipelines}
    labels = ["pipeline"]
    info = InfoMetricFamily(f"{PREFIX}_pipeline", "Model, backend and source of a pipeline.",
                            labels=labels)
    online = GaugeMetricFamily(f"{PREFIX}_source_online", "1 while the source delivers.",
                               labels=labels)
    age = GaugeMetricFamily(f"{PREFIX}_last_prediction_age_seconds", "Seconds since the last "
                            "prediction (absent before the first).", labels=labels)
    counters = [CounterMetricFamily(f"{PREFIX}_{suffix}", text, labels=labels)
                for suffix, _attribute, text in PIPELINE_COUNTERS]
    latency = HistogramMetricFamily(f"{PREFIX}_stage_latency_seconds", "Time spent per "
                                    "frame in each pipeline stage.",
                                    labels=["pipeline", "stage"])
    for p in snapshot.pipelines:
        info.add_metric([p.name], {"model": p.model_name, "model_sha256": p.model_sha256,
                                   "backend": p.backend, "accelerator": p.accelerator,
                                   "source": p.source.description})
        online.add_metric([p.name], float(p.source.online))
        if p.last_result_age_s is not None:
            age.add_metric([p.name], p.last_result_age_s)
        for family, (_suffix, attribute, _text) in zip(counters, PIPELINE_COUNTERS,
                                                       strict=True):
            family.add_metric([p.name], getattr(p, attribute))
        for stage, histogram in p.latency_histograms.items():
            latency.add_metric([p.name, stage], prometheus_buckets(histogram),
                               sum_value=histogram.total_ms / MS_PER_S)
    status = _state_gauge("pipeline_health_status", "1 for the pipeline's health state, 0 for "
                          "the others.", labels,
                          [([p.name], verdicts[p.name]) for p in snapshot.pipelines])
    return [info, status, online, age, *counters, latency]


def prometheus_buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs in seconds, ending with ``+Inf``."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound_ms, count in zip(histogram.bounds_ms, histogram.counts, strict=False):
        running += count
        buckets.append((f"{bound_ms / MS_PER_S:g}", running))
    buckets.append(("+Inf", histogram.count))
    return buckets


def _state_gauge(suffix: str, text: str, labels: list[str],
                 values: Iterable[tuple[list[str], str]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{suffix}", text, labels=[*labels, "state"])
    for label_values, current in values:
        for state in SEVERITY:
            family.add_metric([*label_values, state], float(state == current))
    return family


class DaemonCollector(Collector):
    """Reads one health snapshot per scrape."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        snapshot, report = self.monitor.report()
        yield from metric_families(snapshot, report)


def build_registry(monitor: HealthMonitor) -> CollectorRegistry:
    """A dedicated registry (not the global default): the daemon's metrics and process_*."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(monitor))
    ProcessCollector(registry=registry)
    return registry
