"""Health: pure evaluation of a daemon snapshot (evaluate), what the daemon reads for it
(monitor), /healthz and /metrics over HTTP (server, metrics), the retained stats topic
(stats_topic), all started by service.HealthService. Rules and endpoints: docs/health.md.

Kept import-free so ``edge-runtime health`` loads only what it needs.
"""
