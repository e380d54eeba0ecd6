"""Where each result goes: the predictions topic, the events topic, an annotated snapshot.

The change logic is the pure state machine in ``processing/events.py``; this keeps one per
pipeline, decides the routes and makes the snapshots. Events are predictions the daemon
promises to deliver, so they go through the outbox, as their own stream
``{pipeline}/events`` with their own ``seq`` (each topic has a gap-free sequence, so a gap
still means a counted drop). Snapshots do not: they are large, only the newest matters,
and they are published retained outside the outbox (latest wins while the broker is away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_runtime.config.schema import Config, PipelineConfig
from edge_runtime.processing.annotate import annotate, encode_jpeg
from edge_runtime.processing.events import ChangeDetector, result_state
from edge_runtime.types import Result

log = logging.getLogger(__name__)

SnapshotPublisher = Callable[[str, bytes], None]  # (topic, JPEG bytes), retained


def events_stream(pipeline: str) -> str:
    """The outbox stream (own seq, own drop count) of a pipeline's events; '/' never
    occurs in pipeline names, so it cannot collide with one."""
    return f"{pipeline}/events"


@dataclass(frozen=True)
class Route:
    """What to do with one result."""

    predictions: bool  # publish on the predictions topic
    event: dict[str, Any] | None  # publish on the events topic, with this ``event`` field
    snapshot: bool  # publish an annotated snapshot


class PipelineRoute:
    """The routing state of one pipeline: its change detector and snapshot rate limit."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        events = config.events
        self.detector = (ChangeDetector(events.debounce_frames, events.debounce_s)
                         if events.mode == "change" else None)
        self.last_snapshot_mono: float | None = None

    def route(self, result: Result, now_mono: float) -> Route:
        """Decide for the next result of this pipeline (``now_mono``: monotonic seconds)."""
        change = None
        if self.detector is not None:
            change = self.detector.update(result_state(result.predictions), result.capture_ts)
        predictions = self.detector is None or self.config.events.keep_predictions
        snapshot = (self.config.snapshot is not None and result.image is not None
                    and (self.detector is None or change is not None)
                    and self._snapshot_due(now_mono))
        return Route(predictions, None if change is None else change.as_dict(), snapshot)

    def _snapshot_due(self, now_mono: float) -> bool:
        snapshot = self.config.snapshot
        assert snapshot is not None
        last = self.last_snapshot_mono
        if last is not None and now_mono - last < snapshot.min_interval_s:
            return False
        self.last_snapshot_mono = now_mono
        return True


class ResultRouter:
    """Routes for every pipeline, made on a pipeline's first result (and again when a reload
    gave it a new config); publishes snapshots through ``publish_snapshot``."""

    def __init__(self, publish_snapshot: SnapshotPublisher | None = None) -> None:
        self.publish_snapshot = publish_snapshot
        self._routes: dict[str, PipelineRoute] = {}
        self._lock = threading.Lock()

    def route(self, pipeline: PipelineConfig, result: Result) -> Route:
        with self._lock:
            route = self._routes.get(pipeline.name)
            if route is None or route.config is not pipeline:
                route = self._routes[pipeline.name] = PipelineRoute(pipeline)
        return route.route(result, time.monotonic())

    def snapshot(self, config: Config, pipeline: PipelineConfig, result: Result) -> None:
        """Annotate the result's frame, fit it into the size cap, publish it retained."""
        settings, image = pipeline.snapshot, result.image
        if settings is None or image is None or self.publish_snapshot is None:
            return
        jpeg = encode_jpeg(annotate(image, result.predictions), settings.max_bytes,
                           settings.quality, settings.max_width)
        if jpeg is None:
            log.warning("pipeline %s: snapshot does not fit in %d bytes even at the smallest "
                        "size; not published", pipeline.name, settings.max_bytes)
            return
        self.publish_snapshot(config.snapshot_topic(pipeline), jpeg)
