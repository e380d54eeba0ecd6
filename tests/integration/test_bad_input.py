"""Bad input: one clear line naming the problem, the documented exit code, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from tests.support.daemon import run_cli

MODELS = models_dir()
CONFIG = """\
device_id: bad-input
state_dir: {state}
mqtt:
  port: 1
pipelines:
  - name: digits
    source:
      type: {source_type}
      path: {source_path}
    model:
      path: {model}
      labels: {labels}
{extra}"""


def write_config(tmp_path: Path, *, model: Path = MODELS / "digits_int8.tflite",
                 source_type: str = "images", source_path: str = str(MODELS / "demo/digits"),
                 extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    text = CONFIG.format(state=tmp_path / "state", source_type=source_type,
                         source_path=source_path, model=model,
                         labels=MODELS / "digits_labels.txt", extra=extra)
    if replace is not None:
        text = text.replace(*replace)
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return path


def assert_one_clear_line(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_unknown_key(tmp_path: Path, command: str) -> None:
    path = write_config(tmp_path, replace=("  port: 1\n", "  port: 1\n  prot: 2\n"))
    result = run_cli(*([command, str(path)] if command == "check-config"
                       else [command, "--config", str(path)]))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, f"{path}:5:", "mqtt.prot", "unknown key")


def test_wrong_type(tmp_path: Path) -> None:
    path = write_config(tmp_path, replace=("  port: 1\n", "  port: many\n"))
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, f"{path}:4:", "mqtt.port")


def test_missing_model_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, model=tmp_path / "nope.tflite")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 66
    assert_one_clear_line(result.stderr, "nope.tflite", "does not exist")


def test_html_page_instead_of_a_model(tmp_path: Path) -> None:
    fake = tmp_path / "model.tflite"
    fake.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    path = write_config(tmp_path, model=fake)
    for args in (("run", "--config", str(path)), ("inspect", str(fake))):
        result = run_cli(*args)
        assert result.returncode == 66
        assert_one_clear_line(result.stderr, "model.tflite", "not a TFLite model", "HTML")


def test_truncated_model(tmp_path: Path) -> None:
    content = (MODELS / "digits_int8.tflite").read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(content[: len(content) // 3])
    result = run_cli("inspect", str(truncated))
    assert result.returncode == 66
    assert_one_clear_line(result.stderr, "truncated.tflite", "could not be loaded")


def test_model_input_cannot_be_fed_by_the_preprocessing(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="    preprocess:\n      color: gray\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "pipeline 'digits'", "[1, 32, 32, 3]",
                          "cannot be fed", "gray")


def test_labels_that_do_not_fit_the_model(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(12)))
    path = write_config(tmp_path, replace=(str(MODELS / "digits_labels.txt"), str(labels)))
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "12 labels", "10 classes")


def test_unreadable_video_file(tmp_path: Path) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x01 definitely not a video" * 50)
    path = write_config(tmp_path, source_type="video", source_path=str(video))
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 66
    assert_one_clear_line(result.stderr, "broken.mp4", "cannot be decoded")


def test_unset_environment_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, replace=("device_id: bad-input", "device_id: ${NO_SUCH_VAR}"))
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, f"{path}:1:", "NO_SUCH_VAR is not set")


def test_usage_error_exit_code() -> None:
    result = run_cli("predict")
    assert result.returncode == 64
    assert re.search(r"required", result.stderr)


def test_good_config_passes_check(tmp_path: Path) -> None:
    result = run_cli("check-config", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
