"""Labels embedded in a model's TFLite metadata, written the way the metadata writers do."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.pipeline import ModelStages
from edge_runtime.runners.model_file import embedded_labels
from tests.support.tflite_edit import (
    DESCRIPTIONS,
    TENSOR_AXIS_LABELS,
    TENSOR_VALUE_LABELS,
    with_embedded_labels,
)

pytest.importorskip("ai_edge_litert.schema_py_generated")
MODELS = models_dir()
YOLO_V8 = Path(__file__).parent.parent / "models" / "yolo_v8_layout.tflite"
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.mark.parametrize("place", ["output", "subgraph", "model"])
def test_labels_file_found_wherever_the_metadata_attaches_it(place: str) -> None:
    model = (MODELS / "digits_int8.tflite").read_bytes()
    packed = with_embedded_labels(model, DIGIT_NAMES, place=place)  # type: ignore[arg-type]
    assert embedded_labels(packed) == ("labels.txt", "\n".join(DIGIT_NAMES) + "\n")


def test_value_labels_of_a_detector_output_are_found() -> None:
    model = YOLO_V8.read_bytes()
    packed = with_embedded_labels(model, ["cat", "dog", "bird"], file_name="labelmap.txt",
                                  file_type=TENSOR_VALUE_LABELS)
    assert embedded_labels(packed) == ("labelmap.txt", "cat\ndog\nbird\n")


def test_models_without_a_labels_file_have_none() -> None:
    model = (MODELS / "digits_int8.tflite").read_bytes()
    assert embedded_labels(model) is None  # other metadata entries, no TFLITE_METADATA
    readme = with_embedded_labels(model, ["not labels"], file_name="README.txt",
                                  file_type=DESCRIPTIONS)
    assert embedded_labels(readme) is None


def test_metadata_naming_a_file_the_zip_lacks_gives_none() -> None:
    model = (MODELS / "digits_int8.tflite").read_bytes()
    packed = with_embedded_labels(model, DIGIT_NAMES, file_type=TENSOR_AXIS_LABELS)
    flatbuffer_only = packed[:packed.rfind(b"PK\x03\x04")]  # cut the appended zip off
    assert embedded_labels(flatbuffer_only) is None


def test_pipeline_without_a_labels_file_uses_the_embedded_one(tmp_path: Path) -> None:
    model = tmp_path / "digits_with_labels.tflite"
    model.write_bytes(with_embedded_labels((MODELS / "digits_int8.tflite").read_bytes(),
                                           DIGIT_NAMES))
    config = PipelineConfig.model_validate({
        "name": "digits", "source": {"type": "synthetic"},
        "model": {"path": str(model), "threads": 1}, "task": {"type": "classify"}})
    stages = ModelStages.load(config, threads=1)  # the interpreter loads the packed model
    assert [stages.labels.name(i) for i in range(10)] == DIGIT_NAMES
