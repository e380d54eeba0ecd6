"""Benchmark: does the daemon keep up with a 3-axis 1 kHz sensor, and how fast can it go?

Runs ``edge-runtime run`` as a subprocess (the way systemd does) with the vibration demo
model (windows of 256 samples, hop 128: 50 % overlap) against a private Mosquitto, and
reports, per scenario:

- idle (a followed file that stays empty): what the daemon costs doing nothing;
- real time (synthetic sensor at 1 kHz and faster, the demo CSV replayed at its timestamps):
  daemon CPU as a share of one core (utime + stime from /proc/PID/stat over wall time),
  the machine's per-core busy share from /proc/stat over the same interval, and whether
  every window was inferred and published (no overflow, no gap, no rejected window);
- unpaced (synthetic sensor as fast as the pipeline takes it; a large CSV file): the
  sustained rate in samples per second, from the capture times of the first and last
  window, and the CPU the daemon used meanwhile.

Run from the repository root (it reuses the test suite's broker and subscriber helpers)::

    PYTHONPATH=. python tools/bench_sensors.py [--seconds 30] [--unpaced-seconds 120]

Numbers go to stdout as Markdown; docs/sensors.md keeps the ones we measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundled import models_dir
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.subscriber import SeqSubscriber

MODELS = models_dir()
NORM = json.loads((MODELS / "demo" / "vibration_norm.json").read_text())
PIPELINE = "vib"
WINDOW, HOP = 256, 128
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 3.0
START_TIMEOUT_S = 60.0
SENSOR_LOG = re.compile(rf"pipeline {PIPELINE}: sensor (\{{.*\}})")
BIG_CSV_COPIES = 25  # the 48 s demo recording, repeated with increasing timestamps


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat


def machine_cpu() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            cores.append((sum(values) - idle, sum(values)))
    return cores


def busy_shares(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float]:
    return [(b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(before, after,
                                                                        strict=True)]


@dataclass
class Outcome:
    name: str
    wall_s: float
    cpu_share: float  # of one core
    cores: list[float]
    counters: dict[str, Any]
    published: int  # window results received by the subscriber
    rate_samples_s: float | None = None


def config_for(workdir: Path, broker: MosquittoBroker, source: dict[str, Any],
               name: str, rate_hz: float = 1000, aggregate: int = 1) -> Path:
    config = {
        "device_id": "bench", "state_dir": str(workdir / f"state-{name}"), "log_level": "info",
        "mqtt": {"host": broker.host, "port": broker.port},
        "pipelines": [{
            "name": PIPELINE, "source": source,
            "window": {"samples": WINDOW, "hop": HOP, "rate_hz": rate_hz,
                       "normalize": {"mean": NORM["mean"], "std": NORM["std"]}},
            "model": {"path": str(MODELS / "vibration_int8.tflite"),
                      "labels": str(MODELS / "vibration_labels.txt"), "threads": 1},
            "task": {"type": "classify", "top_k": 1}, "output": {"aggregate": aggregate}}]}
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def start(config: Path, log: Path) -> DaemonProcess:
    daemon = DaemonProcess(config, [], log).start()
    if not wait_until(lambda: "-> model" in daemon.log_text() or not daemon.alive(),
                      START_TIMEOUT_S) or not daemon.alive():
        daemon.close()
        raise SystemExit(f"daemon did not start:\n{daemon.log_text()}")
    return daemon


def counters_of(daemon: DaemonProcess) -> dict[str, Any]:
    found = SENSOR_LOG.findall(daemon.log_text())
    return json.loads(found[-1]) if found else {}


def real_time(name: str, workdir: Path, broker: MosquittoBroker, source: dict[str, Any],
              seconds: float, rate_hz: float = 1000) -> Outcome:
    """Run for ``seconds`` after a warm-up; CPU over that interval; then stop and count."""
    subscriber = SeqSubscriber(broker.host, broker.port, [f"edge/bench/{PIPELINE}/#"],
                               client_id=f"bench-{name}")
    subscriber.start()
    daemon = start(config_for(workdir, broker, source, name, rate_hz),
                   workdir / f"{name}.log")
    try:
        time.sleep(WARMUP_S)
        cpu0, cores0, wall0 = process_cpu_s(daemon.pid), machine_cpu(), time.monotonic()
        time.sleep(seconds)
        cpu1, cores1, wall1 = process_cpu_s(daemon.pid), machine_cpu(), time.monotonic()
        if daemon.terminate() != 0:
            raise SystemExit(f"daemon failed:\n{daemon.log_text()}")
    finally:
        daemon.close()
    counters = counters_of(daemon)
    subscriber.wait_for_count(PIPELINE, counters.get("windows", 0), timeout_s=10)
    subscriber.stop()
    return Outcome(name, wall1 - wall0, (cpu1 - cpu0) / (wall1 - wall0),
                   busy_shares(cores0, cores1), counters, subscriber.count(PIPELINE))


def unpaced(name: str, workdir: Path, broker: MosquittoBroker, source: dict[str, Any],
            expected_windows: int, aggregate: int = 1) -> Outcome:
    """Run a finite source to its end as fast as it goes; rate from the windows' ts."""
    subscriber = SeqSubscriber(broker.host, broker.port, [f"edge/bench/{PIPELINE}/#"],
                               client_id=f"bench-{name}")
    subscriber.start()
    daemon = start(config_for(workdir, broker, source, name, aggregate=aggregate),
                   workdir / f"{name}.log")
    try:
        cpu0, cores0, wall0 = process_cpu_s(daemon.pid), machine_cpu(), time.monotonic()
        last_cpu, last_cores, last_wall = cpu0, cores0, wall0
        while daemon.alive():  # sample until the very end: /proc/PID vanishes at exit
            try:
                last_cpu = process_cpu_s(daemon.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            last_cores, last_wall = machine_cpu(), time.monotonic()
            time.sleep(0.2)
        if daemon.wait() != 0:
            raise SystemExit(f"daemon failed:\n{daemon.log_text()}")
    finally:
        daemon.close()
    messages = -(-expected_windows // aggregate)
    subscriber.wait_for_count(PIPELINE, messages, timeout_s=30)
    subscriber.stop()
    results = [r for m in subscriber.messages() for r in m.json().get("results", [m.json()])]
    stamps = sorted(r["ts"] for r in results)
    rate = (len(stamps) - 1) * HOP / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return Outcome(name, last_wall - wall0, (last_cpu - cpu0) / max(1e-9, last_wall - wall0),
                   busy_shares(cores0, last_cores), counters_of(daemon), len(results), rate)


def big_csv(path: Path) -> int:
    """The demo recording repeated with increasing timestamps; returns the sample count."""
    lines = (MODELS / "demo" / "vibration_heldout.csv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    with path.open("w") as handle:
        handle.write(header + "\n")
        for copy in range(BIG_CSV_COPIES):
            for line in body:
                t, rest = line.split(",", 1)
                handle.write(f"{float(t) + copy * len(body) / 1000:.3f},{rest}\n")
    return BIG_CSV_COPIES * len(body)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return (f"{os.cpu_count()} x {model}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def report(outcomes: list[Outcome]) -> None:
    print(f"machine: {machine()}\n")
    print("| scenario | wall s | daemon CPU (1 core = 100 %) | machine per core | windows "
          "| pending at stop | published | overflow | gaps | rejected | samples/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        c = o.counters
        cores = " / ".join(f"{share:.0%}" for share in o.cores)
        rate = f"{o.rate_samples_s:,.0f}" if o.rate_samples_s else "-"
        print(f"| {o.name} | {o.wall_s:.1f} | {o.cpu_share:.1%} | {cores} | "
              f"{c.get('windows')} | {c.get('pending_windows')} | {o.published} | "
              f"{c.get('overflow_samples')} | "
              f"{c.get('gaps')} | {c.get('rate_rejected')} | {rate} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="measured interval of each real-time scenario")
    parser.add_argument("--fast-rate", type=float, default=50_000.0,
                        help="rate of the fast real-time scenario (samples per second)")
    parser.add_argument("--unpaced-seconds", type=float, default=600.0,
                        help="seconds of synthetic signal for the unpaced scenario")
    args = parser.parse_args()
    axes = [{"name": axis} for axis in ("ax", "ay", "az")]
    with tempfile.TemporaryDirectory(prefix="bench-sensors-") as tmp:
        workdir = Path(tmp)
        broker = MosquittoBroker(workdir=workdir / "mosquitto")
        broker.start()
        try:
            demo_csv = str(MODELS / "demo" / "vibration_heldout.csv")
            csv_path = workdir / "big.csv"
            csv_samples = big_csv(csv_path)
            signal = int(args.unpaced_seconds * 1000)
            idle = workdir / "idle.csv"
            idle.write_text("")
            outcomes = [
                real_time("idle: a followed empty file", workdir, broker,
                          {"type": "file", "path": str(idle), "follow": True,
                           "time": {"column": 0},
                           "channels": [{"name": n, "column": i + 1}
                                        for i, n in enumerate(("ax", "ay", "az"))]},
                          args.seconds),
                real_time("synthetic 1 kHz, real time", workdir, broker,
                          {"type": "synthetic_sensor", "rate_hz": 1000}, args.seconds),
                real_time(f"synthetic {args.fast_rate / 1000:g} kHz, real time", workdir,
                          broker, {"type": "synthetic_sensor", "rate_hz": args.fast_rate},
                          args.seconds, rate_hz=args.fast_rate),
                real_time("demo CSV replayed at 1 kHz", workdir, broker,
                          {"type": "file", "path": demo_csv, "header": True,
                           "time": {"column": "t"}, "channels": axes,
                           "pace": "timestamps"}, args.seconds),
                unpaced("synthetic unpaced", workdir, broker,
                        {"type": "synthetic_sensor", "realtime": False,
                         "duration_s": args.unpaced_seconds},
                        (signal - WINDOW) // HOP + 1),
                unpaced("synthetic unpaced, aggregate 20", workdir, broker,
                        {"type": "synthetic_sensor", "realtime": False,
                         "duration_s": args.unpaced_seconds},
                        (signal - WINDOW) // HOP + 1, aggregate=20),
                unpaced("CSV file unpaced", workdir, broker,
                        {"type": "file", "path": str(csv_path), "header": True,
                         "time": {"column": "t"}, "channels": axes},
                        (csv_samples - WINDOW) // HOP + 1),
            ]
        finally:
            broker.close()
    report(outcomes)


if __name__ == "__main__":
    main()
