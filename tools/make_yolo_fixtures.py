#!/usr/bin/env python3
"""Write two tiny int8 .tflite models with YOLO-style raw outputs, for decoder tests.

``yolo_v8_layout.tflite``: output (1, 4 + C, N), rows cx, cy, w, h, then C class scores
(Ultralytics v8 layout, no objectness). ``yolo_v5_layout.tflite``: output (1, N, 5 + C),
columns cx, cy, w, h, objectness, C class scores. Each output is a designed constant
(overlapping same-class boxes for NMS to suppress, boxes of other classes, low-score
boxes) plus a small input-dependent shift of the box centres, so the model really runs on
its input. See tests/models/README.md for the table of designed boxes.

Run: ``python tools/make_yolo_fixtures.py [--out-dir tests/models] [--box-units pixels]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

INPUT_SIZE_PX = 64
NUM_CLASSES = 3
GRID_STRIDES_PX = (8, 16, 32)  # Ultralytics strides: 8x8 + 4x4 + 2x2 = 84 candidates
NUM_CANDIDATES = sum((INPUT_SIZE_PX // s) ** 2 for s in GRID_STRIDES_PX)
CENTRE_SHIFT_PX = 0.5  # cx and cy grow by this times the mean input intensity (pixel/255)
# The last candidate is a zero-score box covering the whole input; its size pins the
# output range to [0, 63.75] px, so with pixel units the int8 step is exactly 0.25.
RANGE_BOX_PX = 63.75
RANGE_BOX_COLUMN = NUM_CANDIDATES - 1
CALIBRATION_SAMPLES = 32
SEED = 0

V8_FILE = "yolo_v8_layout.tflite"
V5_FILE = "yolo_v5_layout.tflite"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DesignedBox:
    """One designed candidate in input pixels; its score is objectness x class score."""

    column: int
    label: int
    cx: float
    cy: float
    w: float
    h: float
    objectness: float
    class_score: float


# Scores are multiples of 0.25, the int8 step of a pixel-unit output (see RANGE_BOX_PX).
# Duplicates overlap their best box by IoU > 0.7, so NMS at 0.45 or 0.7 removes them.
DESIGNED_BOXES: tuple[DesignedBox, ...] = (
    DesignedBox(3, 0, 20.0, 20.0, 16.0, 16.0, 1.0, 1.0),  # A: class 0, kept
    DesignedBox(12, 0, 21.0, 21.0, 16.0, 16.0, 0.75, 1.0),  # IoU 0.78 with A: suppressed
    DesignedBox(21, 0, 19.0, 19.0, 18.0, 18.0, 0.5, 1.0),  # IoU 0.79 with A: suppressed
    DesignedBox(30, 1, 46.0, 18.0, 14.0, 20.0, 1.0, 1.0),  # B: class 1, kept
    DesignedBox(39, 1, 47.0, 19.0, 14.0, 20.0, 0.75, 1.0),  # IoU 0.79 with B: suppressed
    DesignedBox(48, 2, 32.0, 46.0, 24.0, 14.0, 0.75, 1.0),  # C: class 2, alone, kept
    DesignedBox(57, 1, 21.0, 20.0, 16.0, 16.0, 1.0, 0.75),  # D: class 1 on A (IoU 0.88)
    DesignedBox(66, 2, 52.0, 52.0, 10.0, 10.0, 0.25, 1.0),  # low score: low objectness
    DesignedBox(75, 0, 8.0, 56.0, 10.0, 8.0, 1.0, 0.25),  # low score: low class score
)


def grid_candidates() -> FloatArray:
    """Background candidates (N, 4) cx, cy, w, h in pixels: one per grid cell, stride-sized."""
    rows = []
    for stride in GRID_STRIDES_PX:
        cells = INPUT_SIZE_PX // stride
        for row in range(cells):
            for col in range(cells):
                rows.append(((col + 0.5) * stride, (row + 0.5) * stride, stride, stride))
    return np.asarray(rows, np.float32)


def designed_predictions(box_scale: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Boxes (N, 4) cx, cy, w, h times `box_scale`, objectness (N,), class scores (N, C)."""
    boxes = grid_candidates()
    boxes[RANGE_BOX_COLUMN] = (INPUT_SIZE_PX / 2, INPUT_SIZE_PX / 2, RANGE_BOX_PX, RANGE_BOX_PX)
    objectness = np.zeros(NUM_CANDIDATES, np.float32)
    class_scores = np.zeros((NUM_CANDIDATES, NUM_CLASSES), np.float32)
    for box in DESIGNED_BOXES:
        boxes[box.column] = (box.cx, box.cy, box.w, box.h)
        objectness[box.column] = box.objectness
        class_scores[box.column, box.label] = box.class_score
    return boxes * box_scale, objectness, class_scores


def v8_constant(box_scale: float) -> tuple[FloatArray, FloatArray]:
    """(4 + C, N) designed output and its per-element input sensitivity; score = obj x class."""
    boxes, objectness, class_scores = designed_predictions(box_scale)
    constant = np.concatenate([boxes.T, (class_scores * objectness[:, None]).T]).astype(np.float32)
    shift = np.zeros_like(constant)
    shift[0:2] = CENTRE_SHIFT_PX * box_scale
    return constant, shift


def v5_constant(box_scale: float) -> tuple[FloatArray, FloatArray]:
    """(N, 5 + C) designed output and its per-element input sensitivity."""
    boxes, objectness, class_scores = designed_predictions(box_scale)
    constant = np.concatenate([boxes, objectness[:, None], class_scores], axis=1).astype(np.float32)
    shift = np.zeros_like(constant)
    shift[:, 0:2] = CENTRE_SHIFT_PX * box_scale
    return constant, shift


def convert(constant: FloatArray, shift: FloatArray, input_type: tf.DType) -> bytes:
    """Model: output = constant + shift * mean(image), image float in [0, 1]; full int8."""
    weights = tf.constant(shift.reshape(1, -1))
    bias = tf.constant(constant.reshape(-1))

    @tf.function(
        input_signature=[tf.TensorSpec([1, INPUT_SIZE_PX, INPUT_SIZE_PX, 3], tf.float32, "images")]
    )
    def predict(images: tf.Tensor) -> tf.Tensor:
        brightness = tf.reduce_mean(images, axis=[1, 2, 3])[:, None]  # (1, 1)
        flat = tf.matmul(brightness, weights) + bias  # becomes one FULLY_CONNECTED
        return tf.reshape(flat, (1, *constant.shape))

    def representative() -> Iterator[list[FloatArray]]:
        rng = np.random.default_rng(SEED)
        yield [np.zeros((1, INPUT_SIZE_PX, INPUT_SIZE_PX, 3), np.float32)]
        yield [np.ones((1, INPUT_SIZE_PX, INPUT_SIZE_PX, 3), np.float32)]
        for _ in range(CALIBRATION_SAMPLES):
            yield [rng.uniform(0.0, 1.0, (1, INPUT_SIZE_PX, INPUT_SIZE_PX, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [predict.get_concrete_function()], predict
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = input_type
    converter.inference_output_type = tf.int8
    converted: bytes = converter.convert()
    return converted


def describe(path: Path, expected: FloatArray) -> float:
    """Print tensor details; return the largest error of a mid-grey run against `expected`."""
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    for kind, detail in (("input", input_detail), ("output", output_detail)):
        scale, zero_point = detail["quantization"]
        print(
            f"{path.name} {kind}: {detail['name']} {np.dtype(detail['dtype']).name} "
            f"{[int(d) for d in detail['shape']]} scale={scale:.8g} zero_point={zero_point}"
        )
    in_scale, in_zero = input_detail["quantization"]
    grey = np.full(input_detail["shape"], round(0.5 / in_scale + in_zero), input_detail["dtype"])
    interpreter.set_tensor(input_detail["index"], grey)
    interpreter.invoke()
    out_scale, out_zero = output_detail["quantization"]
    raw = interpreter.get_tensor(output_detail["index"]).astype(np.float32)
    return float(np.abs((raw - out_zero) * out_scale - expected).max())


def main(argv: Sequence[str] | None = None) -> int:
    """Write both fixtures and check that each reproduces its designed output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parent.parent
    parser.add_argument("--out-dir", type=Path, default=repo / "tests" / "models")
    parser.add_argument(
        "--box-units",
        choices=("pixels", "normalised"),
        default="pixels",
        help="cx, cy, w, h in input pixels, or divided by the input size "
        "(as Ultralytics' TFLite export writes them)",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    box_scale = 1.0 if args.box_units == "pixels" else 1.0 / INPUT_SIZE_PX

    failed = False
    for name, (constant, shift), input_type in (
        (V8_FILE, v8_constant(box_scale), tf.uint8),
        (V5_FILE, v5_constant(box_scale), tf.int8),
    ):
        path = out_dir / name
        path.write_bytes(convert(constant, shift, input_type))
        expected = constant + shift * 0.5  # mid-grey input: mean intensity 0.5
        error = describe(path, expected[None])
        step = float(np.ptp(constant + shift)) / 255.0
        print(
            f"{name}: {path.stat().st_size} bytes, "
            f"max error on grey input {error:.4f} (int8 step {step:.4f})"
        )
        failed |= error > step
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
