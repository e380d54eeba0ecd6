"""The built-in doctor checks, in the order they run.

Each reads the device or the configured things without starting the daemon. The judgements
(``judge_*``, ``decode_throttled``) are pure and unit-tested; the rest is thin I/O.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_runtime.config.schema import CameraSource, Config, PipeSource, StreamSourceBase
from edge_runtime.doctor.registry import CheckResult, DoctorContext, check
from edge_runtime.errors import EdgeRuntimeError, SourceError
from edge_runtime.pipeline import ModelStages, resolve_threads
from edge_runtime.publishing.mqtt import close_client, configure_security, describe_connect_error
from edge_runtime.runners.accelerators import CPU_LABEL, accelerator_checks
from edge_runtime.runners.backends import REGISTRY, load_backend
from edge_runtime.sources import FrameSource, build_source

SOURCE_SAMPLE_S = 1.0  # cameras and pipes are read this long to measure their frame rate
FPS_SHORTFALL = 0.8  # a camera below this share of its configured fps is a warning
BROKER_TIMEOUT_S = 5.0
MIN_FREE_BYTES = 64 * 1024**2  # less free space than this in the state directory fails
COMMAND_TIMEOUT_S = 3.0
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
TIME_ERROR = 5  # adjtimex(2) return value: the clock is not synchronised
# governors that keep the CPU at its lowest clock (except under the p-state drivers,
# where "powersave" still scales)
SLOW_GOVERNORS = frozenset({"powersave"})
SCALING_DRIVERS_WITH_DYNAMIC_POWERSAVE = frozenset({"intel_pstate", "amd-pstate",
                                                    "amd-pstate-epp"})
# vcgencmd get_throttled bits: (bit, what, happening now?)
THROTTLED_BITS = (
    (0, "under-voltage", True), (1, "ARM frequency capped", True),
    (2, "throttled", True), (3, "soft temperature limit", True),
    (16, "under-voltage", False), (17, "ARM frequency capped", False),
    (18, "throttled", False), (19, "soft temperature limit", False),
)


# --- interpreter and models ----------------------------------------------------------


@check("backend")
def check_backends(context: DoctorContext) -> Iterator[CheckResult]:
    for choice in sorted({p.model.backend for p in context.config.pipelines}):
        try:
            backend = load_backend(choice)
        except EdgeRuntimeError as err:
            yield CheckResult("backend", "fail", err.message, err.hint)
            continue
        package = REGISTRY[backend.name][2]
        yield CheckResult("backend", "pass", f"{backend.describe()} ({package}"
                          + (", chosen by auto" if choice == "auto" else "") + ")")


@check("accelerator")
def check_accelerators(context: DoctorContext) -> Iterator[CheckResult]:
    """Library, device and model of every pipeline with an Edge TPU or a delegate."""
    for result in accelerator_checks(context.config):
        yield CheckResult("accelerator", result.status, result.line(), result.hint or None)


@check("model")
def check_models(context: DoctorContext) -> Iterator[CheckResult]:
    pipelines = context.config.pipelines
    for pipeline in pipelines:
        try:
            stages = ModelStages.load(pipeline, resolve_threads(pipeline.model.threads,
                                                                len(pipelines)))
        except EdgeRuntimeError as err:
            yield CheckResult("model", "fail", f"{pipeline.name}: {err.message}",
                              err.hint or "fix model.path, or the pipeline's preprocess/task")
            continue
        context.stages[pipeline.name] = stages
        spec = stages.runner.inputs[0]
        labels = f", {len(stages.labels)} labels" if pipeline.model.labels else ""
        yield CheckResult("model", "pass", f"{pipeline.name}: {stages.model.path.name} loads and "
                          f"fits (input {list(spec.shape)} {spec.dtype}{labels})")


@check("fast path")
def check_fast_path(context: DoctorContext) -> Iterator[CheckResult]:
    for name, stages in context.stages.items():
        info = stages.runner.info
        quantized = all(s.quant.is_quantized for s in stages.runner.inputs)
        if not quantized:
            yield CheckResult("fast path", "warn", f"{name}: {stages.model.path.name} is not an "
                              "int8 model (float input)", "use a full-integer (int8) quantized "
                              "model: several times faster on a CPU")
        elif info.accelerator != CPU_LABEL:
            yield CheckResult("fast path", "pass", f"{name}: int8 model on {info.accelerator}, "
                              f"{info.threads} CPU thread(s) for what it leaves")
        elif not info.xnnpack:
            yield CheckResult("fast path", "warn", f"{name}: XNNPACK was not applied by "
                              f"{info.backend}", "use the ai-edge-litert backend "
                              "(model.backend: litert) for the XNNPACK int8 path")
        else:
            yield CheckResult("fast path", "pass", f"{name}: int8 model, XNNPACK on, "
                              f"{info.threads} thread(s)")


# --- sources -------------------------------------------------------------------------


@check("source")
def check_sources(context: DoctorContext) -> Iterator[CheckResult]:
    for pipeline in context.config.pipelines:
        config = pipeline.source
        source = build_source(config)
        where = f"{pipeline.name}: {source.description}"
        try:
            source.open()
        except SourceError as err:
            yield CheckResult("source", "fail", f"{pipeline.name}: {err.message}",
                              err.hint or "fix the pipeline's source section")
            continue
        try:
            if isinstance(config, CameraSource | PipeSource | StreamSourceBase):
                yield _measure_fps(pipeline.name, source, config.fps)
            else:
                frame = source.read()
                yield (CheckResult("source", "pass", f"{where} opens and delivers frames")
                       if frame is not None else
                       CheckResult("source", "fail", f"{where} delivers no frame",
                                   "check the file or folder"))
        except SourceError as err:
            yield CheckResult("source", "fail", f"{pipeline.name}: {err.message}",
                              err.hint or "check the device and its cable")
        finally:
            source.close()


def _measure_fps(name: str, source: FrameSource, wanted: float | None) -> CheckResult:
    """Read for SOURCE_SAMPLE_S after the first frame (exposure settling is not counted)."""
    where = f"{name}: {source.description}"
    if source.read() is None:
        return CheckResult("source", "fail", f"{where} delivers no frame",
                           "check the device and its cable")
    frames, start = 0, time.monotonic()
    while time.monotonic() - start < SOURCE_SAMPLE_S:
        if source.read() is None:
            break
        frames += 1
    fps = frames / max(time.monotonic() - start, 1e-9)
    if wanted is not None and fps < FPS_SHORTFALL * wanted:
        return CheckResult("source", "warn", f"{where} delivers {fps:.1f} fps, the config asks "
                           f"for {wanted:g}", "lower the resolution or the fps, or add light "
                           "(long exposures slow cameras down)")
    return CheckResult("source", "pass", f"{where} delivers {fps:.1f} fps")


# --- broker ----------------------------------------------------------------------------


@check("broker")
def check_broker(context: DoctorContext) -> Iterator[CheckResult]:
    yield broker_round_trip(context.config, BROKER_TIMEOUT_S)


def broker_round_trip(config: Config, timeout_s: float) -> CheckResult:
    """Connect like the daemon (credentials, TLS), subscribe, publish, receive it back."""
    settings = config.mqtt
    where = f"{settings.host}:{settings.port}"
    token = uuid.uuid4().hex
    # its own client id: reusing the daemon's would disconnect a running daemon
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-runtime-doctor-"
                         f"{token[:8]}", protocol=mqtt.MQTTv5)
    client.connect_timeout = timeout_s
    topic = f"{settings.topic_prefix}/{config.device_id}/doctor/{token}"
    state: dict[str, Any] = {"refused": None, "subscribed": None, "sent_at": None,
                             "received_at": None}

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            state["refused"] = str(reason)
        else:
            c.subscribe(topic, qos=1)

    def on_subscribe(c: mqtt.Client, _u: Any, _m: Any, reasons: Any, _p: Any) -> None:
        state["subscribed"] = not any(r.is_failure for r in reasons)
        if state["subscribed"]:
            state["sent_at"] = time.monotonic()
            c.publish(topic, token.encode(), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.payload == token.encode():
            state["received_at"] = time.monotonic()

    client.on_connect, client.on_subscribe, client.on_message = (on_connect, on_subscribe,
                                                                 on_message)
    try:
        try:
            configure_security(client, settings)
            client.connect(settings.host, settings.port, settings.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as err:
            return CheckResult("broker", "fail", describe_connect_error(err, settings.host,
                                                                        settings.port),
                               "start the broker (e.g. apt install mosquitto), or fix mqtt.host "
                               "/ mqtt.port / mqtt.tls")
        deadline = time.monotonic() + timeout_s
        while (time.monotonic() < deadline and state["refused"] is None
               and state["subscribed"] is not False and state["received_at"] is None):
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        with contextlib.suppress(Exception):
            client.disconnect()
    finally:
        close_client(client)
    if state["refused"] is not None:
        return CheckResult("broker", "fail", f"{where} refused the connection: "
                           f"{state['refused']}", "check mqtt.username / password and the "
                           "broker's ACL")
    if state["subscribed"] is False:
        return CheckResult("broker", "warn", f"{where} accepted the connection but refused "
                           f"the subscription to {topic}", "allow this user to subscribe under "
                           f"{settings.topic_prefix}/ (only needed for this check)")
    if state["received_at"] is None:
        return CheckResult("broker", "fail", f"{where}: no publish/subscribe round trip within "
                           f"{timeout_s:g} s", "check the broker's log and ACL")
    rtt_ms = (state["received_at"] - state["sent_at"]) * 1e3
    return CheckResult("broker", "pass", f"{where}: publish/subscribe round trip "
                       f"{rtt_ms:.1f} ms")


# --- state directory, clock, CPU ----------------------------------------------------------


@check("state dir")
def check_state_dir(context: DoctorContext) -> Iterator[CheckResult]:
    state_dir = context.config.state_dir
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".edge-runtime-doctor-"):
            pass
    except OSError as err:
        yield CheckResult("state dir", "fail", f"{existing} is not writable ({err.strerror})",
                          "set state_dir to a writable directory, or run as its owner")
        return
    free = shutil.disk_usage(existing).free
    yield judge_free_space(state_dir, existing != state_dir, free,
                           context.config.outbox.max_bytes)


def judge_free_space(state_dir: Path, will_create: bool, free: int,
                     outbox_max_bytes: int) -> CheckResult:
    created = " (will be created)" if will_create else ""
    text = f"{state_dir}{created} writable, {free / 1024**2:.0f} MiB free"
    if free < MIN_FREE_BYTES:
        return CheckResult("state dir", "fail", text, "free space: the outbox cannot store "
                           "predictions while the broker is away")
    if free < outbox_max_bytes:
        return CheckResult("state dir", "warn", f"{text}, less than outbox.max_bytes "
                           f"({outbox_max_bytes / 1024**2:.0f} MiB)",
                           "free space, or lower outbox.max_bytes so the bound is reached "
                           "before the disk is full")
    return CheckResult("state dir", "pass", text)


@check("clock")
def check_clock(context: DoctorContext) -> Iterator[CheckResult]:
    yield judge_clock(TIMESYNC_FLAG.exists(), _timedatectl_synchronized(), _adjtimex_state())


def judge_clock(timesync_flag: bool, timedatectl: str | None,
                adjtimex_state: int | None) -> CheckResult:
    """From the most to the least specific witness of time synchronisation."""
    hint = "enable time synchronisation: sudo timedatectl set-ntp true (or run chrony)"
    if timesync_flag:
        return CheckResult("clock", "pass", "synchronised (systemd-timesyncd)")
    if timedatectl in ("yes", "no"):
        return (CheckResult("clock", "pass", "synchronised (timedatectl)") if timedatectl == "yes"
                else CheckResult("clock", "warn", "not synchronised (timedatectl): payload "
                                 "timestamps may be wrong", hint))
    if adjtimex_state is None:
        return CheckResult("clock", "skip", "synchronisation cannot be told on this system")
    if adjtimex_state == TIME_ERROR:
        return CheckResult("clock", "warn", "the kernel reports the clock unsynchronised "
                           "(adjtimex): payload timestamps may be wrong", hint)
    return CheckResult("clock", "pass", "synchronised (kernel adjtimex)")


def _timedatectl_synchronized() -> str | None:
    if shutil.which("timedatectl") is None:
        return None
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _adjtimex_state() -> int | None:
    """adjtimex(2) in read-only mode (modes = 0): the clock state, or None off Linux."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # zeroed: modes = 0, nothing is changed
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


@check("cpu")
def check_cpu(context: DoctorContext) -> Iterator[CheckResult]:
    governor = _read(CPUFREQ / "scaling_governor")
    if governor is None:
        yield CheckResult("cpu", "skip", "no CPU frequency governor readable")
    else:
        yield judge_governor(governor, _read(CPUFREQ / "scaling_driver"))
    throttled = _vcgencmd_throttled()
    if throttled is None:
        yield CheckResult("cpu", "skip", "vcgencmd not available (not a Raspberry Pi?)")
    else:
        yield judge_throttled(throttled)


def judge_governor(governor: str, driver: str | None) -> CheckResult:
    if governor in SLOW_GOVERNORS and driver not in SCALING_DRIVERS_WITH_DYNAMIC_POWERSAVE:
        return CheckResult("cpu", "warn", f"governor '{governor}' keeps the CPU at its lowest "
                           "clock", "set the governor to ondemand or performance (e.g. "
                           "cpufrequtils GOVERNOR=ondemand)")
    return CheckResult("cpu", "pass", f"governor '{governor}'"
                       + (f" ({driver})" if driver else ""))


def decode_throttled(value: int) -> tuple[list[str], list[str]]:
    """``vcgencmd get_throttled`` bits -> (happening now, happened since boot)."""
    now = [what for bit, what, current in THROTTLED_BITS if current and value >> bit & 1]
    past = [what for bit, what, current in THROTTLED_BITS if not current and value >> bit & 1]
    return now, past


def judge_throttled(value: int) -> CheckResult:
    now, past = decode_throttled(value)
    power_hint = "use the official power supply and a short cable; add cooling"
    if "under-voltage" in now:
        return CheckResult("cpu", "fail", f"under-voltage now (throttled=0x{value:x}): "
                           + ", ".join(now), power_hint)
    if now or past:
        parts = ([f"now: {', '.join(now)}"] if now else []) + \
                ([f"since boot: {', '.join(past)}"] if past else [])
        return CheckResult("cpu", "warn", f"throttled=0x{value:x} ({'; '.join(parts)})",
                           power_hint)
    return CheckResult("cpu", "pass", "no throttling or under-voltage (vcgencmd)")


def _vcgencmd_throttled() -> int | None:
    if shutil.which("vcgencmd") is None:
        return None
    try:
        done = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
        return int(done.stdout.strip().split("=", 1)[1], 16) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
