"""Zero-loss delivery over a bad network and with security: connections cut every few
seconds, a refused login, TLS with the right and a wrong CA.

The daemon runs as a subprocess against a real Mosquitto (through a fault-injecting TCP
proxy where the network is the subject); an independent subscriber counts ``seq``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory, SubscriberFactory
from tests.support.broker import MosquittoBroker, make_tls_files
from tests.support.daemon import DaemonProcess, run_cli, wait_until
from tests.support.delivery import (
    PIPELINES,
    assert_complete,
    fd_count,
    link_state,
    outbox_stats,
    predictions_filter,
    read_stats,
    start_daemon,
    thread_count,
    wait_for_all,
    wait_results,
    write_config,
)
from tests.support.proxy import TcpProxy

CUTS_FOR_S = 62.0
CUT_EVERY_S = 3.0
BASELINE_CUTS = 3  # threads and fds are compared with the samples after the first cuts


@pytest.mark.slow
def test_connection_cut_every_few_seconds_loses_nothing_and_leaks_nothing(
        broker: MosquittoBroker, proxy: TcpProxy, subscriber_factory: SubscriberFactory,
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    device = "cuts"
    subscriber = subscriber_factory(broker.host, broker.port, predictions_filter(device))
    config = write_config(tmp_path, proxy.port, device=device, fps=100)
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 100, timeout_s=30), daemon.log_text()
    threads: list[int] = []
    fds: list[int] = []
    started = time.monotonic()
    cuts = 0
    while time.monotonic() - started < CUTS_FOR_S:
        time.sleep(CUT_EVERY_S)
        threads.append(thread_count(daemon.pid))  # sampled while connected, just before a cut
        fds.append(fd_count(daemon.pid))
        cuts += proxy.cut_all()
    print(f"{cuts} connections cut; threads {threads}; fds {fds}")
    assert cuts >= CUTS_FOR_S / CUT_EVERY_S - 2
    assert max(threads[BASELINE_CUTS:]) <= max(threads[:BASELINE_CUTS])
    assert max(fds[BASELINE_CUTS:]) <= max(fds[:BASELINE_CUTS])

    assert wait_until(lambda: link_state(tmp_path) == "connected", timeout=15)
    before = subscriber.count("a")
    assert subscriber.wait_for_count("a", before + 100, timeout_s=30), daemon.log_text()
    stats = read_stats(tmp_path)
    assert stats is not None and stats["broker"]["reconnects"] >= cuts
    assert daemon.terminate() == 0, daemon.log_text()
    counters = outbox_stats(config)
    wait_for_all(subscriber, counters, PIPELINES, timeout_s=30)
    duplicates = assert_complete(subscriber, counters)
    print(f"duplicates per pipeline after {cuts} cuts: {duplicates}")


WATCH_REFUSED_S = 12.0
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 3.0


def test_wrong_password_is_reported_as_refused_and_retried_with_backoff(
        broker_factory: BrokerFactory, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    secured = broker_factory(users={"edge": "right-password"})
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("wrong-password\n")
    with TcpProxy(secured.host, secured.port) as proxy:  # counts connection attempts
        config = write_config(
            tmp_path, proxy.port, device="refused", fps=20, pipelines=("a",),
            mqtt={"username": "edge", "password_file": str(password_file),
                  "reconnect_min_s": RECONNECT_MIN_S, "reconnect_max_s": RECONNECT_MAX_S})
        daemon = start_daemon(daemons, config, tmp_path)
        assert wait_until(lambda: proxy.accepted_count > 0, timeout=15), daemon.log_text()
        attempts: list[float] = [time.monotonic()]
        states: set[str] = set()
        seen = 1
        while attempts[-1] - attempts[0] < WATCH_REFUSED_S and \
                time.monotonic() - attempts[0] < WATCH_REFUSED_S + RECONNECT_MAX_S:
            count = proxy.accepted_count
            attempts += [time.monotonic()] * (count - seen)
            seen = count
            states.add(link_state(tmp_path) or "")
            time.sleep(0.02)
        assert daemon.alive()
        stats = read_stats(tmp_path)
        assert stats is not None
        assert stats["broker"]["state"] == "refused"
        # mosquitto 2.0 answers a wrong password with CONNACK 0x87 "Not authorized"
        assert stats["broker"]["reason"].startswith("broker refused the connection: Not authorized")
        assert "mqtt.password" in stats["broker"]["reason"]
        assert "connected" not in states and stats["broker"]["sent"] == 0
        assert stats["pipelines"]["a"]["predictions"] > 0 and stats["outbox"]["depth"] > 0
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        print(f"{len(attempts)} attempts; gaps between them (s): {[round(g, 2) for g in gaps]}")
        # Without backoff there would be WATCH_REFUSED_S / RECONNECT_MIN_S = 60 attempts.
        assert 4 <= len(attempts) <= 20
        assert max(gaps[3:]) > 3 * RECONNECT_MIN_S
        report = run_cli("health", "--config", str(config))  # what a user asks
        assert "broker refused: broker refused the connection: Not authorized" in report.stdout, \
            report
        assert daemon.terminate() == 0
    log_text = daemon.log_text()
    assert log_text.count("Not authorized") == 1, log_text  # said once, not at every attempt
    assert "Traceback" not in log_text


def test_tls_with_the_right_ca_and_a_client_certificate_delivers(
        broker_factory: BrokerFactory, subscriber_factory: SubscriberFactory, tmp_path: Path,
        daemons: list[DaemonProcess]) -> None:
    tls = make_tls_files(tmp_path / "tls", require_certificate=True)
    secured = broker_factory(tls=tls)
    device = "tls"
    subscriber = subscriber_factory(secured.host, secured.port, predictions_filter(device))
    assert secured.tls_port is not None
    config = write_config(
        tmp_path, secured.tls_port, device=device, fps=50, pipelines=("a",),
        mqtt={"tls": {"ca_file": str(tls.cafile), "cert_file": str(tls.client_certfile),
                      "key_file": str(tls.client_keyfile), "version": "tlsv1.2"}})
    daemon = start_daemon(daemons, config, tmp_path)
    assert subscriber.wait_for_count("a", 50, timeout_s=30), daemon.log_text()
    assert link_state(tmp_path) == "connected"
    assert daemon.terminate() == 0, daemon.log_text()


def test_tls_with_a_wrong_ca_is_a_clear_error_and_the_daemon_keeps_running(
        broker_factory: BrokerFactory, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    tls = make_tls_files(tmp_path / "tls")
    stranger = make_tls_files(tmp_path / "other-ca")
    secured = broker_factory(tls=tls)
    assert secured.tls_port is not None
    config = write_config(tmp_path, secured.tls_port, device="wrong-ca", fps=20,
                          pipelines=("a",), mqtt={"tls": {"ca_file": str(stranger.cafile)}})
    daemon = start_daemon(daemons, config, tmp_path)
    assert wait_until(lambda: "not trusted" in str(
        (read_stats(tmp_path) or {}).get("broker", {}).get("reason")), timeout=15), \
        daemon.log_text()
    assert wait_results(tmp_path, 40, timeout=15, pipelines=("a",))  # still inferring
    stats = read_stats(tmp_path)
    assert stats is not None and stats["broker"]["sent"] == 0
    print(stats["broker"]["reason"])
    assert daemon.alive()
    assert daemon.terminate() == 0
    log_text = daemon.log_text()
    assert "certificate" in log_text and "not trusted" in log_text
    assert "Traceback" not in log_text
