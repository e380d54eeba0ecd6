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
OFFLINE_ACK_TIMEOUT_S = 1.0  # how long the goodbye waits for the broker to take "offline"
STABLE_CONNECTION_S = 10.0  # a connection this old resets the backoff
STATUS_SLOTS = 2  # in-flight slots kept free for the QoS 1 status and stats messages
REJECTED_LOG_INTERVAL_S = 30.0
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
CREDENTIALS_HINT = " (check mqtt.username and mqtt.password or mqtt.password_file)"
REFUSAL_HINTS = {0x86: CREDENTIALS_HINT, 0x87: CREDENTIALS_HINT,  # bad credentials, not authorized
                 0x85: " (check mqtt.client_id)"}  # client identifier not valid
TLS_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
MessageHandler = Callable[[str, bytes], None]


@dataclass
class LinkStatus:
    """What the link is doing, for health, stats and the CLI."""

    state: LinkStateName = "connecting"
    reason: str = ""
    since: float = field(default_factory=time.time)
    attempts: int = 0  # connection attempts (TCP/TLS/CONNECT), successful or not
    connects: int = 0
    disconnects: int = 0
    sent: int = 0
    acked: int = 0
    rejected: int = 0  # the broker refused a publish (MQTT 5 reason >= 0x80): counted as drop

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": round(self.since, 3),
                "attempts": self.attempts, "connects": self.connects,
                "reconnects": max(0, self.connects - 1), "disconnects": self.disconnects,
                "sent": self.sent, "acked": self.acked, "rejected": self.rejected}


@dataclass
class _Session:
    """Per-connection bookkeeping: what was sent and not yet acknowledged."""

    window: int  # outbox messages allowed in flight on this connection
    inflight: dict[int, int] = field(default_factory=dict)  # paho mid -> outbox row id
    cursor: int = 0  # highest outbox id sent on this connection
    backlog: bool = True  # the outbox may hold more after ``cursor``
    acked_ids: list[int] = field(default_factory=list)
    rejected_ids: list[int] = field(default_factory=list)
    last_rejection: str = ""
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
        self._enqueued = threading.Event()  # the outbox got a message since the last fetch
        self._drain_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s)
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._unsent_subscriptions: set[str] = set()  # added while connected
        self._retained: dict[str, bytes] = {}  # topic -> latest payload not yet sent
        self._lock = threading.Lock()
        self._session = _Session(window=config.outbox.max_inflight)
        self._last_rejected_log = 0.0
        self._rejected_since_log = 0
        self._last_logged: tuple[str, str] = ("", "")
        outbox.add_listener(self._enqueued.set)

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

    def stop(self, drain_timeout_s: float, timeout_s: float | None = None) -> bool:
        """Give unacknowledged messages up to ``drain_timeout_s`` to be acknowledged, publish
        ``offline``, disconnect; wait at most ``timeout_s`` for all that (default: long enough
        for a blocking connect too). Whatever is unsent stays in the outbox. False when the
        thread is still busy (a blocking connect)."""
        self._drain_deadline = time.monotonic() + max(0.0, drain_timeout_s)
        self._stop.set()
        if timeout_s is None:
            timeout_s = drain_timeout_s + CONNECT_TIMEOUT_S + OFFLINE_ACK_TIMEOUT_S + 1.0
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))
        self._set_state("stopped", "shut down")
        return self._thread is None or not self._thread.is_alive()

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
            try:
                self._connect_and_serve()
            except Exception as err:  # a bug or a library surprise must not end publishing
                log.exception("mqtt: unexpected error in the broker link")
                self._set_state("disconnected", f"internal error: {err!r}")
            if self._stop.is_set():
                break
            if time.monotonic() - started >= STABLE_CONNECTION_S:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.debug("mqtt: reconnecting in %.2f s", delay)
            self._stop.wait(delay)

    def _connect_and_serve(self) -> None:
        session = _Session(window=self.config.outbox.max_inflight)
        with self._lock:
            self._session = session
        if self.status.state != "refused":
            self._set_state("connecting", f"{self.mqtt.host}:{self.mqtt.port}")
        self.status.attempts += 1
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
            self._settle(session)
            self.outbox.release(session.inflight.values())
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
            self._settle(session)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or session.refused:
                if session.connected:
                    self._on_lost(session, mqtt.error_string(rc))
                return

    def _settle(self, session: _Session) -> None:
        """Apply the acknowledgements collected by the callbacks to the outbox."""
        if session.acked_ids:
            self.outbox.delete(session.acked_ids)
            session.acked_ids = []
        if session.rejected_ids:
            self.outbox.reject(session.rejected_ids)
            self._rejected_since_log += len(session.rejected_ids)
            session.rejected_ids = []
            now = time.monotonic()
            if now - self._last_rejected_log >= REJECTED_LOG_INTERVAL_S:
                log.error("mqtt: the broker rejected %d message(s) (last: %s); they are "
                          "removed from the outbox and counted as dropped",
                          self._rejected_since_log, session.last_rejection)
                self._last_rejected_log, self._rejected_since_log = now, 0

    def _drained_or_late(self, session: _Session) -> bool:
        if not session.connected:
            return True
        late = self._drain_deadline is not None and time.monotonic() >= self._drain_deadline
        return late or (not session.inflight and self.outbox.stats.depth == 0)

    def _pump(self, client: mqtt.Client, session: _Session) -> bool:
        """Publish the next outbox messages within the in-flight window; True if any."""
        if not session.connected:
            return False
        room = session.window - len(session.inflight)
        if room <= 0 or not (session.backlog or self._enqueued.is_set()):
            return False
        self._enqueued.clear()  # before the fetch: an enqueue after it sets it again
        messages = self.outbox.claim(session.cursor, room)
        session.backlog = len(messages) == room
        for index, message in enumerate(messages):
            info = client.publish(message.topic, message.payload, qos=message.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # disconnected meanwhile: the loop notices and reconnects
                self.outbox.release(m.id for m in messages[index:])
                return False
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
            deadline = time.monotonic() + OFFLINE_ACK_TIMEOUT_S
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(timeout=IDLE_LOOP_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            client.disconnect()
            client.loop(timeout=IDLE_LOOP_S)

    # --- paho callbacks (run on this thread, inside client.loop) ---------------------------

    def _new_client(self, session: _Session) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id(),
                             protocol=mqtt.MQTTv5)
        client.connect_timeout = min(CONNECT_TIMEOUT_S, float(self.mqtt.keepalive_s))
        client.max_inflight_messages_set(session.window + STATUS_SLOTS)
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        # The callbacks use the client they are given, not this one: no reference cycle, so
        # a dropped client is freed (and its sockets closed) at once.

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                       properties: Properties | None) -> None:
            if reason.is_failure:
                session.refused = True
                hint = REFUSAL_HINTS.get(reason.value, "")
                self._set_state("refused", f"broker refused the connection: {reason}{hint}")
                return
            receive_maximum = getattr(properties, "ReceiveMaximum", None)
            if isinstance(receive_maximum, int) and receive_maximum > 0:
                # MQTT 5: never more QoS 1/2 publishes in flight than the broker accepts
                # (paho ignores Receive Maximum and cannot change its own limit once
                # connected, so our window enforces it).
                session.window = max(1, min(session.window, receive_maximum - STATUS_SLOTS))
            session.connected = True
            self.status.connects += 1
            c.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
            with self._lock:
                subscriptions = dict(self._subscriptions)
                self._unsent_subscriptions.clear()
            for topic, (qos, _handler) in subscriptions.items():
                c.subscribe(topic, qos)
            self._set_state("connected", f"{self.mqtt.host}:{self.mqtt.port}")
            log.info("mqtt: %d message(s) waiting in the outbox, up to %d in flight",
                     self.outbox.stats.depth, session.window)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                          _p: Properties | None) -> None:
            if session.connected:
                self._on_lost(session, str(reason))

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode,
                       _p: Properties | None) -> None:
            # QoS 1: PUBACK; QoS 2: PUBCOMP (paho calls this once, at the end of the flow);
            # QoS 0: written to the socket (the "may lose" QoS).
            row_id = session.inflight.pop(mid, None)
            if row_id is None:
                return  # a status message, not from the outbox
            if reason.is_failure:
                self.status.rejected += 1
                session.rejected_ids.append(row_id)
                session.last_rejection = str(reason)
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
        unacknowledged = len(session.inflight)
        self._set_state("disconnected", f"connection lost: {reason}", quiet=True)
        if not self._stop.is_set():
            log.warning("mqtt: connection to %s:%d lost (%s); %d unacknowledged message(s) "
                        "will be sent again", self.mqtt.host, self.mqtt.port, reason,
                        unacknowledged)

    def _set_state(self, state: LinkStateName, reason: str, *, quiet: bool = False) -> None:
        """Record the state; log it when it changed (the same failure repeated is logged
        once, not at every attempt)."""
        with self._lock:
            if self.status.state != state:
                self.status.since = time.time()
            self.status.state = state
            self.status.reason = reason
        if quiet or state in ("connecting", "stopped") or (state, reason) == self._last_logged:
            return
        self._last_logged = (state, reason)
        if state == "connected":
            log.info("mqtt: connected to %s", reason)
        elif state == "refused":
            log.error("mqtt: %s:%d: %s", self.mqtt.host, self.mqtt.port, reason)
        elif state == "disconnected":
            log.warning("mqtt: %s; retrying with backoff", reason)


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
    """Close the socket and paho's wake-up socket pair now (paho leaves them to __del__;
    with one client per connection, waiting for the garbage collector would pile up fds)."""
    client._reset_sockets()
