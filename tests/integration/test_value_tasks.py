"""regress / anomaly / raw on a real model, checked against the interpreter run directly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.errors import ModelError
from edge_runtime.pipeline import ModelStages
from edge_runtime.types import Frame, OutputValue

MODELS = models_dir()
DIGITS = MODELS / "digits_int8.tflite"
FRAME = next(iter(sorted((MODELS / "demo" / "digits").glob("*.jpg"))))


def load(task: dict[str, Any], labels: bool = True) -> ModelStages:
    return ModelStages.load(PipelineConfig.model_validate({
        "name": "values", "source": {"type": "synthetic"},
        "model": {"path": str(DIGITS), "threads": 1,
                  "labels": str(MODELS / "digits_labels.txt") if labels else None},
        "task": task}), threads=1)


def interpreter_output(stages: ModelStages, frame: np.ndarray) -> np.ndarray:
    """The model's output for ``frame``, from a separate interpreter, dequantized here."""
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_path=str(DIGITS), num_threads=1)
    interpreter.allocate_tensors()
    buffer = stages.preprocessor.new_input_buffer()
    stages.preprocessor.fill_frame(Frame(0, 0.0, 0.0, image=frame), buffer)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], buffer)
    interpreter.invoke()
    detail = interpreter.get_output_details()[0]
    scale, zero_point = detail["quantization"]
    raw = np.asarray(interpreter.get_tensor(detail["index"]), np.float64)
    real: np.ndarray = (raw - zero_point) * scale
    return real


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    import cv2

    image = cv2.imread(str(FRAME), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image)


def test_regress_names_every_value_and_marks_the_threshold(frame: np.ndarray) -> None:
    stages = load({"type": "regress", "threshold": 0.5})
    expected = interpreter_output(stages, frame).reshape(-1)
    result = stages.process(frame)
    values = [p for p in result.predictions if isinstance(p, OutputValue)]
    assert [v.label for v in values] == [str(d) for d in range(10)]
    assert [v.value for v in values] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [v.above for v in values] == [bool(e >= 0.5) for e in expected]
    assert sum(bool(v.above) for v in values) == 1, "one digit wins clearly"
    assert result.extra == {}


def test_anomaly_with_per_name_thresholds(frame: np.ndarray) -> None:
    names = [f"score_{d}" for d in range(10)]
    stages = load({"type": "anomaly", "names": names, "threshold": {"score_3": 2.0}},
                  labels=False)
    result = stages.process(frame)
    assert [p.label for p in result.predictions] == names
    assert [p.above for p in result.predictions if isinstance(p, OutputValue)] == (
        [None] * 3 + [False] + [None] * 6)
    assert result.extra == {"anomalous": False}


def test_raw_outputs_as_lists(frame: np.ndarray) -> None:
    stages = load({"type": "raw", "decimals": 4})
    expected = interpreter_output(stages, frame)
    result = stages.process(frame)
    assert result.predictions == ()
    (output,) = result.extra["outputs"]
    assert output["shape"] == [1, 10]
    assert output["values"] == [pytest.approx(np.round(expected[0], 4).tolist(), abs=1e-9)]


def test_value_names_that_do_not_fit_the_model() -> None:
    with pytest.raises(ModelError, match="3 name"):
        load({"type": "regress", "names": ["a", "b", "c"]})
    with pytest.raises(ModelError, match=r"task\.threshold names nope"):
        load({"type": "regress", "threshold": {"nope": 1.0}})


def test_payload_of_values_is_json_ready(frame: np.ndarray) -> None:
    import json

    from edge_runtime.publishing.payload import payload_body

    stages = load({"type": "anomaly", "threshold": 0.5})
    body = payload_body(device="d", pipeline="values", task="anomaly", model_name="m",
                        model_sha256="0" * 64, result=stages.process(frame))
    decoded = json.loads(json.dumps(body))
    assert decoded["anomalous"] is True
    assert {"index", "label", "value", "above"} == decoded["predictions"][0].keys()
