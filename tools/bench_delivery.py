"""Benchmark: durable delivery throughput, outbox enqueue -> broker PUBACK, QoS 1.

One run against a private Mosquitto on loopback (no subscriber), same payloads:

* ``durable``: a producer thread commits messages to the SQLite outbox (as a pipeline's
  post thread does); the MqttLink thread publishes them and deletes each on PUBACK. Timed
  from the first enqueue to the last acknowledgement.
* ``bypassed``: the same messages published straight with paho (``loop_start``, the same
  in-flight window as the link's), timed to the last PUBACK: what the outbox costs.
* ``enqueue only``: commits per second with no broker, per ``outbox.sync`` mode.

Usage (from the repository root):
    python tools/bench_delivery.py [--messages 20000] [--payload-bytes 200] [--repeat 3]
                                   [--broker-inflight 20] [--inflight 100]
Not a test: numbers go to docs/delivery.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import Config
from edge_runtime.publishing.mqtt import STATUS_SLOTS, MqttLink
from edge_runtime.publishing.outbox import Outbox, Synchronous
from tests.support.broker import MosquittoBroker

TOPIC = "bench/device/bench/predictions"
PIPELINE = "bench"
POLL_S = 0.001
TIMEOUT_S = 300.0


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(POLL_S)


def bench_config(port: int, inflight: int) -> Config:
    models = models_dir()
    return Config.model_validate({
        "device_id": "bench", "mqtt": {"host": "127.0.0.1", "port": port},
        "outbox": {"max_inflight": inflight},
        "pipelines": [{"name": PIPELINE, "source": {"type": "synthetic"},
                       "model": {"path": str(models / "digits_int8.tflite")}}]})


def durable(port: int, messages: int, payload: bytes, inflight: int) -> float:
    """msg/s from the first enqueue to the last PUBACK, through outbox and link."""
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as state:
        outbox = Outbox(Path(state))
        link = MqttLink(bench_config(port, inflight), outbox)
        link.start()
        wait_for(lambda: link.connected, "link connected")

        def produce() -> None:
            for _ in range(messages):
                outbox.enqueue(PIPELINE, TOPIC, 1, lambda seq: payload)

        producer = threading.Thread(target=produce)
        started = time.perf_counter()
        producer.start()
        wait_for(lambda: link.status.acked >= messages and outbox.stats.depth == 0,
                 "all acknowledged")
        elapsed = time.perf_counter() - started
        producer.join()
        link.stop(drain_timeout_s=1.0, timeout_s=5.0)
        outbox.close()
    return messages / elapsed


def bypassed(port: int, messages: int, payload: bytes, inflight: int) -> float:
    """msg/s from the first publish to the last PUBACK, paho alone (memory only)."""
    acked = 0
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= messages:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bypass",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(client.is_connected, "paho connected")
        started = time.perf_counter()
        for _ in range(messages):
            client.publish(TOPIC, payload, qos=1)
        if not done.wait(TIMEOUT_S):
            raise TimeoutError("bypass acknowledgements")
        elapsed = time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()
    return messages / elapsed


def enqueue_only(messages: int, payload: bytes, sync: Synchronous) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as state:
        outbox = Outbox(Path(state), synchronous=sync)
        started = time.perf_counter()
        for _ in range(messages):
            outbox.enqueue(PIPELINE, TOPIC, 1, lambda seq: payload)
        elapsed = time.perf_counter() - started
        outbox.close()
    return messages / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=100,
                        help="outbox.max_inflight (the link also obeys Receive Maximum)")
    parser.add_argument("--broker-inflight", type=int, default=20,
                        help="mosquitto max_inflight_messages = its Receive Maximum "
                        "(20 is mosquitto's default)")
    args = parser.parse_args()
    payload = b'{"seq":0,"p":"' + b"x" * max(0, args.payload_bytes - 16) + b'"}'
    # the link keeps STATUS_SLOTS of the broker's Receive Maximum for status and stats
    window = max(1, min(args.inflight, args.broker_inflight - STATUS_SLOTS))
    results: dict[str, list[float]] = {"durable": [], "bypassed": []}
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as workdir:
        broker = MosquittoBroker(workdir=Path(workdir), persistence=False, extra_config=[
            f"max_inflight_messages {args.broker_inflight}"])
        broker.start()
        try:
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                results["durable"].append(durable(broker.port, args.messages, payload,
                                                  args.inflight))
                results["bypassed"].append(bypassed(broker.port, args.messages, payload,
                                                    window))
        finally:
            broker.close()
    enqueue = {sync: enqueue_only(min(args.messages, 5_000) if sync == "full"
                                  else args.messages, payload, sync)
               for sync in ("normal", "full")}
    print(f"{args.messages} messages x {len(payload)} bytes, QoS 1, window {window} "
          f"(outbox.max_inflight {args.inflight}, broker Receive Maximum "
          f"{args.broker_inflight}), {args.repeat} runs, median (min..max):")
    for name, values in results.items():
        print(f"  {name:<9} {statistics.median(values):8.0f} msg/s "
              f"({min(values):.0f}..{max(values):.0f})")
    ratio = statistics.median(results["durable"]) / statistics.median(results["bypassed"])
    print(f"  durable / bypassed = {ratio:.2f}")
    for sync, rate in enqueue.items():
        print(f"  enqueue only, sync={sync:<6} {rate:8.0f} commits/s (state dir in "
              f"{tempfile.gettempdir()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
