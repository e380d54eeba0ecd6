"""``edge-runtime doctor`` on real models, sources and a real Mosquitto."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edge_runtime.bundled import models_dir
from tests.support.broker import MosquittoBroker, free_port
from tests.support.daemon import run_cli
from tests.support.frames import FifoFrameWriter, jpeg_frames

MODELS = models_dir()
MODEL = MODELS / "digits_int8.tflite"
CONFIG_CHECKS = {"config", "backend", "model", "fast path", "source", "broker", "state dir"}
DEVICE_CHECKS = {"clock", "cpu"}  # depend on the machine running the tests


def test_good_config_passes_every_check_it_controls(broker: MosquittoBroker,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, data in enumerate(jpeg_frames(3)):
        (folder / f"{i}.jpg").write_bytes(data)
    config = tmp_path / "edge.yaml"
    config.write_text(f"""\
device_id: doctor-good
state_dir: {tmp_path / "state"}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
pipelines:
  - name: video
    source: {{type: video, path: {MODELS / "demo" / "digits.mp4"}}}
    model: {{path: {MODEL}, labels: {MODELS / "digits_labels.txt"}}}
  - name: folder
    source: {{type: images, path: {folder}}}
    model: {{path: {MODEL}}}
  - name: cam
    source: {{type: pipe, path: {tmp_path / "cam.mjpeg"}}}
    model: {{path: {MODEL}}}
""")
    with FifoFrameWriter(tmp_path / "cam.mjpeg", fps=20):
        done = run_cli("doctor", "--config", str(config), "--json")
    report = json.loads(done.stdout)
    results = report["results"]
    assert {r["check"] for r in results} == CONFIG_CHECKS | DEVICE_CHECKS, done.stdout
    for result in results:
        if result["check"] in CONFIG_CHECKS:
            assert result["status"] == "pass", result
        else:
            assert result["status"] in {"pass", "warn", "skip"}, result
    # three models, each on the int8 XNNPACK path (the 2nd and 3rd interpreter too)
    fast = [r["message"] for r in results if r["check"] == "fast path"]
    assert [m.split(":")[0] for m in fast] == ["video", "folder", "cam"]
    assert all("XNNPACK on" in m for m in fast)
    sources = {r["message"].split(":")[0]: r["message"] for r in results
               if r["check"] == "source"}
    assert re.search(r"delivers \d+\.\d fps$", sources["cam"]), sources
    assert "round trip" in next(r["message"] for r in results if r["check"] == "broker")
    warned = any(r["status"] == "warn" for r in results)
    assert done.returncode == report["exit_code"] == (1 if warned else 0), done.stdout


def test_missing_model_unreachable_broker_and_absent_camera_fail_each_on_its_own_line(
        tmp_path: Path) -> None:
    dead_port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(f"""\
device_id: doctor-bad
state_dir: {tmp_path / "state"}
mqtt: {{host: 127.0.0.1, port: {dead_port}}}
pipelines:
  - name: lost
    source: {{type: video, path: {MODELS / "demo" / "digits.mp4"}}}
    model: {{path: {tmp_path / "gone.tflite"}}}
  - name: cam
    source: {{type: camera, device: /dev/video99}}
    model: {{path: {MODEL}}}
""")
    done = run_cli("doctor", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 3, done.stdout
    assert re.fullmatch(r"FAIL  model +lost: model file .*gone\.tflite does not exist",
                        failures[0]), failures
    assert re.fullmatch(r"FAIL  source +cam: camera /dev/video99 cannot be opened .*",
                        failures[1]), failures
    assert failures[2] == (f"FAIL  broker     no broker listening on 127.0.0.1:{dead_port} "
                           "(connection refused)")
    lines = done.stdout.splitlines()
    for failure in failures:  # each failure is followed by its fix
        assert lines[lines.index(failure) + 1].lstrip().startswith("fix: ")
    assert ", 3 failed, " in lines[-1] and lines[-1].startswith("doctor: "), lines[-1]
    assert "Traceback" not in done.stdout + done.stderr


def test_invalid_config_is_a_failed_check_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"""\
pipelines:
  - name: cam
    source: {{type: camera, fsp: 3}}
    model: {{path: {MODEL}}}
""")
    done = run_cli("doctor", "--config", str(config))
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith(
        f"FAIL  config     {config}:3: pipelines.0.source.fsp: unknown key"), done.stdout
