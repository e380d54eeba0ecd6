"""Build the demo digit classifier and its demo media from scikit-learn's bundled digits.

Outputs (under ``--out-dir``, default the repository's ``models/``):

* ``digits_int8.tflite``: full-integer model, input ``[1, 32, 32, 3]`` uint8 RGB, output
  ``[1, 10]`` uint8 softmax.
* ``digits_labels.txt``: one class name per line (``0`` .. ``9``).
* ``demo/digits/NNNN_L.jpg``: every held-out digit rendered once as a 128x128 BGR camera-like
  frame (NNNN = index in the held-out split, L = true label).
* ``demo/digits.mp4`` and ``demo/digits_labels.csv``: the same frames as a 10 fps video and
  its ``frame,label`` ground truth.

The frame -> tensor path is exactly the runtime's: ``cv2.imread`` (BGR) ->
``cv2.resize(frame, (32, 32), interpolation=cv2.INTER_LINEAR)`` -> ``cv2.cvtColor(BGR2RGB)``.
Training frames take the same path after a JPEG round trip at the shipped quality.

Needs the optional ``tools`` extra (TensorFlow, scikit-learn); ``ai-edge-litert`` verifies.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tensorflow import keras

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "models"

SEED = 0
SPLIT_RANDOM_STATE = 0
TEST_FRACTION = 0.3
TRAIN_RENDER_SEED = 1
HELDOUT_RENDER_SEED = 2

DIGIT_MAX_VALUE = 16.0  # sklearn digits pixel range is 0..16
FRAME_SIZE_PX = 128
GLYPH_SIZE_RANGE_PX = (60, 90)  # inclusive range of the upscaled 8x8 digit's side
MAX_OFFSET_PX = 10  # largest shift of the glyph from the frame centre, per axis
MIN_LUMA_CONTRAST = 90.0  # least |luma(fg) - luma(bg)|, in 0..255 units
NOISE_SIGMA_RANGE = (2.0, 6.0)  # gaussian pixel noise std dev, in 0..255 units
BLUR_SIGMA_RANGE_PX = (0.3, 1.2)  # gaussian blur std dev
JPEG_QUALITY = 95

MODEL_INPUT_SIZE_PX = 32
NUM_CLASSES = 10
PIXEL_MAX = 255.0
EXPECTED_INPUT_SCALE = 1.0 / PIXEL_MAX
EXPECTED_INPUT_ZERO_POINT = 0

TRAIN_RENDERS_PER_IMAGE = 12
EPOCHS = 14
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
REPRESENTATIVE_SAMPLES = 300

VIDEO_FPS = 10.0
VIDEO_FOURCC = "mp4v"

TARGET_JPEG_ACCURACY = 0.97
TARGET_VIDEO_ACCURACY = 0.95

# ITU-R BT.601 luma weights in BGR order.
LUMA_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299])

FloatArray = NDArray[np.float32]
ByteArray = NDArray[np.uint8]
IntArray = NDArray[np.int64]


def frame_to_tensor(frame_bgr: ByteArray) -> ByteArray:
    """Runtime preprocessing: stretch the whole frame to 32x32, BGR -> RGB, keep uint8."""
    size = (MODEL_INPUT_SIZE_PX, MODEL_INPUT_SIZE_PX)
    small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def jpeg_round_trip(frame_bgr: ByteArray) -> ByteArray:
    """Encode and decode a frame at the shipped JPEG quality."""
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _contrasting_colours(rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Random background and foreground BGR colours whose luma differs enough."""
    background = rng.uniform(0.0, PIXEL_MAX, 3)
    while True:
        foreground = rng.uniform(0.0, PIXEL_MAX, 3)
        if abs(float((foreground - background) @ LUMA_WEIGHTS_BGR)) >= MIN_LUMA_CONTRAST:
            return background.astype(np.float32), foreground.astype(np.float32)


def render_frame(digit_8x8: NDArray[np.float64], rng: np.random.Generator) -> ByteArray:
    """Draw one 8x8 digit as a noisy, blurred 128x128 BGR camera-like frame."""
    side = int(rng.integers(GLYPH_SIZE_RANGE_PX[0], GLYPH_SIZE_RANGE_PX[1] + 1))
    glyph = (digit_8x8.reshape(8, 8) / DIGIT_MAX_VALUE).astype(np.float32)
    alpha = np.clip(cv2.resize(glyph, (side, side), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    background, foreground = _contrasting_colours(rng)

    frame = np.empty((FRAME_SIZE_PX, FRAME_SIZE_PX, 3), np.float32)
    frame[:] = background
    centre = (FRAME_SIZE_PX - side) // 2
    top, left = centre + rng.integers(-MAX_OFFSET_PX, MAX_OFFSET_PX + 1, 2)
    top = int(np.clip(top, 0, FRAME_SIZE_PX - side))
    left = int(np.clip(left, 0, FRAME_SIZE_PX - side))
    a = alpha[..., None]
    frame[top : top + side, left : left + side] = background * (1.0 - a) + foreground * a

    frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(*BLUR_SIGMA_RANGE_PX)))
    frame += rng.normal(0.0, rng.uniform(*NOISE_SIGMA_RANGE), frame.shape).astype(np.float32)
    return np.clip(np.rint(frame), 0, PIXEL_MAX).astype(np.uint8)


def render_training_set(
    images: NDArray[np.float64], labels: IntArray
) -> tuple[ByteArray, IntArray]:
    """Several augmented renders per training image, preprocessed like shipped JPEGs."""
    rng = np.random.default_rng(TRAIN_RENDER_SEED)
    tensors = [
        frame_to_tensor(jpeg_round_trip(render_frame(image, rng)))
        for image in images
        for _ in range(TRAIN_RENDERS_PER_IMAGE)
    ]
    return np.stack(tensors), np.repeat(labels, TRAIN_RENDERS_PER_IMAGE)


def build_model() -> keras.Model:
    """Small CNN on real-valued RGB input in [0, 1] (pixel / 255)."""
    layers = keras.layers

    def conv_block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((MODEL_INPUT_SIZE_PX, MODEL_INPUT_SIZE_PX, 3), name="image")
    x = conv_block(inputs, 16)
    x = conv_block(x, 16)
    x = layers.MaxPooling2D()(x)
    x = conv_block(x, 32)
    x = conv_block(x, 32)
    x = layers.MaxPooling2D()(x)
    x = conv_block(x, 64)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(x_uint8: ByteArray, y: IntArray) -> keras.Model:
    """Train the CNN on pixel / 255 and return the Keras model."""
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    order = np.random.default_rng(SEED).permutation(len(y))
    x = x_uint8[order].astype(np.float32) / PIXEL_MAX
    y = y[order]

    model = build_model()
    steps = int(np.ceil(len(y) / BATCH_SIZE)) * EPOCHS
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        verbose=2,
    )
    return model


def convert_to_int8(model: keras.Model, calibration_uint8: ByteArray) -> bytes:
    """Full-integer quantization with uint8 input and output."""

    def representative() -> Iterator[list[FloatArray]]:
        for tensor in calibration_uint8:
            yield [tensor[None].astype(np.float32) / PIXEL_MAX]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return bytes(converter.convert())


def write_demo_media(frames: list[ByteArray], labels: IntArray, out_dir: Path) -> None:
    """Write held-out JPEGs, the mp4 of the same frames, and the per-frame label CSV."""
    jpeg_dir = out_dir / "demo" / "digits"
    jpeg_dir.mkdir(parents=True, exist_ok=True)
    for stale in jpeg_dir.glob("*.jpg"):
        stale.unlink()
    for index, (frame, label) in enumerate(zip(frames, labels, strict=True)):
        path = jpeg_dir / f"{index:04d}_{label}.jpg"
        if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise RuntimeError(f"cannot write {path}")

    video_path = out_dir / "demo" / "digits.mp4"
    writer = cv2.VideoWriter(
        str(video_path),
        cv2.VideoWriter_fourcc(*VIDEO_FOURCC),
        VIDEO_FPS,
        (FRAME_SIZE_PX, FRAME_SIZE_PX),
    )
    if not writer.isOpened():
        raise RuntimeError(f"cannot open video writer for {video_path}")
    for frame in frames:
        writer.write(frame)
    writer.release()

    with (out_dir / "demo" / "digits_labels.csv").open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["frame", "label"])
        out.writerows((index, int(label)) for index, label in enumerate(labels))


class LiteClassifier:
    """ai-edge-litert interpreter wrapper that classifies BGR frames via the runtime path."""

    def __init__(self, model_path: Path) -> None:
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def predict(self, frame_bgr: ByteArray) -> int:
        """Top-1 class of one BGR frame."""
        self.interpreter.set_tensor(self.input["index"], frame_to_tensor(frame_bgr)[None])
        self.interpreter.invoke()
        return int(np.argmax(self.interpreter.get_tensor(self.output["index"])[0]))


def read_demo_jpegs(jpeg_dir: Path) -> tuple[list[ByteArray], IntArray]:
    """Frames (``cv2.imread``, BGR) and true labels of the ``NNNN_L.jpg`` files, in order."""
    paths = sorted(jpeg_dir.glob("*.jpg"))
    frames = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths]
    labels = np.array([int(path.stem.split("_")[1]) for path in paths], np.int64)
    return frames, labels


def lite_accuracy(classifier: LiteClassifier, frames: list[ByteArray], labels: IntArray) -> float:
    """Top-1 accuracy of the TFLite model over BGR frames."""
    predictions = [classifier.predict(frame) for frame in frames]
    return float(np.mean(np.array(predictions) == labels))


def keras_accuracy(model: keras.Model, frames: list[ByteArray], labels: IntArray) -> float:
    """Top-1 accuracy of the float Keras model over BGR frames (same preprocessing)."""
    x = np.stack([frame_to_tensor(frame) for frame in frames]).astype(np.float32) / PIXEL_MAX
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == labels))


def read_video(video_path: Path) -> list[ByteArray]:
    """All frames of a video decoded with ``cv2.VideoCapture`` (BGR)."""
    capture = cv2.VideoCapture(str(video_path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def describe_tensor(detail: dict[str, object]) -> str:
    """One-line dtype/shape/quantization summary of an interpreter tensor."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    shape = [int(dim) for dim in detail["shape"]]
    return f"{detail['name']}: {dtype} {shape} scale={scale!r} zero_point={zero_point}"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output folder (models/)"
    )
    return parser.parse_args()


def main() -> None:
    """Train, convert, write the model and demo media, then verify with ai-edge-litert."""
    args = parse_args()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data,
        digits.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_RANDOM_STATE,
        stratify=digits.target,
    )
    print(f"split: {len(y_train)} train / {len(y_test)} held-out images")

    train_tensors, train_labels = render_training_set(x_train, y_train)
    print(f"rendered {len(train_labels)} training frames")
    model = train(train_tensors, train_labels)

    heldout_rng = np.random.default_rng(HELDOUT_RENDER_SEED)
    heldout_frames = [render_frame(image, heldout_rng) for image in x_test]
    write_demo_media(heldout_frames, y_test, out_dir)

    calibration = train_tensors[
        np.random.default_rng(SEED).choice(len(train_tensors), REPRESENTATIVE_SAMPLES, False)
    ]
    model_path = out_dir / "digits_int8.tflite"
    model_path.write_bytes(convert_to_int8(model, calibration))
    (out_dir / "digits_labels.txt").write_text(
        "".join(f"{label}\n" for label in range(NUM_CLASSES))
    )

    classifier = LiteClassifier(model_path)
    print("input ", describe_tensor(classifier.input))
    print("output", describe_tensor(classifier.output))
    scale, zero_point = classifier.input["quantization"]
    if not (np.isclose(scale, EXPECTED_INPUT_SCALE) and zero_point == EXPECTED_INPUT_ZERO_POINT):
        raise RuntimeError(f"input quantization {scale}, {zero_point} is not 1/255, 0")

    jpeg_frames, jpeg_labels = read_demo_jpegs(out_dir / "demo" / "digits")
    if not np.array_equal(jpeg_labels, y_test):
        raise RuntimeError("demo JPEG labels do not match the held-out split")
    video_frames = read_video(out_dir / "demo" / "digits.mp4")
    if len(video_frames) != len(y_test):
        raise RuntimeError(f"video has {len(video_frames)} frames, expected {len(y_test)}")
    float_acc = keras_accuracy(model, jpeg_frames, y_test)
    jpeg_acc = lite_accuracy(classifier, jpeg_frames, y_test)
    video_acc = lite_accuracy(classifier, video_frames, y_test)
    print(f"held-out JPEG top-1 accuracy, float Keras: {float_acc:.4f} ({len(y_test)} frames)")
    print(f"held-out JPEG top-1 accuracy, int8 TFLite: {jpeg_acc:.4f}")
    print(f"held-out mp4 top-1 accuracy, int8 TFLite:  {video_acc:.4f}")
    print(f"model size: {model_path.stat().st_size} bytes")
    print(f"elapsed: {time.monotonic() - started:.0f} s")
    if jpeg_acc < TARGET_JPEG_ACCURACY or video_acc < TARGET_VIDEO_ACCURACY:
        raise SystemExit(
            f"below target: JPEG {jpeg_acc:.4f} < {TARGET_JPEG_ACCURACY} or "
            f"mp4 {video_acc:.4f} < {TARGET_VIDEO_ACCURACY}"
        )


if __name__ == "__main__":
    main()
