"""Seconds from starting the daemon to its first prediction arriving over MQTT.

    python tools/first_prediction.py --config FILE [--set KEY=VALUE ...] [--runs N]

Subscribes to every pipeline's predictions topic on the configured broker, then starts
``python -m edge_runtime run --config FILE`` and times the first message: interpreter start,
imports, config, model load, source open, the first frame through every stage, the outbox
commit and the publish, as a user would see it. Stops the daemon with SIGTERM afterwards.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.config import load_config

SUBSCRIBE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 20.0


def first_prediction_s(config_path: Path, overrides: list[str], timeout_s: float) -> float:
    config = load_config(config_path, overrides)
    topics = [config.predictions_topic(p) for p in config.pipelines]
    subscribed, arrived = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe([(t, 0) for t in topics])
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda *_: arrived.set()
    client.connect(config.mqtt.host, config.mqtt.port)
    client.loop_start()
    try:
        if not subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            raise SystemExit(f"could not subscribe on {config.mqtt.host}:{config.mqtt.port}")
        command = [sys.executable, "-m", "edge_runtime", "run", "--config", str(config_path)]
        for item in overrides:
            command += ["--set", item]
        started = time.monotonic()
        daemon = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            if not arrived.wait(timeout_s):
                raise SystemExit(f"no prediction within {timeout_s} s")
            return time.monotonic() - started
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(STOP_TIMEOUT_S)
    finally:
        client.loop_stop()
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        seconds = first_prediction_s(args.config, args.set, args.timeout)
        print(f"run {run}: first prediction {seconds:.2f} s after start")


if __name__ == "__main__":
    main()
