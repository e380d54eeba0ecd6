"""Where ``edge-runtime health`` asks."""

from __future__ import annotations

from edge_runtime.config.schema import HealthConfig
from edge_runtime.health.client import default_url


def test_health_url_from_the_config_section() -> None:
    assert default_url(HealthConfig()) == "http://127.0.0.1:9473/healthz"
    assert default_url(HealthConfig(host="0.0.0.0", port=8080)) == \
        "http://127.0.0.1:8080/healthz"  # a wildcard bind is asked on loopback
    assert default_url(HealthConfig(host="::")) == "http://[::1]:9473/healthz"
    assert default_url(HealthConfig(host="fd00::5")) == "http://[fd00::5]:9473/healthz"
