"""Zero-loss delivery when the broker goes away: restarts, long outages, late start, overflow.

Each test runs the daemon as a subprocess against a real Mosquitto and counts ``seq`` per
pipeline with an independent persistent-session QoS 1 subscriber.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.publish
import pytest

from tests.conftest import BrokerFactory, SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.delivery import (
    PIPELINES,
    assert_complete,
    link_state,
    outbox_stats,
    predictions_filter,
    read_stats,
    rss_kib,
    start_daemon,
    wait_for_all,
    wait_results,
    write_config,
)
from tests.support.subscriber import read_retained


def clear_retained(broker: MosquittoBroker, topic: str) -> None:
    paho.mqtt.publish.single(topic, b"", qos=1, retain=True, hostname=broker.host,
                             port=broker.port)
    assert read_retained(broker.host, broker.port, topic) is None


def test_broker_restarted_twice_mid_stream_loses_nothing(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess]) -> None:
    device = "restarts"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    # a publishes at QoS 1 (deleted on PUBACK), b at QoS 2 (deleted on PUBCOMP)
    config = write_config(tmp_path, broker.port, device=device, fps=100,
                          pipeline_extra={"b": {"output": {"qos": 2}}})
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 100, timeout_s=30), daemon.log_text()
    status_topic = f"edge/{device}/status"
    for _ in range(2):
        clear_retained(broker, status_topic)  # so that "online" must be published again
        broker.stop()
        time.sleep(1.5)  # the daemon keeps producing into the outbox meanwhile
        broker.start()
        before = subscriber.count("a")
        assert subscriber.wait_for_count("a", before + 100, timeout_s=30), daemon.log_text()
        assert wait_until(lambda: read_retained(broker.host, broker.port, status_topic)
                          == b"online", timeout=5)
    stats = json.loads(read_retained(broker.host, broker.port, f"edge/{device}/stats") or b"{}")
    assert stats["device"] == device and stats["broker"]["reconnects"] >= 2
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    assert counters["depth"] == 0
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=30)
    duplicates = assert_complete(subscriber, counters)
    print(f"duplicates per pipeline: {duplicates}")
    assert "Traceback" not in daemon.log_text()


OUTAGE_S = 32.0
OUTAGE_FPS = 300.0  # per pipeline: 600 messages/s pile up in the outbox
WARM_UP_S = 6.0  # RSS is compared from this point of the outage on
RSS_GROWTH_LIMIT_KIB = 3 * 1024


@pytest.mark.slow
def test_long_outage_keeps_memory_flat_and_drains_in_order(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess]) -> None:
    device = "outage"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    config = write_config(tmp_path, broker.port, device=device, fps=OUTAGE_FPS)
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 200, timeout_s=30), daemon.log_text()
    broker.stop()
    outage_started = time.monotonic()
    time.sleep(WARM_UP_S)
    results_before = read_stats(tmp_path)
    samples = [rss_kib(daemon.pid)]
    while time.monotonic() - outage_started < OUTAGE_S:
        time.sleep(1.0)
        samples.append(rss_kib(daemon.pid))
    results_after = read_stats(tmp_path)
    broker.start()
    assert results_before is not None and results_after is not None
    spooled = results_after["outbox"]["depth"] - results_before["outbox"]["depth"]
    growth = max(samples) - samples[0]
    print(f"RSS over the outage (KiB): {samples[0]} -> max {max(samples)} (+{growth}); "
          f"outbox grew by {spooled} messages")
    # The daemon kept inferring: tens of thousands of messages went to disk, not to memory.
    assert spooled >= 0.5 * OUTAGE_FPS * len(PIPELINES) * (OUTAGE_S - WARM_UP_S)
    assert growth < RSS_GROWTH_LIMIT_KIB, samples

    assert wait_until(lambda: (read_stats(tmp_path) or {}).get("outbox", {}).get("depth", 1)
                      < 1000, timeout=60), daemon.log_text()
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=60)
    assert_complete(subscriber, counters)


BROKER_LATE_S = 10.0


def test_daemon_started_without_broker_delivers_everything_once_it_comes(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess]) -> None:
    device = "late-broker"
    # The subscriber's persistent session is made first, so the broker queues for it as
    # soon as it is back, whoever reconnects first.
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    broker.stop()
    config = write_config(tmp_path, broker.port, device=device, fps=50)
    daemon = start_daemon(daemons, config, tmp_path)
    started = time.monotonic()
    assert wait_results(tmp_path, 20, timeout=BROKER_LATE_S), daemon.log_text()
    stats = read_stats(tmp_path)
    assert stats is not None
    assert stats["broker"]["state"] in ("connecting", "disconnected")
    assert stats["broker"]["sent"] == 0
    assert stats["outbox"]["depth"] > 0  # spooling
    time.sleep(max(0.0, BROKER_LATE_S - (time.monotonic() - started)))
    broker.start()
    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=10), daemon.log_text()
    before = subscriber.count("a")
    assert subscriber.wait_for_count("a", before + 50, timeout_s=30)
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=30)
    assert_complete(subscriber, counters)
    # seq 0 was produced about BROKER_LATE_S before the broker existed
    assert subscriber.seqs("a")[0] == 0


OVERFLOW_LIMIT = 150  # outbox.max_messages
OVERFLOW_FPS = 60.0
OVERFLOW_DROPS = 200  # at least, per daemon, before the broker comes back
EDGE_S = 0.2  # margin around the outage's start and end, for messages already under way


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_overflow_drops_are_counted_exactly_with_the_configured_policy(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess], policy: str) -> None:
    device = f"overflow-{policy}"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    config = write_config(tmp_path, broker.port, device=device, fps=OVERFLOW_FPS,
                          outbox={"max_messages": OVERFLOW_LIMIT, "drop_policy": policy})
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 50, timeout_s=30), daemon.log_text()
    broker.stop()
    outage_start = time.time()
    # Two pipelines share the outbox: it is full after OVERFLOW_LIMIT / (2 * fps) = 1.25 s.
    assert wait_until(lambda: (read_stats(tmp_path) or {}).get("outbox", {}).get(
        "dropped", 0) >= OVERFLOW_DROPS, timeout=15), daemon.log_text()
    outage_end = time.time()
    broker.start()
    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=10), daemon.log_text()
    before = subscriber.count("a")
    assert subscriber.wait_for_count("a", before + OVERFLOW_LIMIT // 2 + 30, timeout_s=30)
    assert daemon.terminate() == 0, daemon.log_text()

    counters = outbox_stats(config)
    assert counters["depth"] == 0
    for name in PIPELINES:
        next_seq = counters["pipelines"][name]["next_seq"]
        assert subscriber.wait_for_seqs(name, [next_seq - 1], timeout_s=30)
        missing = subscriber.missing(name, range(next_seq))
        dropped = counters["pipelines"][name]["dropped"]
        assert dropped > 0
        assert len(missing) == dropped, (name, len(missing), dropped)
        assert f"{name} {dropped}" in daemon.log_text()  # the shutdown line says it too
        # Which end of the outage survived tells the policy (capture times from payloads).
        captured = [m.json()["ts"] for m in subscriber.messages() if m.pipeline == name]
        early = [ts for ts in captured if outage_start + EDGE_S <= ts <= outage_start + 1.0]
        late = [ts for ts in captured if outage_end - 1.0 <= ts <= outage_end - EDGE_S]
        if policy == "drop_oldest":
            assert not early and late, (len(early), len(late))
        else:
            assert early and not late, (len(early), len(late))


def test_publishes_the_broker_refuses_are_counted_as_drops(
        broker_factory: BrokerFactory, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess]) -> None:
    device = "acl"
    acl = tmp_path / "acl"
    # pipeline b may not publish its predictions (MQTT 5 PUBACK 0x87 "Not authorized")
    acl.write_text(f"topic readwrite edge/{device}/status\ntopic readwrite edge/{device}/stats\n"
                   f"topic readwrite edge/{device}/a/predictions\n")
    # mosquitto 2.0.11 drops the connection after a denied publish when max_queued_messages
    # is 0 (the harness's "unlimited"), so this broker gets a large finite queue instead.
    secured = broker_factory(extra_config=[f"acl_file {acl}", "max_queued_messages 1000000"])
    subscriber = subscriber_factory(secured.host, secured.port, predictions_filter(device))
    config = write_config(tmp_path, secured.port, device=device, fps=50)
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 100, timeout_s=30), daemon.log_text()
    stats = read_stats(tmp_path)
    assert stats is not None and stats["broker"]["rejected"] > 0
    assert stats["outbox"]["dropped_by_pipeline"]["b"] > 0
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    assert counters["depth"] == 0
    assert subscriber.wait_for_seqs("a", range(counters["pipelines"]["a"]["next_seq"]),
                                    timeout_s=30)
    assert counters["pipelines"]["a"]["dropped"] == 0
    assert subscriber.count("b") == 0
    assert counters["pipelines"]["b"]["dropped"] == counters["pipelines"]["b"]["next_seq"] > 0
    assert "the broker rejected" in daemon.log_text() and "Not authorized" in daemon.log_text()
