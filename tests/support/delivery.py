"""Helpers for the delivery tests: a fast daemon config, stats readers, /proc probes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.bundled import models_dir
from edge_runtime.health.client import query
from edge_runtime.health.server import HEALTH_PATH
from tests.support.broker import free_port
from tests.support.daemon import DaemonProcess, run_cli, wait_until
from tests.support.subscriber import SeqSubscriber

MODELS = models_dir()
PIPELINES = ("a", "b")
FRAME_WIDTH, FRAME_HEIGHT = 64, 48  # tiny synthetic frames: the test is about delivery


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(tmp_path: Path, port: int, *, device: str, fps: float,
                 pipelines: tuple[str, ...] = PIPELINES,
                 pipeline_extra: dict[str, dict[str, Any]] | None = None,
                 **sections: Any) -> Path:
    """A daemon config with synthetic sources through the digits model; ``sections`` are
    merged over the defaults (e.g. ``outbox={"max_messages": 100}``), ``pipeline_extra``
    over single pipelines (e.g. ``{"b": {"output": {"qos": 2}}}``)."""
    pipeline_configs = [_merge(
        {"name": name,
         "source": {"type": "synthetic", "width": FRAME_WIDTH, "height": FRAME_HEIGHT,
                    "fps": fps},
         "model": {"path": str(MODELS / "digits_int8.tflite"),
                   "labels": str(MODELS / "digits_labels.txt"), "threads": 1},
         "task": {"type": "classify", "top_k": 1}},
        (pipeline_extra or {}).get(name, {})) for name in pipelines]
    config: dict[str, Any] = {
        "device_id": device,
        "state_dir": str(tmp_path / "state"),
        "stop_timeout_s": 8.0,
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5,
                 "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
        "health": {"port": free_port(), "stats_interval_s": 0.5},
        "pipelines": pipeline_configs,
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(_merge(config, sections), sort_keys=False))
    return path


def predictions_filter(device: str) -> str:
    return f"edge/{device}/+/predictions"


def read_stats(tmp_path: Path) -> dict[str, Any] | None:
    """The running daemon's /healthz answer (what ``edge-runtime health --json`` prints:
    broker state and reason, outbox depth and drops, pipelines); None when not answering."""
    config = yaml.safe_load((tmp_path / "edge.yaml").read_text())
    answer = query(f"http://127.0.0.1:{config['health']['port']}{HEALTH_PATH}")
    return None if answer.overall == "unreachable" else answer.body


def outbox_stats(config: Path) -> dict[str, Any]:
    """``edge-runtime outbox-stats --json``: what a user sees."""
    result = run_cli("outbox-stats", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def wait_for_all(subscriber: SeqSubscriber, counters: dict[str, Any],
                 pipelines: Iterable[str], timeout_s: float) -> None:
    """Wait until every seq the daemon assigned (0 .. next_seq - 1) arrived, per pipeline."""
    for name in pipelines:
        expected = range(counters["pipelines"][name]["next_seq"])
        assert subscriber.wait_for_seqs(name, expected, timeout_s=timeout_s), (
            f"pipeline {name}: missing {subscriber.missing(name, expected)[:10]}")


def assert_complete(subscriber: SeqSubscriber, counters: dict[str, Any]) -> dict[str, int]:
    """Every seq the daemon assigned (0 .. next_seq - 1, from its store) arrived, per
    pipeline, with no seq reused for different content; returns duplicates per pipeline."""
    duplicates = {}
    for name, pipeline in counters["pipelines"].items():
        expected = range(pipeline["next_seq"])
        assert len(expected) > 0, name
        missing = subscriber.missing(name, expected)
        assert missing == [], f"pipeline {name}: {len(missing)} missing, e.g. {missing[:10]}"
        assert pipeline["dropped"] == 0, name
        assert subscriber.in_order(name), f"pipeline {name}: out of order"
        duplicates[name] = subscriber.duplicate_count(name)
    assert_no_seq_reused(subscriber)
    return duplicates


def assert_no_seq_reused(subscriber: SeqSubscriber) -> None:
    """A seq received twice must be the same message (an at-least-once duplicate), never a
    new prediction that reused the number."""
    payloads: dict[tuple[str, int], bytes] = {}
    for message in subscriber.messages():
        if message.pipeline is None or message.seq is None:
            continue
        key = (message.pipeline, message.seq)
        assert payloads.setdefault(key, message.payload) == message.payload, key


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def start_daemon(daemons: list[DaemonProcess], config: Path, tmp_path: Path) -> DaemonProcess:
    """Start ``edge-runtime run --config`` (log in tmp_path); ``daemons`` is for teardown."""
    daemon = DaemonProcess(config, [], tmp_path / f"daemon-{len(daemons)}.log")
    daemons.append(daemon)
    return daemon.start()


def wait_results(tmp_path: Path, minimum: int, timeout: float,
                 pipelines: tuple[str, ...] = PIPELINES) -> bool:
    """Until every pipeline produced ``minimum`` predictions (per the daemon's /healthz)."""
    def enough() -> bool:
        stats = read_stats(tmp_path)
        return stats is not None and all(
            stats["pipelines"].get(name, {}).get("predictions", 0) >= minimum
            for name in pipelines)
    return wait_until(enough, timeout)


def link_state(tmp_path: Path) -> str | None:
    stats = read_stats(tmp_path)
    return None if stats is None else str(stats["broker"]["state"])
