"""Sensor config: variants, the window section, errors with file:line; sensor payloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config import load_config
from edge_runtime.config.schema import FileSensorSource, SerialSource
from edge_runtime.errors import ConfigError
from edge_runtime.publishing.payload import aggregate_body, encode_payload, payload_body
from edge_runtime.types import Classification, Result, StageTimes, Window

SERIAL = """\
pipelines:
  - name: pump
    source:
      type: serial
      port: /dev/ttyUSB0
      baud: 9600
      parity: even
      stopbits: 2
      format: json
      channels:
        - {name: current, field: i.rms, scale: 0.001}
      time: {field: ts, unit: ms}
    window:
      samples: 64
      hop: 32
      rate_hz: 50
      normalize: {min: [0], max: [20]}
    model:
      path: pump.tflite
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return load_config(path, env={})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [p.replace(f"{tmp_path / 'edge.yaml'}:", "") for p in info.value.problems]


def test_serial_source_with_window_is_valid(tmp_path: Path) -> None:
    config = load_config((tmp_path / "edge.yaml"), env={}, text=SERIAL)
    pipeline = config.pipelines[0]
    source = pipeline.source
    assert isinstance(source, SerialSource)
    assert (source.baud, source.parity, source.stopbits, source.bytesize) == (9600, "even", 2, 8)
    assert pipeline.sensor_channels() == ["current"]
    assert pipeline.window is not None and pipeline.window.normalize is not None
    assert pipeline.window.normalize.mean_std() == ([0.0], [20.0])


def test_unknown_serial_key_names_its_line_without_the_variant_tag(tmp_path: Path) -> None:
    assert problems(tmp_path, SERIAL.replace("      baud: 9600", "      baudrate: 9600")) == [
        "6: pipelines.0.source.baudrate: unknown key (check the spelling; see the config "
        "reference in README.md)"]


def test_bad_serial_framing_is_rejected(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, SERIAL.replace("stopbits: 2", "stopbits: 3"))
    assert problem.startswith("8: pipelines.0.source.stopbits: ")
    assert "1, 1.5 or 2" in problem


def test_sensor_source_needs_a_window(tmp_path: Path) -> None:
    text = SERIAL.split("    window:", maxsplit=1)[0] + "    model:\n      path: pump.tflite\n"
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("2: pipelines.0: ")
    assert "sensor source 'serial' needs a window section" in problem


def test_window_on_a_camera_pipeline_is_rejected(tmp_path: Path) -> None:
    text = SERIAL.replace("      type: serial\n", "      type: synthetic\n").split(
        "      port:")[0] + "    window:\n      samples: 8\n    model:\n      path: m.tflite\n"
    (problem,) = problems(tmp_path, text)
    assert "window applies to sensor sources" in problem


def test_csv_without_header_needs_column_indexes() -> None:
    with pytest.raises(ValueError, match="channel 'v': give a column index"):
        FileSensorSource.model_validate({"type": "file", "path": "/x", "channels": [
            {"name": "v"}]})
    with pytest.raises(ValueError, match="JSON readings are selected by field"):
        FileSensorSource.model_validate({"type": "file", "path": "/x", "format": "json",
                                         "channels": [{"name": "v", "column": 1}]})
    with pytest.raises(ValueError, match="pace: timestamps needs a time"):
        FileSensorSource.model_validate({"type": "file", "path": "/x", "header": True,
                                         "channels": [{"name": "v"}], "pace": "timestamps"})


def test_normalisation_must_fit_the_channels(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, SERIAL.replace("{min: [0], max: [20]}",
                                                   "{mean: [0, 1], std: [1, 1]}"))
    assert "has 2 values per list; the source has 1 channel(s)" in problem
    (problem,) = problems(tmp_path, SERIAL.replace("{min: [0], max: [20]}",
                                                   "{mean: [0], max: [1]}"))
    assert "give mean and std, or min and max" in problem


def test_health_judges_sensor_stalls_by_the_window_rate(tmp_path: Path) -> None:
    pipeline = load_config(tmp_path / "edge.yaml", env={}, text=SERIAL).pipelines[0]
    assert pipeline.fps_limit() == pytest.approx(50 / 32)  # rate_hz / hop
    no_rate = SERIAL.replace("      rate_hz: 50\n", "")
    assert load_config(tmp_path / "edge.yaml", env={}, text=no_rate).pipelines[0].fps_limit() \
        is None
    iio = load_config(tmp_path / "edge.yaml", env={}, text=no_rate.replace(
        SERIAL[SERIAL.index("    source:"):SERIAL.index("    window:")],
        "    source: {type: iio, device: x, rate_hz: 10, channels: [{name: v}]}\n"))
    assert iio.pipelines[0].fps_limit() == pytest.approx(10 / 32)  # the polling rate


def test_demo_vibration_config_is_valid() -> None:
    config = load_config(models_dir() / "demo-vibration.yaml", env={})
    pipeline = config.pipelines[0]
    source = pipeline.source
    assert isinstance(source, FileSensorSource) and source.pace == "timestamps"
    assert pipeline.sensor_channels() == ["ax", "ay", "az"]
    assert Path(source.path).is_file()


def window_result(number: int) -> Result:
    window = Window(number, 10.0 + number, 10.255 + number, np.zeros((256, 3), np.float32))
    return Result(number, 1700000000.0 + number, None,
                  (Classification(1, "normal", 0.875),), StageTimes(inference=0.01), {}, window)


def test_window_payload_carries_start_end_and_sample_count() -> None:
    body = payload_body(device="d", pipeline="vib", task="classify", model_name="m",
                        model_sha256="ab", result=window_result(3))
    assert "frame" not in body
    assert body["window"] == {"number": 3, "start": 13.0, "end": 13.255, "samples": 256}
    assert list(body) == ["schema", "device", "pipeline", "seq", "ts", "window", "model",
                          "latency_ms", "task", "predictions"]


def test_aggregated_payload_keeps_each_result() -> None:
    bodies = [payload_body(device="d", pipeline="vib", task="classify", model_name="m",
                           model_sha256="ab", result=window_result(n)) for n in range(3)]
    body = aggregate_body(bodies)
    assert body["count"] == 3 and body["ts"] == bodies[2]["ts"]
    assert [r["window"]["number"] for r in body["results"]] == [0, 1, 2]
    assert body["results"][1] == {k: bodies[1][k] for k in ("ts", "window", "latency_ms",
                                                             "predictions")}
    assert b'"seq":7' in encode_payload(body, 7)
