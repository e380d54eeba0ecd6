"""Prometheus exposition of a snapshot, the latency histogram, drop tracking, stats cadence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from edge_runtime.config.schema import Config
from edge_runtime.health.evaluate import DaemonSnapshot, evaluate
from edge_runtime.health.metrics import metric_families
from edge_runtime.health.monitor import HealthMonitor
from edge_runtime.health.stats_topic import StatsTopic
from edge_runtime.pipeline import Pipeline
from edge_runtime.publishing.mqtt import MqttLink
from edge_runtime.publishing.outbox import Outbox
from edge_runtime.timing import LatencyWindow
from tests.unit.test_health_rules import RULES, broker, daemon, outbox, pipeline


class _Static:
    def __init__(self, snapshot: DaemonSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self.snapshot, evaluate(self.snapshot, RULES))


def scrape(snapshot: DaemonSnapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Render as Prometheus text and parse it back with prometheus-client's own parser."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(snapshot))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_latency_window_histogram_uses_le_buckets() -> None:
    window = LatencyWindow(size=4)  # the histogram keeps everything, the window only 4
    for value in (0.1, 0.25, 1.0, 3.0, 3.0, 7000.0):
        window.add(value)
    histogram = window.histogram()
    assert histogram.count == 6 and histogram.total_ms == pytest.approx(7007.35)
    by_bound = dict(zip((*histogram.bounds_ms, float("inf")), histogram.counts, strict=True))
    # a value equal to a bound belongs to that bucket (Prometheus "le")
    assert by_bound[0.25] == 2 and by_bound[1.0] == 1 and by_bound[5.0] == 2
    assert by_bound[float("inf")] == 1 and sum(histogram.counts) == 6


def test_metrics_match_the_snapshot() -> None:
    window = LatencyWindow()
    for value in (2.0, 4.0, 40.0):
        window.add(value)
    cam = pipeline(captured=120, dropped_frames=20, inferred=100, results=99,
                   last_result_age_s=0.5, latency_histograms={"inference": window.histogram()})
    snapshot = daemon(cam, broker=broker(state="disconnected", connects=4, sent=7, acked=5,
                                         rejected=1, inflight=2),
                      outbox=outbox(depth=17, bytes=4096, dropped={"cam": 3},
                                    dropped_disk_full=2))
    m = scrape(snapshot)
    cam_label = (("pipeline", "cam"),)
    assert m[("edge_runtime_frames_captured_total", cam_label)] == 120
    assert m[("edge_runtime_frames_dropped_total", cam_label)] == 20
    assert m[("edge_runtime_frames_inferred_total", cam_label)] == 100
    assert m[("edge_runtime_predictions_total", cam_label)] == 99
    assert m[("edge_runtime_last_prediction_age_seconds", cam_label)] == 0.5
    assert m[("edge_runtime_source_online", cam_label)] == 1
    assert m[("edge_runtime_broker_connected", ())] == 0
    assert m[("edge_runtime_broker_reconnects_total", ())] == 3
    assert m[("edge_runtime_broker_messages_rejected_total", ())] == 1
    assert m[("edge_runtime_broker_inflight_messages", ())] == 2
    assert m[("edge_runtime_outbox_depth", ())] == 17
    assert m[("edge_runtime_outbox_bytes", ())] == 4096
    assert m[("edge_runtime_outbox_dropped_total", cam_label)] == 3
    assert m[("edge_runtime_outbox_disk_full_drops_total", ())] == 2
    assert m[("edge_runtime_health_status", (("state", "degraded"),))] == 1
    assert m[("edge_runtime_health_status", (("state", "healthy"),))] == 0
    inference = (("pipeline", "cam"), ("stage", "inference"))
    assert m[("edge_runtime_stage_latency_seconds_count", inference)] == 3
    assert m[("edge_runtime_stage_latency_seconds_sum", inference)] == pytest.approx(0.046)
    bucket = "edge_runtime_stage_latency_seconds_bucket"
    assert m[(bucket, (("le", "0.0025"), *inference))] == 1
    assert m[(bucket, (("le", "0.005"), *inference))] == 2
    assert m[(bucket, (("le", "0.05"), *inference))] == 3
    assert m[(bucket, (("le", "+Inf"), *inference))] == 3
    info = [k for k in m if k[0] == "edge_runtime_pipeline_info"]
    assert dict(info[0][1])["model_sha256"] == "ab" * 32


def test_no_age_sample_before_the_first_prediction() -> None:
    m = scrape(daemon(pipeline(last_result_age_s=None, results=0)))
    assert not [k for k in m if k[0] == "edge_runtime_last_prediction_age_seconds"]


class _Daemon:
    """The parts of the daemon health reads: a real outbox and an idle (unstarted) link."""

    def __init__(self, config: Config, outbox: Outbox) -> None:
        self.config = config
        self.pipelines: list[Pipeline] = []
        self.outbox = outbox
        self.link = MqttLink(config, outbox)


def _fill(box: Outbox, count: int) -> None:
    for _ in range(count):
        box.enqueue("cam", "t", 1, lambda seq: str(seq).encode())


def test_monitor_reports_drops_seen_in_this_run_only(tmp_path: Path) -> None:
    config = Config.model_validate({"pipelines": [{
        "name": "cam", "source": {"type": "synthetic"}, "model": {"path": "m.tflite"}}]})
    box = Outbox(tmp_path, max_messages=10)
    try:
        _fill(box, 12)  # two drops before the monitor starts: history, not a problem now
        monitor = HealthMonitor(_Daemon(config, box))
        first = monitor.snapshot().outbox
        assert first.dropped == {"cam": 2} and first.last_drop_age_s is None
        _fill(box, 1)
        later = monitor.snapshot().outbox
        assert later.dropped == {"cam": 3} and later.last_drop_age_s is not None
        assert later.depth == 10 and later.max_messages == 10
    finally:
        box.close()


class _Link:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish_retained(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, payload))


def test_stats_topic_publishes_every_interval_and_can_be_off() -> None:
    link = _Link()
    stats = StatsTopic(link, "edge/pi-1/stats", 10.0, now_mono=100.0)
    published = []
    for t in (105.0, 110.0, 115.0, 120.5, 125.0, 131.0):
        if stats.due(t):
            stats.publish({"overall": "healthy", "t": t}, t)
            published.append(t)
    assert published == [110.0, 120.5, 131.0]
    assert [json.loads(p)["t"] for _topic, p in link.sent] == published
    assert {topic for topic, _p in link.sent} == {"edge/pi-1/stats"}
    off = StatsTopic(link, "edge/pi-1/stats", 0.0, now_mono=0.0)
    assert not off.due(1e9)
