"""The daemon: builds everything from the config, runs the pipelines, shuts down cleanly."""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from edge_runtime.config.schema import Config, PipelineConfig
from edge_runtime.errors import SourceError
from edge_runtime.health.service import HealthService
from edge_runtime.pipeline import ModelStages, Pipeline, load_all_stages
from edge_runtime.publishing.events import ResultRouter, events_stream
from edge_runtime.publishing.mqtt import OFFLINE_ACK_TIMEOUT_S, MessageHandler, MqttLink
from edge_runtime.publishing.outbox import Outbox
from edge_runtime.publishing.payload import aggregate_body, encode_payload, payload_body
from edge_runtime.publishing.source_state import SourceStateTopic, state_of
from edge_runtime.runners.fast_path import slow_int8_warning
from edge_runtime.runners.interpreter import TFLiteRunner
from edge_runtime.service.reload import reload_config
from edge_runtime.service.reporter import ServiceReporter
from edge_runtime.sources import build_source
from edge_runtime.types import Result

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0  # pipelines finishing frames already captured (reload)
RELINK_DRAIN_S = 5.0  # reload: unacknowledged messages of the old broker link
PIPELINE_STOP_SHARE = 0.5  # of stop_timeout_s for pipelines finishing frames already captured
STOP_MARGIN_S = 0.5  # closing the outbox after the broker link stopped
SUPERVISE_INTERVAL_S = 0.5
STATS_LOG_INTERVAL_S = 300.0


@dataclass
class OutboxSink:
    """Turns results into payloads and commits them to the outbox: predictions, and change
    events as their own stream; annotated snapshots go to ``router``.

    ``config`` is swapped by a reload; each result reads it once, so a message never mixes
    settings of two configs. With ``output.aggregate: N`` a pipeline's predictions are held
    until N are there, then committed as one message; ``flush`` commits what is held when
    the pipeline stops."""

    config: Config
    outbox: Outbox
    router: ResultRouter = field(default_factory=ResultRouter)
    _held: dict[str, tuple[PipelineConfig, list[dict[str, Any]]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, pipeline: PipelineConfig, stages: ModelStages, result: Result) -> None:
        config = self.config
        body = payload_body(device=config.device_id, pipeline=pipeline.name,
                            task=stages.postprocessor.task, model_name=stages.model.name,
                            model_sha256=stages.model.sha256, result=result)
        route = self.router.route(pipeline, result)
        if route.predictions:
            self._predictions(config, pipeline, body)
        if route.event is not None:
            event = {**body, "event": route.event}
            self.outbox.enqueue(events_stream(pipeline.name), config.events_topic(pipeline),
                                _qos(config, pipeline), lambda seq: encode_payload(event, seq))
        if route.snapshot:
            self.router.snapshot(config, pipeline, result)

    def _predictions(self, config: Config, pipeline: PipelineConfig,
                     body: dict[str, Any]) -> None:
        """Commit one result's payload, or hold it for an aggregate."""
        if pipeline.output.aggregate > 1:
            with self._lock:
                held = self._held.setdefault(pipeline.name, (pipeline, []))[1]
                held.append(body)
                if len(held) < pipeline.output.aggregate:
                    return
                del self._held[pipeline.name]
            body = aggregate_body(held)
        self._commit(config, pipeline, body)

    def flush(self, pipelines: Sequence[str]) -> None:
        """Commit the partial aggregates of these (stopped) pipelines."""
        with self._lock:
            held = [self._held.pop(name) for name in pipelines if name in self._held]
        for pipeline, bodies in held:
            self._commit(self.config, pipeline, aggregate_body(bodies))

    def _commit(self, config: Config, pipeline: PipelineConfig, body: dict[str, Any]) -> None:
        self.outbox.enqueue(pipeline.name, config.predictions_topic(pipeline),
                            _qos(config, pipeline), lambda seq: encode_payload(body, seq))


def _qos(config: Config, pipeline: PipelineConfig) -> int:
    return pipeline.output.qos if pipeline.output.qos is not None else config.mqtt.qos


def open_outbox(config: Config) -> Outbox:
    """The outbox in ``state_dir``; ConfigError / StateError explain why not."""
    return Outbox(config.state_dir, max_messages=config.outbox.max_messages,
                  max_bytes=config.outbox.max_bytes, drop_policy=config.outbox.drop_policy,
                  synchronous=config.outbox.sync)


class Daemon:
    """Owns the outbox, the broker link and the pipelines.

    ``config_path`` and ``overrides`` are what a reload (SIGHUP) reads again. Sources that
    read an MQTT topic subscribe through the daemon (``subscribe``), so their subscriptions
    move to the new broker link when a reload replaces it."""

    def __init__(self, config: Config, config_path: Path | None = None,
                 overrides: Sequence[str] = ()) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = list(overrides)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.service = ServiceReporter.from_environment()
        stages = load_all_stages(config)
        self.outbox = open_outbox(config)
        self.sink = OutboxSink(config, self.outbox, ResultRouter(self._publish_snapshot))
        self.link = MqttLink(config, self.outbox)
        self._inbound: dict[str, tuple[int, MessageHandler]] = {}
        self.pipelines = [self.build_pipeline(p, s) for p, s in zip(config.pipelines, stages,
                                                                      strict=True)]
        self.source_topic = SourceStateTopic(self.link)
        self.health = HealthService(self)

    def build_pipeline(self, config: PipelineConfig, stages: ModelStages) -> Pipeline:
        """A pipeline publishing into the outbox; an MQTT source subscribes through us."""
        source = build_source(config.source, window=config.window, inbound=self)
        return Pipeline(config, stages, self.sink, source=source)

    def subscribe(self, topic: str, qos: int, handler: MessageHandler) -> None:
        """Subscribe through the broker link, and through every link that replaces it."""
        self._inbound[topic] = (qos, handler)
        self.link.subscribe(topic, qos, handler)

    def _publish_snapshot(self, topic: str, jpeg: bytes) -> None:
        self.link.publish_retained(topic, jpeg)  # the current link (a reload may replace it)

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT or until every (finite) source has ended."""
        self._install_signals()
        self.service.status("starting: opening sources")
        try:
            for pipeline in self.pipelines:
                pipeline.open_source()
        except SourceError:
            self.outbox.close()
            raise
        for pipeline in self.pipelines:
            runner = pipeline.stages.runner
            info, accelerator = runner.info, runner.accelerator_status()
            fast_path = runner.fast_path() if isinstance(runner, TFLiteRunner) else None
            xnnpack = (fast_path.describe() if fast_path is not None
                       else f"XNNPACK {'on' if info.xnnpack else 'not seen'}")
            log.info("pipeline %s: %s -> model %s (sha256 %s…) on %s, %d thread(s), "
                     "%s, accelerator %s%s", pipeline.name, pipeline.source.description,
                     pipeline.stages.model.path.name, pipeline.stages.model.sha256[:12],
                     info.backend, info.threads, xnnpack, accelerator.active,
                     f" (degraded: {accelerator.requested} unavailable)"
                     if accelerator.degraded else "")
            warning = (slow_int8_warning(fast_path, info.backend, pipeline.stages.model.path.name)
                       if fast_path is not None else None)
            if warning:
                log.warning("pipeline %s: %s", pipeline.name, warning)
        self.link.start()
        for pipeline in self.pipelines:
            pipeline.start()
        self.health.start()
        last_stats = time.monotonic()
        while not self._stop.wait(self.service.tick_s(SUPERVISE_INTERVAL_S)):
            if self._reload.is_set():
                self._reload.clear()
                reload_config(self)
            self.source_topic.update(self.config, [state_of(p) for p in self.pipelines],
                                     self.link.status.connects)
            if all(p.done for p in self.pipelines):
                log.info("all sources ended; shutting down")
                break
            self.service.update(self.pipelines, self.link, self.outbox)
            if time.monotonic() - last_stats >= STATS_LOG_INTERVAL_S:
                last_stats = time.monotonic()
                self._log_stats()
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop within ``stop_timeout_s``: pipelines finish what they captured, unacknowledged
        messages get the rest of the time, then ``offline``; unsent messages stay stored."""
        started = time.monotonic()
        stop_timeout = self.config.stop_timeout_s
        self.service.stopping()
        # capture stops first, then captured frames drain
        self.stop_pipelines(self.pipelines, stop_timeout * PIPELINE_STOP_SHARE)
        self.health.stop()
        remaining = stop_timeout - (time.monotonic() - started) - STOP_MARGIN_S
        link_stopped = self.link.stop(drain_timeout_s=remaining - OFFLINE_ACK_TIMEOUT_S,
                                      timeout_s=remaining)
        snap = self.outbox.snapshot()
        dropped = ", ".join(f"{p.name} {snap['dropped'].get(p.name, 0)}" for p in self.pipelines)
        log.info("outbox: %d message(s) stay for the next start; dropped per pipeline "
                 "(total, kept across restarts): %s", snap["depth"], dropped)
        if link_stopped:
            self.outbox.close()
        else:  # still inside a blocking connect: exiting closes the store safely
            log.warning("mqtt: the broker link did not stop within the stop timeout")
        self.service.close()
        failed = [p for p in self.pipelines if p.state == "failed"]
        return 1 if failed else 0

    def stop_pipelines(self, pipelines: Sequence[Pipeline],
                       timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop capturing, then wait until frames already captured reached the outbox."""
        for pipeline in pipelines:
            pipeline.stop()
        deadline = time.monotonic() + timeout_s
        for pipeline in pipelines:
            if not pipeline.join(max(0.0, deadline - time.monotonic())):
                log.warning("pipeline %s did not stop within %.1f s", pipeline.name, timeout_s)
        self.sink.flush([p.name for p in pipelines])
        for pipeline in pipelines:
            _log_sensor_counters(pipeline)

    def replace_link(self, config: Config) -> None:
        """Reconnect with new settings; unacknowledged messages stay in the outbox."""
        self.link.stop(RELINK_DRAIN_S)
        self.link = MqttLink(config, self.outbox)
        for topic, (qos, handler) in self._inbound.items():
            self.link.subscribe(topic, qos, handler)
        self.link.start()
        self.health.use_link(self.link, config.stats_topic())
        self.source_topic.link = self.link

    def _log_stats(self) -> None:
        for pipeline in self.pipelines:
            snap = pipeline.snapshot()
            log.info("pipeline %s: %d results, %d dropped frames, inference p50 %.2f ms",
                     pipeline.name, snap["results"], snap["dropped_frames"],
                     snap["latency_ms"]["inference"]["p50"])
            _log_sensor_counters(pipeline)
        log.info("mqtt: %s; outbox depth %d, dropped %s", self.link.status.state,
                 self.outbox.stats.depth, self.outbox.stats.dropped or "none")

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # a watchdog SIGABRT (or a crash in native code) leaves every thread's traceback in
        # the journal; SIGUSR1 prints them without stopping the daemon
        faulthandler.enable()
        faulthandler.register(signal.SIGUSR1, all_threads=True)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._stop.set()

        def on_hangup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()  # handled by the supervision loop, not in the handler

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_hangup)


def _log_sensor_counters(pipeline: Pipeline) -> None:
    """One line with a sensor pipeline's counters (windows, malformed lines, gaps, ...)."""
    counters = pipeline.snapshot().get("sensor")
    if counters is not None:
        log.info("pipeline %s: sensor %s", pipeline.name,
                 json.dumps(counters, separators=(",", ":")))
