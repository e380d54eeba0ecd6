"""A task that does not fit the model fails at start: exit 78, one line saying what to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bad_input import MODELS, assert_one_clear_line, write_config
from tests.support.daemon import run_cli

YOLO_V8 = Path(__file__).parent.parent / "models" / "yolo_v8_layout.tflite"
DIGITS_LABELS_LINE = f"      labels: {MODELS / 'digits_labels.txt'}\n"


def yolo_config(tmp_path: Path, task: str) -> Path:
    return write_config(tmp_path, model=YOLO_V8, extra=task,
                        replace=(DIGITS_LABELS_LINE, ""))


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_detection_task_on_a_classifier(tmp_path: Path, command: str) -> None:
    path = write_config(tmp_path, extra="    task: {type: detect}\n")
    args = [command, str(path)] if command == "check-config" else [command, "--config", str(path)]
    result = run_cli(*args)
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "pipeline 'digits'", "task 'detect'", "[1, 10]",
                          "looks like a classify model")


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_classification_task_on_a_detector(tmp_path: Path, command: str) -> None:
    path = yolo_config(tmp_path, "    task: {type: classify}\n")
    args = [command, str(path)] if command == "check-config" else [command, "--config", str(path)]
    result = run_cli(*args)
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "task 'classify'", "[1, 7, 84]",
                          "looks like a detect model")


def test_stated_layout_that_does_not_fit(tmp_path: Path) -> None:
    result = run_cli("check-config", str(yolo_config(
        tmp_path, "    task: {type: detect, layout: ssd}\n")))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "layout ssd", "TFLite_Detection_PostProcess",
                          "[1, 7, 84]")


def test_allow_list_naming_an_unknown_label(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    path = write_config(tmp_path, model=YOLO_V8,
                        extra="    task: {type: detect, classes: [dog, horse]}\n",
                        replace=(str(MODELS / "digits_labels.txt"), str(labels)))
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "'horse'", "cat, dog, bird")


def test_labels_with_more_classes_than_the_detector(tmp_path: Path) -> None:
    path = write_config(tmp_path, model=YOLO_V8, extra="    task: {type: detect}\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "10 labels", "3 classes")


def test_change_events_on_raw_outputs(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="    task: {type: raw}\n    events: {mode: change}\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, f"{path}:", "events.mode change", "raw")


def test_region_outside_the_frame(tmp_path: Path) -> None:
    path = yolo_config(tmp_path, "    task:\n      type: detect\n"
                       "      region: [[0, 0], [1.5, 0], [1, 1]]\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, f"{path}:", "region.1.0")
