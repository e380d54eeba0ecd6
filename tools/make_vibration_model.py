"""Train and export the int8 vibration demo model on a synthetic motor data set.

Run from the repository root (needs the ``tools`` extra: TensorFlow, ai-edge-litert)::

    python tools/make_vibration_model.py [--out-dir models] [--seed 0]

Writes ``vibration_int8.tflite``, ``vibration_labels.txt``, ``demo/vibration_heldout.csv``
and ``demo/vibration_norm.json`` under ``--out-dir``, then checks the int8 model on the
held-out CSV through the same path the runtime uses and fails if accuracy is below 95 %.

Synthetic data set
------------------
A 3-axis MEMS accelerometer on top of a motor's bearing housing, sampled at
``f_s = 1000 Hz``, values in g. ``ax`` is horizontal radial, ``ay`` axial (along the
shaft), ``az`` vertical radial (it also carries gravity). Every recording is one machine
state with its own random parameters (``U(a, b)`` = uniform, ``N(0, s^2)`` = Gaussian,
``phi`` = a phase drawn from ``U(0, 2 pi)`` independently per axis and component).

Common to every state, per axis ``c``::

    a_c(t) = g_c + b_c + n_c(t) + s_c(t)
    g = (0, 0, 1) g            gravity
    b_c ~ U(-0.02, 0.02) g     sensor bias
    n_c(t) ~ N(0, sigma^2)     sensor noise, sigma ~ U(0.003, 0.02) g per recording

then rounded to the sensor resolution of 1e-4 g. The state signal ``s_c(t)``:

``off``
    ``s_c(t) = 0``: sensor noise only.

``normal``
    Running speed ``f_r ~ U(22, 28) Hz`` (about 25 Hz), drifting slowly,
    ``f(t) = f_r (1 + d sin(2 pi t / T_d + phi))`` with ``d ~ U(0, 0.01)``,
    ``T_d ~ U(2, 6) s``; shaft angle ``theta(t) = 2 pi integral f dt``. Residual imbalance
    and misalignment give the fundamental and small harmonics::

        s_c(t) = w_c A_1 [sin(theta + phi) + h_2 sin(2 theta + phi) + h_3 sin(3 theta + phi)]
        A_1 ~ U(0.015, 0.05) g, h_2 ~ U(0.2, 0.5), h_3 ~ U(0.05, 0.25)
        w_x = w_z = 1 (radial), w_y ~ U(0.2, 0.5) (axial)

``imbalance``
    The ``normal`` signal plus a strong once-per-revolution force rotating with the shaft,
    seen as an elliptical orbit on the radial axes and weakly on the axial one::

        x: A_u cos(theta + phi_u),  z: A_u e sin(theta + phi_u),  y: A_u r sin(theta + phi)
        A_u ~ U(0.15, 0.5) g, e ~ U(0.6, 1.0), r ~ U(0.05, 0.2)

``bearing_fault``
    The ``normal`` signal plus a local defect struck at ``f_d = k f_r`` with
    ``k ~ U(3.0, 5.0)`` (bearing defect order); impact times ``t_i = i / f_d + j_i`` with
    slip jitter ``j_i ~ N(0, (0.01 / f_d)^2)``. Each impact rings a structural resonance
    ``f_n ~ U(250, 420) Hz`` (below the 500 Hz Nyquist limit) with damping
    ``zeta ~ U(0.03, 0.08)``, and the impact strength is modulated by the load zone at the
    shaft rate::

        s_c(t) = w_c sum_i A_b (1 + m cos(2 pi f_r t_i + phi_m)) / (1 + m) h(t - t_i)
        h(t) = exp(-zeta 2 pi f_n t) sin(2 pi f_n sqrt(1 - zeta^2) t),  t >= 0
        A_b ~ U(0.05, 0.3) g, m ~ U(0.3, 0.9), w_x, w_z ~ U(0.6, 1.0), w_y ~ U(0.1, 0.4)

The ranges leave a gap between ``normal`` and ``imbalance`` (the 1x amplitude of
``imbalance`` on ``ax`` is at least 0.15 - 0.05 = 0.10 g, that of ``normal`` at most 0.05 g) but
overlap elsewhere: a weak bearing fault can hide under the running components.

Training recordings (``--seed``, 160 per state, 2 s each) and held-out recordings
(``--seed + 1``, six 8 s segments) come from different random streams. Windows are
256 samples (0.256 s) with a hop of 128; each channel is normalised as
``(value - mean) / std`` with mean and std over every training sample.

Model
-----
Input ``[1, 256, 3]`` int8 -> subtract the window's per-channel mean -> three strided
ReLU ``Conv1D`` (16, 24, 32 filters) -> global average -> ``Dense(4)`` softmax ->
``[1, 4]`` int8, trained with Adam for a fixed number of epochs, quantized with training
windows as the representative data set.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

FloatArray = npt.NDArray[np.float64]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "models"

LABELS: tuple[str, ...] = ("off", "normal", "imbalance", "bearing_fault")
AXES: tuple[str, ...] = ("ax", "ay", "az")

RATE_HZ = 1000
WINDOW_SAMPLES = 256
HOP_SAMPLES = 128
SENSOR_RESOLUTION_G = 1e-4
CSV_DECIMALS = 4  # matches SENSOR_RESOLUTION_G
TIME_DECIMALS = 3  # one sample period at RATE_HZ
GRAVITY_G = np.array([0.0, 0.0, 1.0])  # az is vertical
SENSOR_BIAS_MAX_G = 0.02
SENSOR_NOISE_RANGE_G = (0.003, 0.02)

RUN_SPEED_RANGE_HZ = (22.0, 28.0)
SPEED_DRIFT_MAX = 0.01  # relative
SPEED_DRIFT_PERIOD_RANGE_S = (2.0, 6.0)
FUNDAMENTAL_RANGE_G = (0.015, 0.05)
HARMONIC2_RANGE = (0.2, 0.5)  # relative to the fundamental
HARMONIC3_RANGE = (0.05, 0.25)
AXIAL_WEIGHT_RANGE = (0.2, 0.5)

IMBALANCE_RANGE_G = (0.15, 0.5)
IMBALANCE_ELLIPTICITY_RANGE = (0.6, 1.0)
IMBALANCE_AXIAL_RANGE = (0.05, 0.2)

DEFECT_ORDER_RANGE = (3.0, 5.0)  # defect frequency / running speed
DEFECT_SLIP_JITTER = 0.01  # std of impact timing, fraction of the defect period
RESONANCE_RANGE_HZ = (250.0, 420.0)
RESONANCE_DAMPING_RANGE = (0.03, 0.08)
RESONANCE_DECAY_CONSTANTS = 6.0  # impulse response kept for this many time constants
IMPACT_RANGE_G = (0.05, 0.3)
IMPACT_MODULATION_RANGE = (0.3, 0.9)
IMPACT_RADIAL_WEIGHT_RANGE = (0.6, 1.0)
IMPACT_AXIAL_WEIGHT_RANGE = (0.1, 0.4)

TRAIN_RECORDINGS_PER_STATE = 160
TRAIN_RECORDING_S = 2.0
HELDOUT_SEGMENT_S = 8.0
HELDOUT_SEQUENCE: tuple[str, ...] = ("off", "normal", "imbalance", "bearing_fault", "normal", "off")

EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
REPRESENTATIVE_WINDOWS = 400
MIN_ACCURACY = 0.95
NORM_DECIMALS = 6
TIMING_WARMUP_INVOKES = 20
INT8 = np.iinfo(np.int8)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel constants of ``real = (value - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def load(cls, path: Path) -> Normalisation:
        """Read the ``mean``/``std`` lists of a ``vibration_norm.json``."""
        config = json.loads(path.read_text())
        mean, std = config["mean"], config["std"]
        return cls(mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]))

    def apply(self, samples: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
        """Normalise ``(..., 3)`` samples to float32."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (samples.astype(np.float32) - mean) / std


def shaft_angle(rng: np.random.Generator, t: FloatArray) -> tuple[float, FloatArray]:
    """Draw a running speed (Hz) with slow drift and return it with the shaft angle (rad)."""
    f_r = rng.uniform(*RUN_SPEED_RANGE_HZ)
    drift = rng.uniform(0.0, SPEED_DRIFT_MAX)
    period_s = rng.uniform(*SPEED_DRIFT_PERIOD_RANGE_S)
    f_t = f_r * (1.0 + drift * np.sin(2 * np.pi * t / period_s + rng.uniform(0, 2 * np.pi)))
    theta = 2 * np.pi * np.cumsum(f_t) / RATE_HZ + rng.uniform(0, 2 * np.pi)
    return f_r, theta


def running_signal(rng: np.random.Generator, theta: FloatArray) -> FloatArray:
    """Fundamental plus 2x and 3x harmonics of a healthy running motor, ``(N, 3)`` in g."""
    a1 = rng.uniform(*FUNDAMENTAL_RANGE_G)
    orders = (1.0, 2.0, 3.0)
    gains = (1.0, rng.uniform(*HARMONIC2_RANGE), rng.uniform(*HARMONIC3_RANGE))
    weights = (1.0, rng.uniform(*AXIAL_WEIGHT_RANGE), 1.0)
    signal = np.zeros((theta.size, 3))
    for axis, weight in enumerate(weights):
        for order, gain in zip(orders, gains, strict=True):
            phase = rng.uniform(0, 2 * np.pi)
            signal[:, axis] += weight * a1 * gain * np.sin(order * theta + phase)
    return signal


def imbalance_signal(rng: np.random.Generator, theta: FloatArray) -> FloatArray:
    """Strong 1x rotating force: elliptical radial orbit, weak axial part, ``(N, 3)`` in g."""
    a_u = rng.uniform(*IMBALANCE_RANGE_G)
    phase = rng.uniform(0, 2 * np.pi)
    signal = np.empty((theta.size, 3))
    signal[:, 0] = a_u * np.cos(theta + phase)
    axial_phase = rng.uniform(0, 2 * np.pi)
    signal[:, 1] = a_u * rng.uniform(*IMBALANCE_AXIAL_RANGE) * np.sin(theta + axial_phase)
    signal[:, 2] = a_u * rng.uniform(*IMBALANCE_ELLIPTICITY_RANGE) * np.sin(theta + phase)
    return signal


def bearing_fault_signal(rng: np.random.Generator, t: FloatArray, f_r: float) -> FloatArray:
    """Amplitude-modulated impacts at the defect frequency ringing a resonance, ``(N, 3)`` in g."""
    f_d = rng.uniform(*DEFECT_ORDER_RANGE) * f_r
    f_n = rng.uniform(*RESONANCE_RANGE_HZ)
    zeta = rng.uniform(*RESONANCE_DAMPING_RANGE)
    a_b = rng.uniform(*IMPACT_RANGE_G)
    depth = rng.uniform(*IMPACT_MODULATION_RANGE)
    mod_phase = rng.uniform(0, 2 * np.pi)

    duration_s = t.size / RATE_HZ
    n_impacts = math.ceil(duration_s * f_d) + 1
    impact_t = (np.arange(n_impacts) + rng.uniform()) / f_d
    impact_t += rng.normal(0.0, DEFECT_SLIP_JITTER / f_d, n_impacts)
    impact_t = impact_t[(impact_t >= 0) & (impact_t < duration_s)]
    strength = a_b * (1 + depth * np.cos(2 * np.pi * f_r * impact_t + mod_phase)) / (1 + depth)
    train = np.zeros(t.size)
    np.add.at(train, np.round(impact_t * RATE_HZ).astype(int).clip(0, t.size - 1), strength)

    decay_per_s = zeta * 2 * np.pi * f_n
    tau = np.arange(math.ceil(RESONANCE_DECAY_CONSTANTS / decay_per_s * RATE_HZ)) / RATE_HZ
    response = np.exp(-decay_per_s * tau) * np.sin(2 * np.pi * f_n * math.sqrt(1 - zeta**2) * tau)
    ringing = np.convolve(train, response)[: t.size]

    weights = np.array(
        [
            rng.uniform(*IMPACT_RADIAL_WEIGHT_RANGE),
            rng.uniform(*IMPACT_AXIAL_WEIGHT_RANGE),
            rng.uniform(*IMPACT_RADIAL_WEIGHT_RANGE),
        ]
    )
    signal: FloatArray = ringing[:, None] * weights[None, :]
    return signal


def make_recording(rng: np.random.Generator, state: str, duration_s: float) -> FloatArray:
    """One recording of ``state``: ``(N, 3)`` accelerations in g at RATE_HZ."""
    n = round(duration_s * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    signal = np.zeros((n, 3))
    if state != "off":
        f_r, theta = shaft_angle(rng, t)
        signal += running_signal(rng, theta)
        if state == "imbalance":
            signal += imbalance_signal(rng, theta)
        elif state == "bearing_fault":
            signal += bearing_fault_signal(rng, t, f_r)
    bias = rng.uniform(-SENSOR_BIAS_MAX_G, SENSOR_BIAS_MAX_G, 3)
    noise = rng.normal(0.0, rng.uniform(*SENSOR_NOISE_RANGE_G), (n, 3))
    samples = GRAVITY_G + bias + noise + signal
    return np.round(samples / SENSOR_RESOLUTION_G) * SENSOR_RESOLUTION_G


def cut_windows(samples: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``(N, 3)`` -> ``(M, WINDOW_SAMPLES, 3)`` windows every HOP_SAMPLES samples."""
    view = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_SAMPLES, axis=0)
    return view[::HOP_SAMPLES].transpose(0, 2, 1)  # (M, 3, W) -> (M, W, 3)


def make_training_set(seed: int) -> tuple[list[FloatArray], list[int]]:
    """Training recordings of every state, interleaved, with their class indices."""
    rng = np.random.default_rng(seed)
    recordings: list[FloatArray] = []
    classes: list[int] = []
    for _ in range(TRAIN_RECORDINGS_PER_STATE):
        for index, state in enumerate(LABELS):
            recordings.append(make_recording(rng, state, TRAIN_RECORDING_S))
            classes.append(index)
    return recordings, classes


def fit_normalisation(recordings: list[FloatArray]) -> Normalisation:
    """Per-channel mean and std over every training sample, rounded for the config."""
    samples = np.concatenate(recordings)
    mean = np.round(samples.mean(axis=0), NORM_DECIMALS)
    std = np.round(samples.std(axis=0), NORM_DECIMALS)
    return Normalisation(
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
    )


def write_heldout_csv(path: Path, seed: int) -> None:
    """Contiguous held-out segments (HELDOUT_SEQUENCE) as ``t,ax,ay,az,label``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["t", *AXES, "label"])
        for state in HELDOUT_SEQUENCE:
            segment = make_recording(rng, state, HELDOUT_SEGMENT_S)
            for offset, (ax, ay, az) in enumerate(segment):
                t_s = (start + offset) / RATE_HZ
                values = (f"{value:.{CSV_DECIMALS}f}" for value in (ax, ay, az))
                writer.writerow([f"{t_s:.{TIME_DECIMALS}f}", *values, state])
            start += len(segment)


def read_heldout_windows(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Windows of the held-out CSV that lie inside one state, with their class indices."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    samples = np.array([[float(row[axis]) for axis in AXES] for row in rows], dtype=np.float32)
    classes = np.array([LABELS.index(row["label"]) for row in rows])
    sample_windows = cut_windows(samples)
    class_windows = cut_windows(classes[:, None])[:, :, 0]
    pure = (class_windows == class_windows[:, :1]).all(axis=1)
    return sample_windows[pure], class_windows[pure, 0]


def build_model(batch_size: int | None = None) -> tf.keras.Model:
    """Small 1-D CNN: window DC removal, strided convolutions, mean energy, softmax.

    Subtracting each window's mean makes the classes independent of sensor bias and
    mounting angle (gravity), which otherwise leak through ReLU into the features.
    """
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(WINDOW_SAMPLES, len(AXES)), batch_size=batch_size, name="window")
    x = layers.Subtract()([inputs, layers.GlobalAveragePooling1D(keepdims=True)(inputs)])
    x = layers.Conv1D(16, 9, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(24, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name="vibration_cnn")


def train(
    windows: npt.NDArray[np.float32], classes: npt.NDArray[np.int64], seed: int
) -> tf.keras.Model:
    """Fit the CNN on normalised training windows ``(M, WINDOW_SAMPLES, 3)``."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(windows, classes, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=2)
    return model


def convert_int8(model: tf.keras.Model, representative: npt.NDArray[np.float32]) -> bytes:
    """Full-integer int8 TFLite flatbuffer with a fixed ``[1, WINDOW_SAMPLES, 3]`` input."""
    export_model = build_model(batch_size=1)  # fixed [1, 256, 3] input tensor
    export_model.set_weights(model.get_weights())

    def samples() -> Iterator[list[npt.NDArray[np.float32]]]:
        for window in representative:
            yield [window[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(export_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flatbuffer: bytes = converter.convert()
    return flatbuffer


@dataclass(frozen=True)
class Verification:
    """Result of running the int8 model over the held-out windows."""

    accuracy: float
    windows: int
    confusion: npt.NDArray[np.int64]  # (true, predicted)
    median_invoke_us: float
    tensors: tuple[str, str]  # input and output: name, dtype, shape, scale, zero point


def describe_tensor(detail: dict[str, Any]) -> str:
    """One line with a tensor's name, dtype, shape and quantization."""
    scale, zero_point = detail["quantization"]
    return (
        f"{detail['name']} {np.dtype(detail['dtype']).name} {detail['shape'].tolist()} "
        f"scale={scale!r} zero_point={zero_point}"
    )


def verify(model_path: Path, csv_path: Path, norm_path: Path) -> Verification:
    """Run held-out windows the runtime's way: normalise, quantize, invoke, dequantize, argmax."""
    norm = Normalisation.load(norm_path)
    windows, classes = read_heldout_windows(csv_path)
    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    in_scale, in_zero = input_detail["quantization"]
    out_scale, out_zero = output_detail["quantization"]

    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    invoke_s: list[float] = []
    for index, (window, true_class) in enumerate(zip(windows, classes, strict=True)):
        real = norm.apply(window)
        quantized = np.clip(np.round(real / in_scale) + in_zero, INT8.min, INT8.max).astype(np.int8)
        interpreter.set_tensor(input_detail["index"], quantized[None])
        started = time.perf_counter()
        interpreter.invoke()
        elapsed = time.perf_counter() - started
        if index >= TIMING_WARMUP_INVOKES:
            invoke_s.append(elapsed)
        quantized_scores = interpreter.get_tensor(output_detail["index"])[0]  # (4,) int8
        scores = (quantized_scores.astype(np.float32) - out_zero) * out_scale
        confusion[true_class, int(np.argmax(scores))] += 1
    return Verification(
        accuracy=float(np.trace(confusion) / confusion.sum()),
        windows=int(confusion.sum()),
        confusion=confusion,
        median_invoke_us=float(np.median(invoke_s) * 1e6),
        tensors=(describe_tensor(input_detail), describe_tensor(output_detail)),
    )


def main() -> None:
    """Generate data, train, export, verify."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output directory (default: models/)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed; held-out data uses seed + 1"
    )
    args = parser.parse_args()
    out_dir: Path = args.out_dir
    model_path = out_dir / "vibration_int8.tflite"
    labels_path = out_dir / "vibration_labels.txt"
    csv_path = out_dir / "demo" / "vibration_heldout.csv"
    norm_path = out_dir / "demo" / "vibration_norm.json"

    recordings, recording_classes = make_training_set(args.seed)
    norm = fit_normalisation(recordings)
    print(f"normalisation ({', '.join(AXES)}, g): mean={list(norm.mean)} std={list(norm.std)}")
    per_recording = [norm.apply(cut_windows(recording)) for recording in recordings]
    windows = np.concatenate(per_recording)
    classes = np.repeat(recording_classes, [len(w) for w in per_recording])
    print(f"training windows: {len(windows)} from {len(recordings)} recordings")

    model = train(windows, classes, args.seed)
    picks = np.random.default_rng(args.seed).choice(
        len(windows), REPRESENTATIVE_WINDOWS, replace=False
    )
    flatbuffer = convert_int8(model, windows[picks])

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(flatbuffer)
    labels_path.write_text("".join(f"{label}\n" for label in LABELS))
    write_heldout_csv(csv_path, args.seed + 1)
    norm_path.parent.mkdir(parents=True, exist_ok=True)
    norm_config = {
        "mean": list(norm.mean),
        "std": list(norm.std),
        "window": WINDOW_SAMPLES,
        "hop": HOP_SAMPLES,
        "rate_hz": RATE_HZ,
    }
    norm_path.write_text(json.dumps(norm_config, indent=2) + "\n")

    heldout_windows, heldout_classes = read_heldout_windows(csv_path)
    float_scores = model.predict(norm.apply(heldout_windows), verbose=0)
    float_accuracy = float(np.mean(np.argmax(float_scores, axis=1) == heldout_classes))
    result = verify(model_path, csv_path, norm_path)
    print(f"input  {result.tensors[0]}")
    print(f"output {result.tensors[1]}")
    print(f"held-out float accuracy: {float_accuracy:.4f}")
    print(f"held-out int8 accuracy: {result.accuracy:.4f} on {result.windows} windows")
    print(f"confusion (rows true, columns predicted; {', '.join(LABELS)}):\n{result.confusion}")
    print(f"median invoke: {result.median_invoke_us:.1f} us (num_threads=1)")
    for path in (model_path, labels_path, csv_path, norm_path):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    if result.accuracy < MIN_ACCURACY:
        raise SystemExit(f"int8 accuracy {result.accuracy:.4f} is below {MIN_ACCURACY}")


if __name__ == "__main__":
    main()
