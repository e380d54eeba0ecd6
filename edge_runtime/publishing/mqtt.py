"""The broker link: one thread that owns the MQTT connection and drains the outbox.

Why one thread: paho's client is driven with ``loop()`` from the same thread that
publishes, so acknowledgements, publishes and reconnects never race. A fresh paho client
is made for every connection, so paho's in-memory session never resends on its own: the
outbox is the only source of truth, replayed oldest first after every (re)connect.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.backoff import Backoff
from edge_runtime.config.schema import Config, MqttConfig
from edge_runtime.publishing.outbox import Outbox

log = logging.getLogger(__name__)

LinkStateName = Literal["connecting", "connected", "disconnected", "refused", "stopped"]
IDLE_LOOP_S = 0.01  # longest wait for network events when there is nothing to send
CONNECT_TIMEOUT_S = 5.0
STABLE_CONNECTION_S = 10.0  # a connection this old resets the backoff
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
TLS_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
MessageHandler = Callable[[str, bytes], None]


@dataclass
class LinkStatus:
    """What the link is doing, for health, stats and the CLI."""

    state: LinkStateName = "connecting"
    reason: str = ""
    since: float = field(default_factory=time.time)
    connects: int = 0
    disconnects: int = 0
    sent: int = 0
    acked: int = 0
    rejected: int = 0  # the broker refused a publish (MQTT 5 reason >= 0x80): deleted, logged

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": round(self.since, 3),
                "connects": self.connects, "reconnects": max(0, self.connects - 1),
                "disconnects": self.disconnects, "sent": self.sent, "acked": self.acked,
                "rejected": self.rejected}


@dataclass
class _Session:
    """Per-connection bookkeeping: what was sent and not yet acknowledged."""

    inflight: dict[int, int] = field(default_factory=dict)  # paho mid -> outbox row id
    cursor: int = 0  # highest outbox id sent on this connection
    acked_ids: list[int] = field(default_factory=list)
    connected: bool = False
    refused: bool = False


class MqttLink:
    """Connects (with backoff and jitter), publishes the outbox in order, reports state."""

    def __init__(self, config: Config, outbox: Outbox) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.outbox = outbox
        self.status = LinkStatus()
        self.status_topic = config.status_topic()
        self._stop = threading.Event()
        self._drain_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s)
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._unsent_subscriptions: set[str] = set()  # added while connected
        self._lock = threading.Lock()
        self._session = _Session()
        self._retained: dict[str, bytes] = {}  # topic -> latest payload not yet sent

    # --- public -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def subscribe(self, topic: str, qos: int, handler: MessageHandler) -> None:
        """Subscribe now and after every reconnect; ``handler(topic, payload)``."""
        with self._lock:
            self._subscriptions[topic] = (qos, handler)
            self._unsent_subscriptions.add(topic)

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained QoS 1 side message (stats) from the link thread, outside the
        outbox: it takes no seq. Only the latest payload per topic is kept; it waits for a
        connection and is not resent if that connection drops before the ack."""
        with self._lock:
            self._retained[topic] = payload

    def stop(self, drain_timeout_s: float) -> None:
        """Give unacknowledged messages up to ``drain_timeout_s`` to be acknowledged, publish
        ``offline``, disconnect. Whatever is unsent stays in the outbox."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(drain_timeout_s + CONNECT_TIMEOUT_S + 2.0)
        self._set_state("stopped", "shut down")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = self.status.as_dict()
            data["inflight"] = len(self._session.inflight)
        return data

    @property
    def connected(self) -> bool:
        return self.status.state == "connected"

    @property
    def alive(self) -> bool:
        """The link thread runs (it keeps running, and retrying, while the broker is down)."""
        return self._thread is not None and self._thread.is_alive()

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._connect_and_serve()
            if self._stop.is_set():
                break
            if time.monotonic() - started >= STABLE_CONNECTION_S:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.debug("mqtt: reconnecting in %.2f s", delay)
            self._stop.wait(delay)

    def _connect_and_serve(self) -> None:
        session = _Session()
        with self._lock:
            self._session = session
        if self.status.state != "refused":
            self._set_state("connecting", f"{self.mqtt.host}:{self.mqtt.port}")
        client = self._new_client(session)
        try:
            try:
                configure_security(client, self.mqtt)
                client.connect(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s,
                               clean_start=True)
            except (OSError, ssl.SSLError, ValueError) as err:
                self._set_state("disconnected",
                                describe_connect_error(err, self.mqtt.host, self.mqtt.port))
                return
            self._serve(client, session)
        finally:
            close_client(client)

    def _serve(self, client: mqtt.Client, session: _Session) -> None:
        while True:
            stopping = self._stop.is_set()
            if stopping and self._drained_or_late(session):
                self._say_goodbye(client, session)
                return
            if self._retained and session.connected:
                self._send_retained(client)
            if self._unsent_subscriptions and session.connected:
                self._send_subscriptions(client)
            rc = client.loop(timeout=0.0 if self._pump(client, session) else IDLE_LOOP_S)
            if session.acked_ids:
                self.outbox.delete(session.acked_ids)
                session.acked_ids = []
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or session.refused:
                if session.connected:
                    self._on_lost(session, mqtt.error_string(rc))
                return

    def _drained_or_late(self, session: _Session) -> bool:
        if not session.connected:
            return True
        late = self._drain_deadline is not None and time.monotonic() >= self._drain_deadline
        return late or (not session.inflight and self.outbox.stats.depth == 0)

    def _pump(self, client: mqtt.Client, session: _Session) -> bool:
        """Publish the next outbox messages within the in-flight window; True if any."""
        if not session.connected:
            return False
        room = self.config.outbox.max_inflight - len(session.inflight)
        if room <= 0:
            return False
        messages = self.outbox.fetch_after(session.cursor, room)
        for message in messages:
            info = client.publish(message.topic, message.payload, qos=message.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False  # disconnected meanwhile: the loop notices and reconnects
            session.inflight[info.mid] = message.id
            session.cursor = message.id
            self.status.sent += 1
        return bool(messages)

    def _send_subscriptions(self, client: mqtt.Client) -> None:
        with self._lock:
            topics, self._unsent_subscriptions = self._unsent_subscriptions, set()
            wanted = [(t, self._subscriptions[t][0]) for t in topics]
        for topic, qos in wanted:
            client.subscribe(topic, qos)

    def _send_retained(self, client: mqtt.Client) -> None:
        with self._lock:
            pending, self._retained = self._retained, {}
        for topic, payload in pending.items():
            client.publish(topic, payload, qos=1, retain=True)

    def _say_goodbye(self, client: mqtt.Client, session: _Session) -> None:
        """Publish retained offline (waiting briefly for its ack), then disconnect."""
        if session.connected:
            info = client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(timeout=IDLE_LOOP_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            client.disconnect()
            client.loop(timeout=IDLE_LOOP_S)
        if session.acked_ids:
            self.outbox.delete(session.acked_ids)

    # --- paho callbacks (run on this thread, inside client.loop) ---------------------------

    def _new_client(self, session: _Session) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id(),
                             protocol=mqtt.MQTTv5)
        client.connect_timeout = min(CONNECT_TIMEOUT_S, float(self.mqtt.keepalive_s))
        client.max_inflight_messages_set(self.config.outbox.max_inflight)
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                       _p: Properties | None) -> None:
            if reason.is_failure:
                session.refused = True
                self._set_state("refused", f"broker refused the connection: {reason}")
                log.error("mqtt: %s:%d refused the connection: %s", self.mqtt.host,
                          self.mqtt.port, reason)
                return
            session.connected = True
            self.status.connects += 1
            client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
            with self._lock:
                subscriptions = dict(self._subscriptions)
                self._unsent_subscriptions.clear()
            for topic, (qos, _handler) in subscriptions.items():
                client.subscribe(topic, qos)
            self._set_state("connected", f"{self.mqtt.host}:{self.mqtt.port}")
            log.info("mqtt: connected to %s:%d; %d message(s) waiting in the outbox",
                     self.mqtt.host, self.mqtt.port, self.outbox.stats.depth)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                          _p: Properties | None) -> None:
            if session.connected:
                self._on_lost(session, str(reason))

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode,
                       _p: Properties | None) -> None:
            row_id = session.inflight.pop(mid, None)
            if row_id is None:
                return  # a status message, not from the outbox
            if reason.is_failure:
                self.status.rejected += 1
                log.error("mqtt: broker rejected outbox message %d: %s (deleted)", row_id, reason)
            else:
                self.status.acked += 1
            session.acked_ids.append(row_id)

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            with self._lock:
                handlers = [h for t, (_q, h) in self._subscriptions.items()
                            if mqtt.topic_matches_sub(t, message.topic)]
            for handler in handlers:
                try:
                    handler(message.topic, bytes(message.payload))
                except Exception:
                    log.exception("mqtt: handler for %s failed", message.topic)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        return client

    def _on_lost(self, session: _Session, reason: str) -> None:
        session.connected = False
        self.status.disconnects += 1
        self._set_state("disconnected", f"connection lost: {reason}")
        if self._stop.is_set():
            return
        log.warning("mqtt: connection to %s:%d lost (%s); %d message(s) unacknowledged will be "
                    "sent again", self.mqtt.host, self.mqtt.port, reason, len(session.inflight))

    def _set_state(self, state: LinkStateName, reason: str) -> None:
        with self._lock:
            if self.status.state != state:
                self.status.since = time.time()
            self.status.state = state
            self.status.reason = reason


def configure_security(client: mqtt.Client, config: MqttConfig) -> None:
    """Credentials and TLS from the config (the daemon's link and ``doctor`` share this).
    Raises OSError when a credential or TLS file cannot be read."""
    if config.username is not None:
        password = (config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
                    if config.password_file is not None else config.password)
        client.username_pw_set(config.username, password)
    tls = config.tls
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        if tls.version:
            context.minimum_version = TLS_VERSIONS[tls.version]
        if tls.insecure:
            context.check_hostname = False
        client.tls_set_context(context)


def describe_connect_error(err: BaseException, host: str, port: int) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host}:{port} not trusted: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return f"TLS error with {host}:{port}: {err.reason or err}"
    if isinstance(err, FileNotFoundError):
        return f"TLS/credential file missing: {err.filename}"
    if isinstance(err, ConnectionRefusedError):
        return f"no broker listening on {host}:{port} (connection refused)"
    if isinstance(err, TimeoutError):
        return f"broker {host}:{port} did not answer within {CONNECT_TIMEOUT_S:.0f} s"
    return f"cannot connect to {host}:{port}: {err}"


def close_client(client: mqtt.Client) -> None:
    """Close the socket and paho's wake-up socket pair (paho leaves them to __del__)."""
    client._reset_sockets()
