"""Prove the broker test harness works: real Mosquitto, the TCP proxy, the subscriber."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import BrokerFactory
from tests.support.broker import (
    ALLOW_SKIP_ENV,
    BrokerStartError,
    MosquittoBroker,
    make_tls_files,
    require_mosquitto,
)
from tests.support.proxy import TcpProxy
from tests.support.subscriber import (
    SeqSubscriber,
    _parse_seq,
    duplicate_seqs,
    duplicate_total,
    missing_seqs,
    read_retained,
    seqs_in_order,
)

DATA_TOPIC = "harness/data"
STATUS_TOPIC = "harness/status"
DELIVERY_TIMEOUT_S = 5.0
"""How long a message may take to reach the subscriber when the path is up."""
RECONNECT_TIMEOUT_S = 6.0
"""How long a paho client (1-2 s reconnect delay) may take to come back."""
QUIET_PERIOD_S = 0.5
"""How long silence must last to count as 'nothing got through'."""
KEEPALIVE_S = 1
"""Keepalive of the client whose black-holed connection must be detected."""
KEEPALIVE_DETECT_TIMEOUT_S = 5.0
"""paho notices a dead link after about 2 keepalives (+1 s loop granularity)."""
SHORT_TIMEOUT_S = 0.5
"""Timeout for calls that are expected to time out."""
PUBLISH_TIMEOUT_S = 5.0
"""How long one QoS 1 publish may wait for its PUBACK."""


def _payload(pipeline: str, seq: int) -> str:
    """A data message as the daemon would publish it."""
    return json.dumps({"pipeline": pipeline, "seq": seq, "label": "x"})


def _publish_seqs(host: str, port: int, pipeline: str, seqs: Iterable[int]) -> None:
    """Publish ``seqs`` at QoS 1 with a short-lived client, each acknowledged by the broker."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    try:
        for seq in seqs:
            info = client.publish(DATA_TOPIC, _payload(pipeline, seq), qos=1)
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            assert info.is_published(), f"seq {seq} not acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


def _publish_retained(host: str, port: int, topic: str, payload: bytes) -> None:
    """Publish one retained QoS 1 message and wait for the PUBACK."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class _TrackedClient:
    """A paho client with auto-reconnect that counts connects and disconnects."""

    def __init__(self, host: str, port: int, *, keepalive_s: int = 10) -> None:
        self._cond = threading.Condition()
        self.connects = 0
        self.disconnects = 0
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"trk-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    def _on_connect(
        self, _c: Client, _u: Any, _f: ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        with self._cond:
            if not rc.is_failure:
                self.connects += 1
            self._cond.notify_all()

    def _on_disconnect(
        self, _c: Client, _u: Any, _f: DisconnectFlags, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        with self._cond:
            self.disconnects += 1  # paho may report one loss more than once: compare with >=
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    def publish_seq(self, pipeline: str, seq: int) -> None:
        """Queue one QoS 1 data message (no wait for the PUBACK)."""
        self.client.publish(DATA_TOPIC, _payload(pipeline, seq), qos=1)

    def close(self) -> None:
        """Disconnect and join the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def _open_fds() -> set[str]:
    """File descriptors open in this process."""
    return set(os.listdir("/proc/self/fd"))


# -- pure unit tests ------------------------------------------------------------------------


def test_sequence_analysis_on_hand_made_sequence() -> None:
    """Loss, duplication and order are counted right on a known sequence."""
    seqs = [0, 1, 2, 2, 3, 5, 6, 6, 6, 9]
    assert missing_seqs(seqs) == [4, 7, 8]
    assert missing_seqs(seqs, range(12)) == [4, 7, 8, 10, 11]
    assert missing_seqs(seqs, range(3, 7)) == [4]
    assert missing_seqs([]) == []
    assert missing_seqs([], range(3)) == [0, 1, 2]
    assert duplicate_seqs(seqs) == {2: 2, 6: 3}
    assert duplicate_total(seqs) == 3
    assert seqs_in_order(seqs)
    assert not seqs_in_order(seqs, ignore_duplicates=False)
    assert not seqs_in_order([0, 2, 1, 3])
    assert seqs_in_order([0, 1, 2, 1, 3])  # a late redelivery of 1 is only a duplicate
    assert seqs_in_order([])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=60),
    data=st.data(),
)
def test_sequence_analysis_properties(n: int, data: st.DataObject) -> None:
    """missing + distinct received == expected; duplicates == total - distinct."""
    received = data.draw(st.lists(st.integers(min_value=0, max_value=max(n - 1, 0)), max_size=120))
    if n == 0:
        received = []
    expected = range(n)
    missing = missing_seqs(received, expected)
    assert sorted(set(missing) | set(received)) == list(expected)
    assert not set(missing) & set(received)
    assert duplicate_total(received) == len(received) - len(set(received))
    assert all(count > 1 for count in duplicate_seqs(received).values())
    assert seqs_in_order(sorted(set(received)), ignore_duplicates=False)


def test_payload_parsing_accepts_only_pipeline_and_integer_seq() -> None:
    """Non-JSON, non-objects, bool or missing seq are not counted."""
    assert _parse_seq(b'{"pipeline": "cam0", "seq": 7}', "pipeline", "seq") == ("cam0", 7)
    for bad in (b"not json", b"\xff\xfe", b"[1, 2]", b'{"pipeline": "cam0", "seq": true}',
                b'{"pipeline": "cam0"}', b'{"pipeline": 3, "seq": 1}',
                b'{"pipeline": "cam0", "seq": "1"}'):  # fmt: skip
        assert _parse_seq(bad, "pipeline", "seq") == (None, None), bad


def test_missing_mosquitto_fails_loudly_unless_skip_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No binary: pytest.fail by default, pytest.skip only with the opt-in variable."""
    monkeypatch.delenv(ALLOW_SKIP_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="mosquitto binary not found"):
        require_mosquitto(lambda: None)
    monkeypatch.setenv(ALLOW_SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=ALLOW_SKIP_ENV):
        require_mosquitto(lambda: None)
    assert require_mosquitto(lambda: "/x/mosquitto") == "/x/mosquitto"


# -- broker ---------------------------------------------------------------------------------


def _accepts(host: str, port: int) -> bool:
    """True when a TCP connect succeeds."""
    try:
        with socket.create_connection((host, port), timeout=SHORT_TIMEOUT_S):
            return True
    except OSError:
        return False


def test_broker_start_stop_restart_kill_same_port(broker: MosquittoBroker) -> None:
    """The broker runs, restarts on the same port, dies on kill and starts again."""
    port = broker.port
    assert broker.is_running and _accepts(broker.host, port)
    assert "running" in broker.log_text()
    assert "max_queued_messages 0" in broker.config_path.read_text()
    broker.restart()
    assert broker.port == port and broker.is_running and _accepts(broker.host, port)
    assert broker.persistence_file.exists()  # saved on the graceful stop
    broker.kill()
    assert not broker.is_running and broker.pid is None
    assert not _accepts(broker.host, port)
    broker.start()
    assert broker.is_running and _accepts(broker.host, port)
    assert broker.log_text().count("=== starting mosquitto") == 3


def test_broker_start_failure_quotes_the_log(mosquitto_path: str, tmp_path: Path) -> None:
    """A broker that cannot start raises with its own error message."""
    bad = MosquittoBroker(
        extra_config=["no_such_option 1"], workdir=tmp_path, mosquitto_path=mosquitto_path
    )
    with pytest.raises(BrokerStartError, match="no_such_option"):
        bad.start()
    assert not bad.is_running
    bad.close()


def test_counting_through_the_real_broker(broker: MosquittoBroker) -> None:
    """A published sequence with a gap and a duplicate is counted as such."""
    with SeqSubscriber(broker.host, broker.port, "harness/#") as sub:
        _publish_seqs(broker.host, broker.port, "cam0", [0, 1, 1, 3, 4])
        assert sub.wait_for_count("cam0", 5, DELIVERY_TIMEOUT_S)
        assert sub.seqs("cam0") == [0, 1, 1, 3, 4]
        assert sub.missing("cam0") == [2]
        assert sub.missing("cam0", range(6)) == [2, 5]
        assert sub.duplicates("cam0") == {1: 2}
        assert sub.duplicate_count("cam0") == 1
        assert sub.in_order("cam0")
        assert sub.pipelines() == ["cam0"]
        assert len(sub.messages(DATA_TOPIC)) == 5
        assert sub.messages(DATA_TOPIC)[0].json()["label"] == "x"


def test_persistent_subscriber_gets_messages_queued_across_graceful_restart(
    broker: MosquittoBroker, proxy: TcpProxy
) -> None:
    """Messages published while the subscriber is away, before and after a restart, arrive."""
    sub = SeqSubscriber(proxy.host, proxy.port, "harness/#")  # MQTT 3.1.1 persistent session
    with sub:
        _publish_seqs(broker.host, broker.port, "cam0", range(50))
        assert sub.wait_for_seqs("cam0", range(50), DELIVERY_TIMEOUT_S)

        proxy.refuse(True)
        assert proxy.cut_all() == 1
        assert sub.wait_for(lambda: not sub.is_connected, DELIVERY_TIMEOUT_S)
        _publish_seqs(broker.host, broker.port, "cam0", range(50, 100))  # queued in its session
        broker.restart()  # graceful: the session and its queue are saved and restored
        _publish_seqs(broker.host, broker.port, "cam0", range(100, 150))  # queued again
        proxy.refuse(False)

        assert sub.wait_for_seqs("cam0", range(150), RECONNECT_TIMEOUT_S), sub.missing(
            "cam0", range(150)
        )
        assert sub.missing("cam0", range(150)) == []
        assert sub.resumed_count >= 1
        assert sub.in_order("cam0")


def test_mqtt5_session_survives_a_reconnect(broker: MosquittoBroker, proxy: TcpProxy) -> None:
    """The MQTT 5 subscriber (Session Expiry Interval) gets what was queued while away."""
    sub = SeqSubscriber(proxy.host, proxy.port, "harness/#", protocol=MQTTProtocolVersion.MQTTv5)
    with sub:
        proxy.refuse(True)
        proxy.cut_all()
        assert sub.wait_for(lambda: not sub.is_connected, DELIVERY_TIMEOUT_S)
        _publish_seqs(broker.host, broker.port, "cam1", range(20))
        proxy.refuse(False)
        assert sub.wait_for_seqs("cam1", range(20), RECONNECT_TIMEOUT_S)
        assert sub.resumed_count >= 1 and sub.connect_count >= 2


def test_retained_tracking_and_read_retained(broker: MosquittoBroker) -> None:
    """read_retained returns the retained payload or None; the v5 subscriber tracks it live."""
    host, port = broker.host, broker.port
    assert read_retained(host, port, STATUS_TOPIC) is None
    with SeqSubscriber(host, port, "harness/#", protocol=MQTTProtocolVersion.MQTTv5) as sub:
        _publish_retained(host, port, STATUS_TOPIC, b'{"state": "online"}')
        assert sub.wait_for(lambda: sub.retained(STATUS_TOPIC) is not None, DELIVERY_TIMEOUT_S)
        assert sub.retained(STATUS_TOPIC) == b'{"state": "online"}'
        assert read_retained(host, port, STATUS_TOPIC) == b'{"state": "online"}'
        assert read_retained(host, port, "harness/other") is None

        _publish_retained(host, port, STATUS_TOPIC, b"")  # clears the retained message
        assert sub.wait_for(lambda: len(sub.messages(STATUS_TOPIC)) == 2, DELIVERY_TIMEOUT_S)
        assert sub.retained(STATUS_TOPIC) is None
        assert read_retained(host, port, STATUS_TOPIC) is None


def test_password_file_refuses_anonymous(broker_factory: BrokerFactory) -> None:
    """With users, anonymous clients are refused and the right password is accepted."""
    secured = broker_factory(users={"edge": "s3cret", "ops": "other"})
    assert "allow_anonymous false" in secured.config_text()
    with pytest.raises(ConnectionError, match="refused"):
        read_retained(secured.host, secured.port, STATUS_TOPIC)
    with pytest.raises(ConnectionError, match="refused"):
        read_retained(secured.host, secured.port, STATUS_TOPIC, username="edge", password="no")
    assert (
        read_retained(secured.host, secured.port, STATUS_TOPIC, username="ops", password="other")
        is None
    )


def test_tls_listener_with_client_certificates(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """The TLS listener verifies against the generated CA and requires a client certificate."""
    tls = make_tls_files(tmp_path / "tls", require_certificate=True)
    assert tls.client_certfile is not None and tls.client_keyfile is not None
    secured = broker_factory(tls=tls)
    assert secured.tls_port is not None
    _publish_retained(secured.host, secured.port, STATUS_TOPIC, b"tls-ok")
    got = read_retained(
        secured.host,
        secured.tls_port,
        STATUS_TOPIC,
        ca_certs=str(tls.cafile),
        certfile=str(tls.client_certfile),
        keyfile=str(tls.client_keyfile),
    )
    assert got == b"tls-ok"
    with pytest.raises(ConnectionError):
        read_retained(
            secured.host, secured.tls_port, STATUS_TOPIC, SHORT_TIMEOUT_S, ca_certs=str(tls.cafile)
        )


# -- proxy ----------------------------------------------------------------------------------


def test_proxy_cut_makes_a_paho_client_reconnect(broker: MosquittoBroker, proxy: TcpProxy) -> None:
    """cut_all resets the connection; paho notices, reconnects, and traffic flows again."""
    with SeqSubscriber(broker.host, broker.port, "harness/#") as sub:
        pub = _TrackedClient(proxy.host, proxy.port)
        try:
            assert pub.wait(lambda: pub.connects == 1, DELIVERY_TIMEOUT_S)
            assert proxy.connection_count == 1
            assert proxy.cut_all() == 1
            assert pub.wait(lambda: pub.disconnects >= 1, DELIVERY_TIMEOUT_S)
            assert pub.wait(lambda: pub.connects == 2, RECONNECT_TIMEOUT_S)
            assert proxy.connection_count == 1
            assert proxy.accepted_count == 2
            pub.publish_seq("cam0", 0)
            assert sub.wait_for_seqs("cam0", [0], DELIVERY_TIMEOUT_S)
        finally:
            pub.close()


def test_proxy_blackhole_holds_traffic_until_the_path_heals(
    broker: MosquittoBroker, proxy: TcpProxy
) -> None:
    """Nothing passes a black hole; like TCP, held bytes arrive once it lifts."""
    with SeqSubscriber(broker.host, broker.port, "harness/#") as sub:
        pub = _TrackedClient(proxy.host, proxy.port)
        try:
            assert pub.wait(lambda: pub.connects == 1, DELIVERY_TIMEOUT_S)
            pub.publish_seq("cam0", 0)
            assert sub.wait_for_seqs("cam0", [0], DELIVERY_TIMEOUT_S)

            proxy.blackhole(True)
            pub.publish_seq("cam0", 1)
            assert not sub.wait_for(lambda: sub.count("cam0") > 1, QUIET_PERIOD_S)
            assert proxy.connection_count == 1  # the connection is kept open

            proxy.blackhole(False)
            assert sub.wait_for_seqs("cam0", [1], DELIVERY_TIMEOUT_S)
            assert pub.disconnects == 0  # same TCP connection, stream intact
        finally:
            pub.close()


def test_proxy_discarding_blackhole_trips_the_keepalive(
    broker: MosquittoBroker, proxy: TcpProxy
) -> None:
    """Discarded bytes: paho's keepalive notices; after the hole, a new connection works."""
    with SeqSubscriber(broker.host, broker.port, "harness/#") as sub:
        pub = _TrackedClient(proxy.host, proxy.port, keepalive_s=KEEPALIVE_S)
        try:
            assert pub.wait(lambda: pub.connects == 1, DELIVERY_TIMEOUT_S)
            proxy.blackhole(True, discard=True)
            pub.publish_seq("cam0", 0)
            assert pub.wait(lambda: pub.disconnects >= 1, KEEPALIVE_DETECT_TIMEOUT_S)
            assert sub.count("cam0") == 0
            assert pub.connects == 1  # reconnects are swallowed by the hole too

            proxy.blackhole(False)
            assert pub.wait(lambda: pub.connects >= 2, RECONNECT_TIMEOUT_S)
            pub.publish_seq("cam0", 1)
            assert sub.wait_for_seqs("cam0", [1], DELIVERY_TIMEOUT_S)
        finally:
            pub.close()


def test_proxy_pause_accept_refuse_and_target_down(
    broker: MosquittoBroker, proxy: TcpProxy
) -> None:
    """Paused: connects hang; refusing: reset; target down: reset; otherwise it forwards."""
    assert read_retained(proxy.host, proxy.port, STATUS_TOPIC) is None

    proxy.pause_accept(True)
    with pytest.raises(TimeoutError):
        read_retained(proxy.host, proxy.port, STATUS_TOPIC, SHORT_TIMEOUT_S)
    proxy.pause_accept(False)
    assert read_retained(proxy.host, proxy.port, STATUS_TOPIC) is None

    proxy.refuse(True)
    with pytest.raises(ConnectionError):
        read_retained(proxy.host, proxy.port, STATUS_TOPIC, SHORT_TIMEOUT_S)
    assert proxy.refused_count >= 1
    proxy.refuse(False)

    broker.stop()
    with pytest.raises(ConnectionError):
        read_retained(proxy.host, proxy.port, STATUS_TOPIC, SHORT_TIMEOUT_S)
    broker.start()
    assert read_retained(proxy.host, proxy.port, STATUS_TOPIC) is None


def test_proxy_delay_adds_latency(broker: MosquittoBroker, proxy: TcpProxy) -> None:
    """set_delay holds every chunk for the given time."""
    delay_s = 0.1
    proxy.set_delay(delay_s)
    started = time.monotonic()
    assert read_retained(proxy.host, proxy.port, STATUS_TOPIC) is None
    # CONNECT/CONNACK and two SUBSCRIBE/SUBACK round trips, each delayed both ways.
    assert time.monotonic() - started >= 3 * 2 * delay_s


def test_proxy_close_leaks_no_threads_or_fds(broker: MosquittoBroker) -> None:
    """After close, the proxy's thread and every socket it opened are gone."""
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    with TcpProxy(broker.host, broker.port) as proxy:
        for _ in range(3):
            assert read_retained(proxy.host, proxy.port, STATUS_TOPIC) is None
        idle = socket.create_connection((proxy.host, proxy.port))
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while proxy.connection_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.connection_count == 1  # left open on purpose: close() must reset it
        idle.close()
    assert set(threading.enumerate()) - threads_before == set()
    assert _open_fds() - fds_before == set()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.cut_all()
