"""Config loading: line numbers in errors, ${ENV}, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.config import load_config
from edge_runtime.config.schema import SyntheticSource
from edge_runtime.errors import ConfigError

GOOD = """\
device_id: pi-1
mqtt:
  host: broker.lan
  password: ${MQTT_PASSWORD}
pipelines:
  - name: cam
    source:
      type: synthetic
      fps: 10
    model:
      path: models/m.tflite
      labels: models/labels.txt
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_paths_and_env(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={"MQTT_PASSWORD": "s3cret"})
    assert config.mqtt.password == "s3cret"
    assert config.pipelines[0].model.path == tmp_path / "models" / "m.tflite"
    assert config.predictions_topic(config.pipelines[0]) == "edge/pi-1/cam/predictions"
    assert config.status_topic() == "edge/pi-1/status"


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    text = GOOD.replace("      fps: 10\n", "      fps: 10\n      fsp: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"MQTT_PASSWORD": "x"})
    assert info.value.problems == [
        f"{tmp_path / 'edge.yaml'}:10: pipelines.0.source.fsp: unknown key (check the "
        "spelling; see the config reference in README.md)"]


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    text = GOOD.replace("      fps: 10", "      fps: fast")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"MQTT_PASSWORD": "x"})
    (problem,) = info.value.problems
    assert problem.startswith(f"{tmp_path / 'edge.yaml'}:9: pipelines.0.source.fps: ")
    assert "number" in problem


def test_unset_env_var_is_an_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD), env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{tmp_path / 'edge.yaml'}:4: mqtt.password: ")
    assert "MQTT_PASSWORD is not set" in problem


def test_env_default_is_used(tmp_path: Path) -> None:
    text = GOOD.replace("${MQTT_PASSWORD}", "${MQTT_PASSWORD:-fallback}")
    assert load_config(write(tmp_path, text), env={}).mqtt.password == "fallback"


def test_set_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    env = {"MQTT_PASSWORD": "x"}
    config = load_config(path, ["mqtt.port=18830", "pipelines.0.source.fps=5"], env=env)
    assert config.mqtt.port == 18830
    source = config.pipelines[0].source
    assert isinstance(source, SyntheticSource) and source.fps == 5
    with pytest.raises(ConfigError) as info:
        load_config(path, ["mqtt.port=notaport"], env=env)
    assert info.value.problems[0].startswith("--set mqtt.port: mqtt.port: ")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["pipelines.3.name=x"], env=env)
    assert "out of range" in info.value.problems[0]


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "mqtt:\n  host: [unclosed\n"))
    assert info.value.problems[0].startswith(f"{tmp_path / 'edge.yaml'}:")
    assert "invalid YAML" in info.value.problems[0]


def test_duplicate_pipeline_names_are_rejected(tmp_path: Path) -> None:
    pipeline = GOOD.split("pipelines:\n", 1)[1]
    text = GOOD + pipeline
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"MQTT_PASSWORD": "x"})
    assert "unique" in info.value.problems[0]
