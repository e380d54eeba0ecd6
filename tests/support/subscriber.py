"""An independent QoS 1 subscriber that counts sequence numbers per pipeline.

Payloads are JSON objects; those with a string ``pipeline`` and an integer ``seq`` are
recorded per pipeline in arrival order, so loss (:meth:`SeqSubscriber.missing`), duplication
(:meth:`SeqSubscriber.duplicates`) and ordering (:meth:`SeqSubscriber.in_order`) can be
counted. The session is persistent (MQTT 3.1.1 with ``clean_session=False`` and a fixed client
id, or MQTT 5 with a Session Expiry Interval), so messages the broker queued while the
subscriber was away arrive when it reconnects, which paho does by itself.

Mosquitto 2.0.11 (Debian 12) restores a persistent MQTT 3.1.1 session after a graceful restart
with persistence on, but not an MQTT 5 one (CONNACK says no session, whatever the expiry
interval); hence 3.1.1 is the default. Use MQTT 5 for Retain As Published (see
:meth:`SeqSubscriber.retained`) when the broker is not restarted.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

DEFAULT_SESSION_EXPIRY_S = 3600
"""MQTT 5 Session Expiry Interval: how long the broker keeps the session while we are away."""
DEFAULT_KEEPALIVE_S = 10
"""MQTT keepalive of the subscriber connection."""
START_TIMEOUT_S = 10.0
"""How long :meth:`SeqSubscriber.start` waits for CONNACK and SUBACK."""
STOP_TIMEOUT_S = 5.0
"""How long :meth:`SeqSubscriber.stop` waits for the network thread."""
RECONNECT_MIN_DELAY_S = 1
"""paho's first reconnect delay (paho takes whole seconds)."""
RECONNECT_MAX_DELAY_S = 2
"""paho's reconnect delay cap."""
READ_RETAINED_TIMEOUT_S = 5.0
"""Default total timeout of :func:`read_retained`."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the subscriber received it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    received_at: float
    """time.monotonic() at arrival."""
    pipeline: str | None
    seq: int | None

    def json(self) -> Any:
        """Decode the payload as JSON."""
        return json.loads(self.payload)


# -- pure sequence analysis (unit-testable without a broker) -------------------------------


def missing_seqs(seqs: Iterable[int], expected: range | None = None) -> list[int]:
    """Sequence numbers never received: of ``expected``, or between the min and max seen."""
    seen = set(seqs)
    if expected is None:
        if not seen:
            return []
        expected = range(min(seen), max(seen) + 1)
    return [seq for seq in expected if seq not in seen]


def duplicate_seqs(seqs: Iterable[int]) -> dict[int, int]:
    """Map each sequence number received more than once to how often it was received."""
    return {seq: n for seq, n in sorted(Counter(seqs).items()) if n > 1}


def duplicate_total(seqs: Iterable[int]) -> int:
    """Number of surplus receptions (total received minus distinct)."""
    return sum(n - 1 for n in duplicate_seqs(seqs).values())


def seqs_in_order(seqs: Sequence[int], *, ignore_duplicates: bool = True) -> bool:
    """True when sequence numbers arrived strictly increasing.

    With ``ignore_duplicates`` a repeat of an already received number (a QoS 1 redelivery)
    is skipped; otherwise any repeat also breaks the order.
    """
    seen: set[int] = set()
    last: int | None = None
    for seq in seqs:
        if ignore_duplicates and seq in seen:
            continue
        if last is not None and seq <= last:
            return False
        seen.add(seq)
        last = seq
    return True


def _parse_seq(payload: bytes, pipeline_key: str, seq_key: str) -> tuple[str | None, int | None]:
    """Extract (pipeline, seq) from a JSON payload, or (None, None)."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    pipeline = data.get(pipeline_key)
    seq = data.get(seq_key)
    if not isinstance(pipeline, str) or not isinstance(seq, int) or isinstance(seq, bool):
        return None, None
    return pipeline, seq


def _new_client(
    client_id: str,
    protocol: MQTTProtocolVersion,
    *,
    clean_session: bool | None,
    username: str | None,
    password: str | None,
    ca_certs: str | None,
    certfile: str | None,
    keyfile: str | None,
    reconnect_on_failure: bool,
) -> Client:
    """Create a paho 2 client with credentials and TLS applied."""
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=protocol,
        reconnect_on_failure=reconnect_on_failure,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if ca_certs is not None:
        client.tls_set(ca_certs=ca_certs, certfile=certfile, keyfile=keyfile)
    return client


class SeqSubscriber:
    """Persistent-session QoS 1 subscriber recording ``seq`` per ``pipeline``; thread-safe."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filters: str | Sequence[str] = "#",
        *,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        qos: int = 1,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        pipeline_key: str = "pipeline",
        seq_key: str = "seq",
    ) -> None:
        """Prepare the client; :meth:`start` connects.

        ``protocol`` is MQTTv311 (``clean_session=False``; the session survives a graceful
        mosquitto restart) or MQTTv5 (session kept ``session_expiry_s`` seconds; survives
        reconnects, not a mosquitto 2.0.11 restart). With MQTT 5 the subscription uses Retain
        As Published, so :meth:`retained` follows live retained publishes too; with 3.1.1 the
        broker clears the retain flag on live messages and :meth:`retained` sees only the
        replay at subscribe time (use :func:`read_retained` for the current value).
        """
        if protocol not in (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311):
            raise ValueError("protocol must be MQTTv5 or MQTTv311")
        self._host = host
        self._port = port
        self._filters = [topic_filters] if isinstance(topic_filters, str) else list(topic_filters)
        if not self._filters:
            raise ValueError("at least one topic filter is needed")
        self._client_id = client_id or f"seqsub-{uuid.uuid4().hex[:12]}"
        self._protocol = protocol
        self._session_expiry_s = session_expiry_s
        self._qos = qos
        self._keepalive_s = keepalive_s
        self._pipeline_key = pipeline_key
        self._seq_key = seq_key
        self._cond = threading.Condition(threading.RLock())
        self._messages: list[ReceivedMessage] = []
        self._seqs: dict[str, list[int]] = {}
        self._retained: dict[str, bytes | None] = {}
        self._connected = False
        self._subscribed = False
        self._ever_subscribed = False
        self._connect_count = 0
        self._disconnect_count = 0
        self._resumed_count = 0
        self._last_error: str | None = None
        self._started = False
        v5 = protocol == MQTTProtocolVersion.MQTTv5
        self._client = _new_client(
            self._client_id,
            protocol,
            clean_session=None if v5 else False,
            username=username,
            password=password,
            ca_certs=ca_certs,
            certfile=certfile,
            keyfile=keyfile,
            reconnect_on_failure=True,
        )
        self._client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Connect and wait until subscribed (or the session already holds the subscription).

        May be called again after :meth:`stop` to resume the same session.
        """
        if self._started:
            raise RuntimeError("subscriber already started")
        self._started = True
        properties: Properties | None = None
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_async(
            self._host, self._port, keepalive=self._keepalive_s, properties=properties
        )
        self._client.loop_start()
        if not self.wait_ready(timeout_s):
            error = self.last_error
            self.stop()
            raise TimeoutError(
                f"subscriber {self._client_id} not subscribed to {self._filters} on "
                f"{self._host}:{self._port} within {timeout_s} s (last error: {error})"
            )

    def stop(self) -> None:
        """Disconnect (the broker keeps the session) and join the network thread."""
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        with self._cond:
            self._connected = False
            self._subscribed = False
            self._cond.notify_all()

    def __enter__(self) -> SeqSubscriber:
        """Start unless started."""
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop."""
        self.stop()

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Subscribe unless the broker resumed a session that already has the subscription."""
        with self._cond:
            if reason_code.is_failure:
                self._last_error = f"CONNACK refused: {reason_code}"
                self._cond.notify_all()
                return
            self._connected = True
            self._connect_count += 1
            if flags.session_present:
                self._resumed_count += 1
            resume = flags.session_present and self._ever_subscribed
            self._subscribed = resume
            self._cond.notify_all()
        if resume:
            return
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            options = SubscribeOptions(qos=self._qos, retainAsPublished=True)
            client.subscribe([(f, options) for f in self._filters])
        else:
            client.subscribe([(f, self._qos) for f in self._filters])

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        """Record a failed TCP/TLS connect (paho retries by itself)."""
        with self._cond:
            self._last_error = "connection failed"
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Note the disconnect; paho reconnects unless :meth:`stop` was called."""
        with self._cond:
            if self._connected:
                self._disconnect_count += 1
            self._connected = False
            self._subscribed = False
            self._last_error = f"disconnected: {reason_code}"
            self._cond.notify_all()

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """Mark the subscriber ready when every filter was granted."""
        with self._cond:
            refused = [str(rc) for rc in reason_codes if rc.is_failure]
            if refused:
                self._last_error = f"SUBACK refused: {refused}"
            else:
                self._subscribed = True
                self._ever_subscribed = True
            self._cond.notify_all()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        """Record the message and its (pipeline, seq)."""
        payload = bytes(message.payload)
        pipeline, seq = _parse_seq(payload, self._pipeline_key, self._seq_key)
        record = ReceivedMessage(
            topic=message.topic,
            payload=payload,
            qos=message.qos,
            retain=bool(message.retain),
            dup=bool(message.dup),
            received_at=time.monotonic(),
            pipeline=pipeline,
            seq=seq,
        )
        with self._cond:
            self._messages.append(record)
            if pipeline is not None and seq is not None:
                self._seqs.setdefault(pipeline, []).append(seq)
            if record.retain:
                self._retained[record.topic] = payload or None
            self._cond.notify_all()

    # -- waiting ----------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` is true (re-checked on every event); False on timeout.

        ``predicate`` may call this subscriber's query methods.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until connected and subscribed."""
        return self.wait_for(lambda: self._connected and self._subscribed, timeout_s)

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected."""
        return self.wait_for(lambda: self._connected, timeout_s)

    def wait_for_seqs(self, pipeline: str, expected: Iterable[int], timeout_s: float) -> bool:
        """Wait until every number in ``expected`` arrived for ``pipeline``."""
        wanted = set(expected)
        return self.wait_for(lambda: wanted <= set(self.seqs(pipeline)), timeout_s)

    def wait_for_count(self, pipeline: str, count: int, timeout_s: float) -> bool:
        """Wait until ``pipeline`` received at least ``count`` messages (duplicates count)."""
        return self.wait_for(lambda: self.count(pipeline) >= count, timeout_s)

    # -- queries ----------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """MQTT client id (fixed for the session)."""
        return self._client_id

    @property
    def is_connected(self) -> bool:
        """True while connected (CONNACK accepted)."""
        with self._cond:
            return self._connected

    @property
    def connect_count(self) -> int:
        """Successful connects so far (the first one included)."""
        with self._cond:
            return self._connect_count

    @property
    def disconnect_count(self) -> int:
        """Lost or closed connections so far."""
        with self._cond:
            return self._disconnect_count

    @property
    def resumed_count(self) -> int:
        """Connects where the broker reported a present session."""
        with self._cond:
            return self._resumed_count

    @property
    def last_error(self) -> str | None:
        """Last connection problem seen, for error messages."""
        with self._cond:
            return self._last_error

    def pipelines(self) -> list[str]:
        """Pipelines seen so far, sorted."""
        with self._cond:
            return sorted(self._seqs)

    def seqs(self, pipeline: str) -> list[int]:
        """Sequence numbers of ``pipeline`` in arrival order (duplicates included)."""
        with self._cond:
            return list(self._seqs.get(pipeline, ()))

    def count(self, pipeline: str) -> int:
        """Messages received for ``pipeline`` (duplicates included)."""
        with self._cond:
            return len(self._seqs.get(pipeline, ()))

    def missing(self, pipeline: str, expected: range | None = None) -> list[int]:
        """Sequence numbers not received: of ``expected``, or between min and max seen."""
        return missing_seqs(self.seqs(pipeline), expected)

    def duplicates(self, pipeline: str) -> dict[int, int]:
        """Sequence numbers received more than once, with their reception counts."""
        return duplicate_seqs(self.seqs(pipeline))

    def duplicate_count(self, pipeline: str) -> int:
        """Surplus receptions for ``pipeline`` (total minus distinct)."""
        return duplicate_total(self.seqs(pipeline))

    def in_order(self, pipeline: str, *, ignore_duplicates: bool = True) -> bool:
        """True when ``pipeline``'s sequence numbers arrived strictly increasing."""
        return seqs_in_order(self.seqs(pipeline), ignore_duplicates=ignore_duplicates)

    def retained(self, topic: str) -> bytes | None:
        """Payload of the last message on ``topic`` that carried the retain flag.

        None when none arrived or the retained message was cleared (empty payload).
        """
        with self._cond:
            return self._retained.get(topic)

    def messages(self, topic: str | None = None) -> list[ReceivedMessage]:
        """Messages received (on ``topic``, or on any topic), in arrival order."""
        with self._cond:
            if topic is None:
                return list(self._messages)
            return [m for m in self._messages if m.topic == topic]

    def __repr__(self) -> str:
        """Show id, filters and state."""
        state = "connected" if self.is_connected else "disconnected"
        return f"SeqSubscriber({self._client_id}, {self._filters}, {state})"


def read_retained(
    host: str,
    port: int,
    topic: str,
    timeout_s: float = READ_RETAINED_TIMEOUT_S,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> bytes | None:
    """Return the message retained on ``topic`` (or None when there is none).

    Connects with a clean session, subscribes, and after the SUBACK of a second, barrier
    subscription (which the broker answers only after it sent the retained message of the
    first) disconnects. Raises ConnectionError when refused, TimeoutError on timeout.
    """
    barrier = f"edge-runtime-test/barrier/{uuid.uuid4().hex}"
    done = threading.Event()
    state: dict[str, Any] = {"payload": None, "error": None, "subacks": 0}
    client = _new_client(
        f"read-retained-{uuid.uuid4().hex[:12]}",
        MQTTProtocolVersion.MQTTv311,
        clean_session=True,
        username=username,
        password=password,
        ca_certs=ca_certs,
        certfile=certfile,
        keyfile=keyfile,
        reconnect_on_failure=False,
    )

    def on_connect(
        c: Client, _u: Any, _f: ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            state["error"] = f"CONNACK refused: {rc}"
            done.set()
            return
        c.subscribe(topic, qos=0)

    def on_subscribe(
        c: Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(rc.is_failure for rc in codes):
            state["error"] = f"SUBACK refused: {[str(rc) for rc in codes]}"
            done.set()
            return
        state["subacks"] += 1
        if state["subacks"] == 1:
            c.subscribe(barrier, qos=0)
        else:
            done.set()

    def on_message(_c: Client, _u: Any, message: MQTTMessage) -> None:
        if message.retain and topic_matches_sub(topic, message.topic) and state["payload"] is None:
            state["payload"] = bytes(message.payload)

    def on_disconnect(
        _c: Client, _u: Any, _f: DisconnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if not done.is_set():
            state["error"] = f"disconnected: {rc}"
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect_timeout = timeout_s
    try:
        client.connect(host, port, keepalive=DEFAULT_KEEPALIVE_S)
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise TimeoutError(f"no SUBACK for {topic!r} from {host}:{port} within {timeout_s} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if state["error"] is not None:
        raise ConnectionError(f"{host}:{port}: {state['error']}")
    payload: bytes | None = state["payload"]
    return payload
