"""``edge-runtime health``: ask the running daemon's /healthz and turn the answer into an exit
code (0 healthy, 1 degraded, 2 unhealthy or not reachable)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from edge_runtime.config.schema import HealthConfig
from edge_runtime.health.evaluate import HTTP_UNAVAILABLE
from edge_runtime.health.server import HEALTH_PATH

QUERY_TIMEOUT_S = 5.0
EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}
EXIT_UNREACHABLE = 2
# what to connect to when the daemon listens on every address
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class HealthAnswer:
    overall: str  # healthy | degraded | unhealthy | unreachable
    body: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.overall, EXIT_UNREACHABLE)


def default_url(config: HealthConfig) -> str:
    """The /healthz URL of a daemon running with this health section."""
    host = WILDCARD_HOSTS.get(config.host, config.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}{HEALTH_PATH}"


def query(url: str, timeout_s: float = QUERY_TIMEOUT_S) -> HealthAnswer:
    """GET ``url``; 503 still carries the JSON body. Never raises for a daemon that is down."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        if err.code != HTTP_UNAVAILABLE:  # 503 is the unhealthy answer, with its JSON body
            return unreachable(f"{url} answered HTTP {err.code} {err.reason}: not an "
                               "edge-runtime health endpoint?")
        raw = err.read()
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            return unreachable(f"{url} did not answer within {timeout_s:g} s")
        reason = err.reason.strerror if isinstance(err.reason, OSError) else None
        return unreachable(f"no daemon answering at {url} ({reason or err.reason})")
    except TimeoutError:
        return unreachable(f"{url} did not answer within {timeout_s:g} s")
    except (OSError, ValueError) as err:  # a reset connection, a malformed URL
        return unreachable(f"cannot ask {url}: {err}")
    try:
        body = json.loads(raw)
        overall = str(body["overall"])
    except (ValueError, KeyError, TypeError):
        return unreachable(f"{url} did not answer with edge-runtime health JSON")
    return HealthAnswer(overall, body)


def unreachable(reason: str) -> HealthAnswer:
    return HealthAnswer("unreachable", {"overall": "unreachable", "reasons": [reason]})
