"""The local HTTP endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

stdlib ``http.server`` on its own threads, bound to 127.0.0.1 by default. Every request
reads a fresh snapshot; nothing here touches the pipelines' hot path.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from edge_runtime.health.evaluate import health_body

if TYPE_CHECKING:
    from edge_runtime.health.monitor import HealthMonitor

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
JSON_TYPE = "application/json"
SHUTDOWN_TIMEOUT_S = 2.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    monitor: HealthMonitor
    registry: CollectorRegistry


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edge-runtime"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            snapshot, report = self.server.monitor.report()
            body = json.dumps(health_body(snapshot, report), indent=1).encode("utf-8")
            self._send(report.http_status, JSON_TYPE, body)
        elif path == METRICS_PATH:
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                       f"not found; try {HEALTH_PATH} or {METRICS_PATH}\n".encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)


class HealthServer:
    """Serves until :meth:`close`."""

    def __init__(self, host: str, port: int, monitor: HealthMonitor,
                 registry: CollectorRegistry) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _Handler)  # OSError when the port is taken
        self._server.monitor = monitor
        self._server.registry = registry
        port = self._server.server_address[1]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(SHUTDOWN_TIMEOUT_S)
