"""Tells systemd the truth: READY once settled, WATCHDOG only while progressing, STATUS lines.

The rules themselves are pure functions in :mod:`edge_runtime.service.rules`; this module
samples the pipelines, the broker link and the outbox, applies them, and sends the
notifications. The daemon calls :meth:`ServiceReporter.update` from its supervision loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edge_runtime.pipeline import SOURCE_RETRY_MAX_S
from edge_runtime.service.notify import Notifier
from edge_runtime.service.rules import (
    PipelineView,
    fps_since,
    not_ready,
    status_line,
    watchdog_problems,
)

if TYPE_CHECKING:
    from edge_runtime.pipeline import Pipeline
    from edge_runtime.publishing.mqtt import MqttLink
    from edge_runtime.publishing.outbox import Outbox

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # STATUS= refresh (and the fps averaging window)
SOURCE_OPEN_GRACE_S = 30.0  # longest a source open() may take before the retry looks hung
RETRY_LIMIT_S = SOURCE_RETRY_MAX_S + SOURCE_OPEN_GRACE_S
STALL_WITHOUT_WATCHDOG_S = 10.0  # "stalled" in STATUS= when systemd set no watchdog


def view_of(pipeline: Pipeline) -> PipelineView:
    stats = pipeline.stats
    return PipelineView(
        name=pipeline.name, state=pipeline.state, live=pipeline.source.live,
        source_online=pipeline.source_online, source_reason=pipeline.source_reason,
        results=stats.results, last_progress_mono=stats.last_progress_mono,
        last_retry_mono=stats.last_retry_mono, fps_cap=pipeline.config.fps_limit())


class ServiceReporter:
    """The daemon's side of the sd_notify protocol."""

    def __init__(self, notifier: Notifier, watchdog_interval_s: float | None) -> None:
        self.notifier = notifier
        self.watchdog_interval_s = watchdog_interval_s
        self._ready = False  # READY=1 sent for the current configuration
        self._armed = False  # READY=1 sent at least once: systemd's watchdog is running
        self._last_ping = 0.0
        self._last_status = -STATUS_INTERVAL_S
        self._withheld: frozenset[str] = frozenset()  # problems behind the last ping decision
        self._status_problems: frozenset[str] = frozenset()  # problems in the last STATUS=
        self._previous: dict[str, tuple[int, float]] = {}
        self._fps: dict[str, float | None] = {}

    @classmethod
    def from_environment(cls) -> ServiceReporter:
        notifier, interval = Notifier.from_environment()
        if notifier.enabled:
            log.debug("systemd notifications on; watchdog ping every %s",
                      f"{interval:.2f} s" if interval else "(no watchdog)")
        return cls(notifier, interval)

    def tick_s(self, longest_s: float) -> float:
        """How often to call :meth:`update`: at most ``longest_s``, 4 times per ping."""
        if self.watchdog_interval_s is None:
            return longest_s
        return min(longest_s, self.watchdog_interval_s / 4)

    def status(self, text: str) -> None:
        self.notifier.send(f"STATUS={text}")

    def update(self, pipelines: Sequence[Pipeline], link: MqttLink, outbox: Outbox) -> None:
        """Send READY=1 when settled, WATCHDOG=1 when due and nothing is stuck, STATUS=."""
        if not self.notifier.enabled:
            return
        now = time.monotonic()
        views = [view_of(p) for p in pipelines]
        interval = self.watchdog_interval_s or STALL_WITHOUT_WATCHDOG_S
        problems = watchdog_problems(views, now, interval, RETRY_LIMIT_S, link.alive)
        status_due = (now - self._last_status >= STATUS_INTERVAL_S
                      or frozenset(problems) != self._status_problems)
        self._status_problems = frozenset(problems)
        if status_due:
            self._sample_fps(views, now)
        line = status_line(views, self._fps, problems, link.status.state, link.status.reason,
                           outbox.stats.depth)
        if not self._ready:
            waiting = not_ready(views)
            if not waiting:
                self._ready = self._armed = True
                self._last_status = now
                self.notifier.send("READY=1", f"STATUS={line}")
                log.info("ready: %s", line)
            elif status_due:
                self._last_status = now
                self.status(f"starting: waiting for the first prediction of "
                            f"{', '.join(waiting)}")
        elif status_due:
            self._last_status = now
            self.status(line)
        self._feed_watchdog(now, problems)

    def _sample_fps(self, views: Sequence[PipelineView], now: float) -> None:
        self._fps = {v.name: fps_since(self._previous.get(v.name), v.results, now)
                     for v in views}
        self._previous = {v.name: (v.results, now) for v in views}

    def _feed_watchdog(self, now: float, problems: dict[str, str]) -> None:
        interval = self.watchdog_interval_s
        if interval is None or not self._armed or now - self._last_ping < interval:
            return
        withheld = frozenset(problems)
        if withheld != self._withheld:
            if withheld:
                log.warning("watchdog: not feeding systemd's watchdog: %s",
                            "; ".join(f"{k} {v}" for k, v in problems.items()))
            else:
                log.info("watchdog: progress again; feeding systemd's watchdog")
            self._withheld = withheld
        if not problems:
            self._last_ping = now
            self.notifier.send("WATCHDOG=1")

    def reloading(self) -> None:
        """Before re-reading the config (systemd shows "reloading" until READY=1)."""
        self._ready = False
        monotonic_usec = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC, as systemd wants
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}",
                           "STATUS=reloading the configuration")

    def reload_kept(self, status: str) -> None:
        """The reload changed nothing (rejected, or the same config): ready again at once.

        An applied reload instead sends READY=1 from :meth:`update` once the pipelines
        have settled again."""
        self._ready = True
        self.notifier.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=stopping: flushing pipelines and the outbox")

    def close(self) -> None:
        self.notifier.close()
