"""`inspect` and `predict` on the real demo model."""

from __future__ import annotations

import hashlib
import json

import pytest

from edge_runtime.bundled import demo_config, models_dir
from tests.support.daemon import run_cli

MODELS = models_dir()


def test_inspect_reports_tensors_digest_and_backend() -> None:
    model = MODELS / "digits_int8.tflite"
    result = run_cli("inspect", str(model), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert report["size_bytes"] == model.stat().st_size
    assert report["backend"].startswith("litert ")
    (inp,) = report["inputs"]
    assert inp["shape"] == [1, 32, 32, 3] and inp["dtype"] == "uint8"
    assert inp["scale"] == pytest.approx(1 / 255) and inp["zero_point"] == 0
    (out,) = report["outputs"]
    assert out["shape"] == [1, 10]
    assert report["operators"].get("CONV_2D", 0) >= 1


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_predict_labels_held_out_frames(index: int) -> None:
    image = sorted((MODELS / "demo" / "digits").glob(f"{index:04d}_*.jpg"))[0]
    truth = image.stem.split("_")[1]
    result = run_cli("predict", "--config", str(demo_config()), "--input", str(image), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["frame"]["file"] == image.name
    assert payload["predictions"][0]["label"] == truth


def test_predict_missing_image_exit_66() -> None:
    result = run_cli("predict", "--config", str(demo_config()), "--input", "/nonexistent.jpg")
    assert result.returncode == 66
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
