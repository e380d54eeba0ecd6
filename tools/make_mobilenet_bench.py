"""Build the untrained int8 MobileNetV2 used only to benchmark interpreter speed.

Writes ``mobilenet_v2_224_int8_untrained.tflite`` under ``--out-dir`` (default the
repository's ``models/``): Keras ``MobileNetV2(224x224x3, 1000 classes)`` with seeded random
weights (no download, NOT trained: its outputs are meaningless), fully int8-quantized with
int8 input and output. Then loads it with ai-edge-litert, prints the tensor details and the
median ``invoke()`` time.

Needs the optional ``tools`` extra (TensorFlow).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from numpy.typing import NDArray
from tensorflow import keras

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "models"
MODEL_FILENAME = "mobilenet_v2_224_int8_untrained.tflite"

SEED = 0
INPUT_SIZE_PX = 224
NUM_CLASSES = 1000
# MobileNetV2 expects pixels scaled to [-1, 1]; calibration images span that range.
CALIBRATION_RANGE = (-1.0, 1.0)
REPRESENTATIVE_SAMPLES = 16

NUM_THREADS = 1
WARMUP_INVOKES = 5
TIMED_INVOKES = 50
INT8_MIN, INT8_MAX = -128, 127
MS_PER_S = 1000.0


def build_model() -> keras.Model:
    """Randomly initialised (seeded) MobileNetV2 classifier."""
    keras.utils.set_random_seed(SEED)
    return keras.applications.MobileNetV2(
        input_shape=(INPUT_SIZE_PX, INPUT_SIZE_PX, 3), weights=None, classes=NUM_CLASSES
    )


def convert_to_int8(model: keras.Model) -> bytes:
    """Full-integer quantization with int8 input and output, calibrated on random images."""
    rng = np.random.default_rng(SEED)

    def representative() -> Iterator[list[NDArray[np.float32]]]:
        for _ in range(REPRESENTATIVE_SAMPLES):
            shape = (1, INPUT_SIZE_PX, INPUT_SIZE_PX, 3)
            yield [rng.uniform(*CALIBRATION_RANGE, shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def describe_tensor(detail: dict[str, object]) -> str:
    """One-line dtype/shape/quantization summary of an interpreter tensor."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    shape = [int(dim) for dim in detail["shape"]]
    return f"{detail['name']}: {dtype} {shape} scale={scale!r} zero_point={zero_point}"


def median_invoke_ms(model_path: Path) -> float:
    """Load with ai-edge-litert, print tensor details, return the median invoke time in ms."""
    interpreter = Interpreter(model_path=str(model_path), num_threads=NUM_THREADS)
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    print("input ", describe_tensor(input_detail))
    print("output", describe_tensor(output_detail))

    rng = np.random.default_rng(SEED)
    image = rng.integers(INT8_MIN, INT8_MAX + 1, input_detail["shape"], dtype=np.int8)
    interpreter.set_tensor(input_detail["index"], image)
    for _ in range(WARMUP_INVOKES):
        interpreter.invoke()
    durations_s = []
    for _ in range(TIMED_INVOKES):
        started = time.perf_counter()
        interpreter.invoke()
        durations_s.append(time.perf_counter() - started)
    output = interpreter.get_tensor(output_detail["index"])
    if output.shape != (1, NUM_CLASSES):
        raise RuntimeError(f"unexpected output shape {output.shape}")
    return statistics.median(durations_s) * MS_PER_S


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output folder (models/)"
    )
    return parser.parse_args()


def main() -> None:
    """Build, convert, write and time the benchmark model."""
    args = parse_args()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    model_path.write_bytes(convert_to_int8(build_model()))
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes)")
    median_ms = median_invoke_ms(model_path)
    print(
        f"median invoke: {median_ms:.2f} ms over {TIMED_INVOKES} runs "
        f"(num_threads={NUM_THREADS}, after {WARMUP_INVOKES} warm-up runs)"
    )


if __name__ == "__main__":
    main()
