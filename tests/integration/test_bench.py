"""``edge-runtime bench``: the documented report, from real models through the real interpreter.

Short runs (about a second per loop): these check what the report says and that the loops
really ran, not how fast they are (that is what the benchmark itself is for).
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from edge_runtime.bench import BenchOptions, CpuMeter, Progress, run_bench
from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import run_cli

MODELS = models_dir()
DIGITS = MODELS / "digits_int8.tflite"
STAGES = {"capture_wait", "decode", "preprocess", "inference", "postprocess", "publish",
          "end_to_end"}
BENCH_TIMEOUT_S = 120.0


def assert_percentiles(values: dict[str, float]) -> None:
    assert values.keys() == {"p50", "p95", "p99"}
    assert 0 <= values["p50"] <= values["p95"] <= values["p99"]


def test_bench_json_reports_the_documented_keys_with_sane_values() -> None:
    result = run_cli("bench", str(DIGITS), "--threads", "1", "--seconds", "1.5", "--json",
                     timeout=BENCH_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert "bench: round 3/3" in result.stderr  # the progress lines
    report = json.loads(result.stdout)

    assert report["model_sha256"] == hashlib.sha256(DIGITS.read_bytes()).hexdigest()
    assert report["backend"].startswith("litert ")
    assert report["threads"] == 1
    assert report["task"] == "classify"
    for key in ("raw_fps", "pipeline_fps", "serial_fps"):
        assert report[key] > 0, key
    assert 0 < report["ratio"] <= 1.5
    assert report["ratio"] == round(report["pipeline_fps"] / report["raw_fps"], 4)
    assert report["latency_ms"].keys() == STAGES
    for values in report["latency_ms"].values():
        assert_percentiles(values)
    assert report["latency_ms"]["inference"]["p50"] > 0
    assert 0 < report["first_prediction_s"] < 60
    assert 0 < report["peak_rss_mb"] < 4096
    frames = report["frames"]
    assert frames["captured"] == (frames["inferred"] + frames["dropped_frames"]
                                  + frames["decode_errors"])
    assert frames["results"] == frames["inferred"] > 0
    assert report["fast_path"]["xnnpack"] is True  # ai-edge-litert delegates the int8 graph
    assert report["fast_path"]["xnnpack_speedup"] > 0
    assert report["cpu_cores"]["pipeline_threads"].keys() >= {"capture", "prepare", "infer",
                                                               "post"}


def test_bench_text_report_names_every_loop() -> None:
    result = run_cli("bench", str(DIGITS), "--seconds", "0.6", timeout=BENCH_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    for word in ("raw", "pipeline", "serial", "ratio pipeline/raw", "end_to_end", "peak RSS"):
        assert word in result.stdout, word


def test_a_sensor_model_is_fed_windows_of_the_synthetic_sensor() -> None:
    model = MODELS / "vibration_int8.tflite"  # input [1, 256, 3]: a 3-axis window
    report = run_bench(BenchOptions(model=model, seconds=0.6), Progress())
    assert report["source"].startswith("synthetic vibration sensor")
    assert "windows of 256 samples every 128" in report["source"]
    assert report["task"] == "classify"
    assert report["raw_fps"] > 0 and report["pipeline_fps"] > 0 and report["serial_fps"] > 0
    assert report["latency_ms"]["decode"]["p99"] < 1.0  # windows are not decoded
    frames = report["frames"]
    assert frames["captured"] == frames["inferred"] + frames["dropped_frames"]


def test_a_model_without_a_class_vector_gets_the_raw_task() -> None:
    model = Path(__file__).parents[1] / "models" / "yolo_v8_layout.tflite"  # out [1, 7, 84]
    report = run_bench(BenchOptions(model=model, seconds=0.6), Progress())
    assert report["task"] == "raw"
    assert report["pipeline_fps"] > 0 and report["serial_fps"] > 0


def test_bench_usage_and_input_errors() -> None:
    neither = run_cli("bench")
    assert neither.returncode == 64 and "MODEL.tflite or --config" in neither.stderr
    missing = run_cli("bench", "/nonexistent/model.tflite")
    assert missing.returncode == 66 and "does not exist" in missing.stderr
    for result in (neither, missing):
        assert "Traceback" not in result.stderr


def test_bench_config_publishes_to_the_broker_under_a_bench_device(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory,
        tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(f"""
device_id: cam1
state_dir: {tmp_path / "daemon-state"}
mqtt: {{host: {broker.host}, port: {broker.port}}}
pipelines:
  - name: digits
    source: {{type: camera, device: /dev/nonexistent-camera}}
    model: {{path: {DIGITS}, threads: 1}}
    task: {{type: classify, top_k: 1}}
""")
    subscriber = subscriber_factory(broker.host, broker.port, ["edge/#"])
    result = run_cli("bench", "--config", str(config), "--seconds", "0.6", "--json",
                     timeout=BENCH_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    topic = "edge/cam1-bench/digits/predictions"
    assert topic in report["publish"]
    assert subscriber.wait_for_count("digits", 10, timeout_s=10)
    topics = {m.topic for m in subscriber.messages()}
    assert topic in topics
    assert not any(t.startswith("edge/cam1/") for t in topics)  # never poses as the daemon
    assert not (tmp_path / "daemon-state").exists()  # the daemon's outbox is left alone


def test_cpu_meter_counts_another_process_as_competition() -> None:
    """CPU a child process burns in the window is 'others', not this process's own."""
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter = CpuMeter()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c",
                    "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    measure = meter.measure(1, time.perf_counter() - started)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children.ru_utime + children.ru_stime
                 - children_before.ru_utime - children_before.ru_stime)
    assert child_cpu >= 0.5
    assert measure.others_cpu_seconds is not None
    assert measure.others_cpu_seconds >= child_cpu - 0.05  # /proc/stat ticks are 10 ms
    assert measure.cpu_seconds < 0.25  # waiting for the child costs this process little
