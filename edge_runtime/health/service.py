"""Health for one daemon: the sampling thread, the HTTP endpoint and the stats topic."""

from __future__ import annotations

import logging
import threading
import time

from edge_runtime.health.evaluate import health_body
from edge_runtime.health.metrics import build_registry
from edge_runtime.health.monitor import HealthMonitor, Observed
from edge_runtime.health.server import HealthServer
from edge_runtime.health.stats_topic import RetainedPublisher, StatsTopic

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0  # rates and drop detection are sampled this often
JOIN_TIMEOUT_S = 2.0


class HealthService:
    """Started by the daemon after its pipelines, stopped before them."""

    def __init__(self, daemon: Observed) -> None:
        config = daemon.config
        self.config = config.health
        self.monitor = HealthMonitor(daemon)
        self.stats = StatsTopic(daemon.link, config.stats_topic(), self.config.stats_interval_s,
                                time.monotonic())
        self.server: HealthServer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        if self.config.enabled:
            self.server = self._serve()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)
        if self.server is not None:
            self.server.close()
            self.server = None

    def use_link(self, link: RetainedPublisher, stats_topic: str) -> None:
        """The daemon reconnected with new settings (config reload): publish stats there."""
        self.stats.link, self.stats.topic = link, stats_topic

    def _serve(self) -> HealthServer | None:
        """The endpoint, or None when its port cannot be bound: inference matters more than
        the endpoint, so the daemon runs on and says so loudly."""
        host, port = self.config.host, self.config.port
        try:
            server = HealthServer(host, port, self.monitor, build_registry(self.monitor))
        except OSError as err:
            log.error("health endpoint not started: cannot listen on %s:%d (%s); set "
                      "health.port to a free port, or health.enabled: false", host, port,
                      err.strerror or err)
            return None
        log.info("health: http://%s/healthz and /metrics", server.address)
        return server

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.monitor.sample()
            now = time.monotonic()
            if self.stats.due(now):
                snapshot, report = self.monitor.report()
                self.stats.publish(health_body(snapshot, report), now)
