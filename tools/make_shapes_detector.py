#!/usr/bin/env python3
"""Train the demo shapes detector and write it with its labels and demo scenes.

Synthetic camera-like scenes (noisy textured backgrounds, random lighting) hold 1-3
coloured shapes: circle, square, triangle. A small SSD-style detector is trained on them
in Keras, exported through a SavedModel whose post-processing is the
``TFLite_Detection_PostProcess`` custom op, quantized to full int8 with a uint8 input,
and verified with ai-edge-litert on the held-out JPEGs through the runtime's own path
(imread -> stretch resize -> RGB -> uint8 tensor -> boxes back in frame pixels).

Run: ``python tools/make_shapes_detector.py [--out-dir models]``. Deterministic for a
given seed on a given machine; takes about 10-12 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import flatbuffers
import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

LABELS: tuple[str, ...] = ("circle", "square", "triangle")
NUM_CLASSES = len(LABELS)

# Scenes: 4:3 camera frames, stretched to the square model input as the runtime does.
FRAME_W_PX = 192
FRAME_H_PX = 144
MODEL_SIZE_PX = 128
SHAPE_SIZE_RANGE_PX = (20.0, 60.0)  # largest side of a shape's box, in frame pixels
SHAPES_PER_SCENE_RANGE = (1, 3)
SHAPE_GAP_PX = 4.0  # shapes never touch, so class-agnostic NMS never merges two
PLACEMENT_ATTEMPTS = 50
MIN_COLOUR_CONTRAST = 80.0  # Euclidean BGR distance between a shape and its background
JPEG_QUALITY = 95
VIDEO_FPS = 10.0

# Data set sizes and seeds.
TRAIN_SCENES = 6000
HELD_OUT_SCENES = 200
CALIBRATION_SCENES = 200
TRAIN_SEED = 1
HELD_OUT_SEED = 2
TRAINING_SEED = 3

# SSD anchors: two feature maps; anchor sizes are square in frame pixels.
FEATURE_STRIDES_PX = (8, 16)  # model pixels per feature-map cell
ANCHOR_SIZES_PX: tuple[tuple[float, ...], ...] = ((20.0, 28.0), (40.0, 56.0))
MATCH_IOU = 0.5  # an anchor at or above this IoU with a shape is positive
BACKGROUND_IOU = 0.4  # below this it is background; in between it is ignored
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w encoding scales (standard SSD)
HARD_NEGATIVES_PER_POSITIVE = 3
MIN_HARD_NEGATIVES = 8

# Backbone: (filters, stride, is a detection feature map).
BACKBONE: tuple[tuple[int, int, bool], ...] = (
    (16, 2, False),
    (32, 2, False),
    (32, 1, False),
    (64, 2, False),
    (64, 1, True),
    (128, 2, False),
    (128, 1, True),
)

# Training.
EPOCHS = 16
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4

# Post-processing op attributes and the outputs in the standard SSD order.
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
MAX_DETECTIONS = 10
NMS_SCORE_THRESHOLD = 0.1
NMS_IOU_THRESHOLD = 0.5

# Verification.
EVAL_SCORE_THRESHOLD = 0.5
EVAL_IOU = 0.5
REQUIRED_RECALL = 0.93
REQUIRED_PRECISION = 0.93
MAX_MODEL_BYTES = 2_000_000

MODEL_FILE = "shapes_ssd_int8.tflite"
LABELS_FILE = "shapes_labels.txt"
DEMO_DIR = Path("demo")
DEMO_FRAMES_DIR = DEMO_DIR / "shapes"
ANNOTATIONS_FILE = "annotations.json"
VIDEO_FILE = DEMO_DIR / "shapes.mp4"

FloatArray = npt.NDArray[np.float32]
ImageArray = npt.NDArray[np.uint8]

PIXEL_GRID: FloatArray = np.mgrid[0:FRAME_H_PX, 0:FRAME_W_PX].astype(np.float32)  # (2, H, W): y, x


@dataclass(frozen=True)
class Box:
    """A labelled box in frame pixels (continuous coordinates: pixel i spans [i, i+1])."""

    label: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def to_json(self) -> dict[str, object]:
        """The annotation form: label name and pixel corners rounded to 0.1 px."""
        return {
            "label": LABELS[self.label],
            "xmin": round(self.xmin, 1),
            "ymin": round(self.ymin, 1),
            "xmax": round(self.xmax, 1),
            "ymax": round(self.ymax, 1),
        }


@dataclass(frozen=True)
class Scene:
    """One rendered camera frame (BGR) and its ground truth."""

    frame: ImageArray
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Score:
    """Detection quality over a set of scenes."""

    recall: float
    precision: float
    ground_truth: int
    detections: int
    true_positives: int


# ---------------------------------------------------------------- scenes


def _background(rng: np.random.Generator) -> FloatArray:
    """A gradient plus blotchy texture plus fine grain, as float BGR."""
    corners = rng.uniform(30.0, 225.0, (2, 2, 3)).astype(np.float32)
    gradient = cv2.resize(corners, (FRAME_W_PX, FRAME_H_PX), interpolation=cv2.INTER_LINEAR)
    blotches = rng.normal(0.0, 1.0, (FRAME_H_PX // 12, FRAME_W_PX // 12, 3)).astype(np.float32)
    blotches = cv2.GaussianBlur(
        cv2.resize(blotches, (FRAME_W_PX, FRAME_H_PX), interpolation=cv2.INTER_LINEAR), (0, 0), 4.0
    )
    grain = rng.normal(0.0, 1.0, (FRAME_H_PX, FRAME_W_PX)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 1.0)[..., None]
    background: FloatArray = (
        gradient + blotches * rng.uniform(5.0, 30.0) + grain * rng.uniform(0.0, 15.0)
    )
    return background


def _outline(kind: int, cx: float, cy: float, size: float, angle: float) -> FloatArray:
    """Vertices (x, y) of a square or equilateral triangle whose box's largest side is `size`."""
    corners = 4 if LABELS[kind] == "square" else 3
    angles = angle + np.arange(corners) * (2.0 * np.pi / corners)
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    extent = float((unit.max(axis=0) - unit.min(axis=0)).max())
    centre = np.array([cx, cy])
    offset = (unit.max(axis=0) + unit.min(axis=0)) / 2.0  # centre the box, not the centroid
    vertices: FloatArray = (centre + (unit - offset) * (size / extent)).astype(np.float32)
    return vertices


def _shape_mask(
    kind: int, cx: float, cy: float, size: float, angle: float
) -> tuple[FloatArray, Box]:
    """An anti-aliased coverage mask in [0, 1] and the shape's tight box."""
    shift_bits = 4
    fixed = float(1 << shift_bits)
    mask = np.zeros((FRAME_H_PX, FRAME_W_PX), np.uint8)
    # cv2 puts pixel centres at integers; our coordinates put them at i + 0.5.
    if LABELS[kind] == "circle":
        radius = size / 2.0
        centre = (round((cx - 0.5) * fixed), round((cy - 0.5) * fixed))
        cv2.circle(mask, centre, round(radius * fixed), 255, -1, cv2.LINE_AA, shift_bits)
        box = Box(kind, cx - radius, cy - radius, cx + radius, cy + radius)
    else:
        vertices = _outline(kind, cx, cy, size, angle)
        points = np.round((vertices - 0.5) * fixed).astype(np.int32)
        cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, shift_bits)
        (xmin, ymin), (xmax, ymax) = vertices.min(axis=0), vertices.max(axis=0)
        box = Box(kind, float(xmin), float(ymin), float(xmax), float(ymax))
    return mask.astype(np.float32) / 255.0, box


def _separate(box: Box, others: Sequence[Box]) -> bool:
    """True when `box` keeps SHAPE_GAP_PX away from every box in `others`."""
    return all(
        box.xmin > o.xmax + SHAPE_GAP_PX
        or o.xmin > box.xmax + SHAPE_GAP_PX
        or box.ymin > o.ymax + SHAPE_GAP_PX
        or o.ymin > box.ymax + SHAPE_GAP_PX
        for o in others
    )


def _shape_colour(rng: np.random.Generator, background: FloatArray, mask: FloatArray) -> FloatArray:
    """A random BGR colour that stands out from the background under `mask`."""
    under = (background * mask[..., None]).sum(axis=(0, 1)) / max(float(mask.sum()), 1.0)
    while True:
        colour = rng.uniform(0.0, 255.0, 3).astype(np.float32)
        if float(np.linalg.norm(colour - under)) >= MIN_COLOUR_CONTRAST:
            return colour


def _apply_camera(rng: np.random.Generator, canvas: FloatArray) -> ImageArray:
    """Lighting (gain, offset, vignette), lens blur and sensor noise, then 8-bit."""
    ys, xs = PIXEL_GRID
    radius2 = ((xs - FRAME_W_PX / 2) / (FRAME_W_PX / 2)) ** 2 + (
        (ys - FRAME_H_PX / 2) / (FRAME_H_PX / 2)
    ) ** 2
    vignette = 1.0 - rng.uniform(0.0, 0.35) * radius2 / 2.0
    lit = canvas * rng.uniform(0.6, 1.3) * vignette[..., None] + rng.uniform(-20.0, 20.0)
    lit = cv2.GaussianBlur(lit, (0, 0), rng.uniform(0.3, 1.0))
    noisy = lit + rng.normal(0.0, rng.uniform(2.0, 8.0), lit.shape).astype(np.float32)
    frame: ImageArray = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return frame


def render_scene(rng: np.random.Generator) -> Scene:
    """A camera-like BGR frame with 1-3 separated shapes and their boxes."""
    canvas = _background(rng)
    for _ in range(int(rng.integers(0, 3))):  # distractor strokes that are not shapes
        start = (int(rng.integers(0, FRAME_W_PX)), int(rng.integers(0, FRAME_H_PX)))
        end = (int(rng.integers(0, FRAME_W_PX)), int(rng.integers(0, FRAME_H_PX)))
        colour = tuple(float(c) for c in rng.uniform(0.0, 255.0, 3))
        cv2.line(canvas, start, end, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    boxes: list[Box] = []
    wanted = int(rng.integers(SHAPES_PER_SCENE_RANGE[0], SHAPES_PER_SCENE_RANGE[1] + 1))
    for _ in range(PLACEMENT_ATTEMPTS):
        if len(boxes) == wanted:
            break
        kind = int(rng.integers(0, NUM_CLASSES))
        size = float(rng.uniform(*SHAPE_SIZE_RANGE_PX))
        half = size / 2.0 + 1.0
        cx = float(rng.uniform(half, FRAME_W_PX - half))
        cy = float(rng.uniform(half, FRAME_H_PX - half))
        mask, box = _shape_mask(kind, cx, cy, size, float(rng.uniform(0.0, 2.0 * np.pi)))
        if not _separate(box, boxes):
            continue
        colour = _shape_colour(rng, canvas, mask)
        ys, xs = PIXEL_GRID
        direction = rng.normal(0.0, 1.0, 2).astype(np.float32)
        shading = ((xs - cx) * direction[0] + (ys - cy) * direction[1]) / size * 20.0
        fill = colour + shading[..., None]
        canvas = canvas * (1.0 - mask[..., None]) + fill * mask[..., None]
        boxes.append(box)
    return Scene(_apply_camera(rng, canvas), tuple(boxes))


def render_scenes(count: int, seed: int) -> list[Scene]:
    """`count` scenes from a fixed seed."""
    rng = np.random.default_rng(seed)
    return [render_scene(rng) for _ in range(count)]


def jpeg_round_trip(frame: ImageArray) -> ImageArray:
    """The frame as the runtime will read it back from a quality-95 JPEG."""
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded: ImageArray = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return decoded


def to_model_input(frame_bgr: ImageArray) -> ImageArray:
    """The runtime's preprocessing: stretch resize (INTER_LINEAR), then BGR -> RGB."""
    resized = cv2.resize(frame_bgr, (MODEL_SIZE_PX, MODEL_SIZE_PX), interpolation=cv2.INTER_LINEAR)
    rgb: ImageArray = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return rgb


# ---------------------------------------------------------------- anchors and targets


def make_anchors() -> FloatArray:
    """Anchors (A, 4) as (ycenter, xcenter, h, w) normalised to the model input.

    Order: feature map, then row, column, anchor size: the order the heads reshape to.
    Sizes are square in frame pixels, so they are 4:3-stretched in the model input.
    """
    anchors = []
    for stride, sizes in zip(FEATURE_STRIDES_PX, ANCHOR_SIZES_PX, strict=True):
        cells = MODEL_SIZE_PX // stride
        for row in range(cells):
            for col in range(cells):
                for size in sizes:
                    anchors.append(
                        (
                            (row + 0.5) / cells,
                            (col + 0.5) / cells,
                            size / FRAME_H_PX,
                            size / FRAME_W_PX,
                        )
                    )
    return np.asarray(anchors, np.float32)


def anchors_per_cell(feature_map: int) -> int:
    """How many anchors each cell of a feature map has."""
    return len(ANCHOR_SIZES_PX[feature_map])


def _corners(centre_size: FloatArray) -> FloatArray:
    """(ycenter, xcenter, h, w) -> (ymin, xmin, ymax, xmax)."""
    yx, hw = centre_size[:, :2], centre_size[:, 2:]
    corners: FloatArray = np.concatenate([yx - hw / 2.0, yx + hw / 2.0], axis=1)
    return corners


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise IoU of corner boxes a (N, 4) and b (M, 4), both (ymin, xmin, ymax, xmax)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    iou: FloatArray = inter / (area_a[:, None] + area_b[None, :] - inter)
    return iou


def normalised_corners(boxes: Sequence[Box]) -> FloatArray:
    """Boxes as (N, 4) (ymin, xmin, ymax, xmax) normalised to the frame."""
    return np.asarray(
        [
            (b.ymin / FRAME_H_PX, b.xmin / FRAME_W_PX, b.ymax / FRAME_H_PX, b.xmax / FRAME_W_PX)
            for b in boxes
        ],
        np.float32,
    ).reshape(-1, 4)


def encode_targets(
    boxes: Sequence[Box], anchors: FloatArray
) -> tuple[npt.NDArray[np.int32], FloatArray]:
    """SSD targets: class per anchor (0 background, 1..C shapes, -1 ignored) and box encodings."""
    gt = normalised_corners(boxes)
    classes = np.zeros(len(anchors), np.int32)
    encodings = np.zeros((len(anchors), 4), np.float32)
    if len(gt) == 0:
        return classes, encodings
    iou = iou_matrix(_corners(anchors), gt)  # (A, G)
    best_gt = iou.argmax(axis=1)
    best_iou = iou.max(axis=1)
    best_gt[iou.argmax(axis=0)] = np.arange(len(gt))  # every shape gets its best anchor
    best_iou[iou.argmax(axis=0)] = 1.0
    classes[(best_iou >= BACKGROUND_IOU) & (best_iou < MATCH_IOU)] = -1
    positive = best_iou >= MATCH_IOU
    labels = np.asarray([b.label for b in boxes], np.int32)
    classes[positive] = labels[best_gt[positive]] + 1
    matched = gt[best_gt]
    centre = (matched[:, :2] + matched[:, 2:]) / 2.0
    size = matched[:, 2:] - matched[:, :2]
    scales = np.asarray(BOX_SCALES, np.float32)
    encodings[:, :2] = (centre - anchors[:, :2]) / anchors[:, 2:] * scales[:2]
    encodings[:, 2:] = np.log(size / anchors[:, 2:]) * scales[2:]
    encodings[~positive] = 0.0
    return classes, encodings


# ---------------------------------------------------------------- model and training


def build_model() -> tf.keras.Model:
    """Backbone of strided 3x3 convs with two feature maps; each gets a box and a class head.

    Input (B, S, S, 3) float RGB in [0, 1]. Outputs: box encodings (B, A, 4) as
    (y, x, h, w) relative to the anchors, and class logits (B, A, C + 1), background first.
    """
    layers = tf.keras.layers
    regulariser = tf.keras.regularizers.L2(WEIGHT_DECAY)
    image = tf.keras.Input((MODEL_SIZE_PX, MODEL_SIZE_PX, 3), name="image")
    x = image
    features = []
    for filters, stride, is_feature in BACKBONE:
        x = layers.Conv2D(
            filters, 3, stride, "same", use_bias=False, kernel_regularizer=regulariser
        )(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if is_feature:
            features.append(x)
    encodings, logits = [], []
    for index, feature in enumerate(features):
        count = anchors_per_cell(index)
        box_head = layers.Conv2D(count * 4, 3, padding="same", kernel_regularizer=regulariser)(
            feature
        )
        class_head = layers.Conv2D(
            count * (NUM_CLASSES + 1), 3, padding="same", kernel_regularizer=regulariser
        )(feature)
        encodings.append(layers.Reshape((-1, 4))(box_head))
        logits.append(layers.Reshape((-1, NUM_CLASSES + 1))(class_head))
    return tf.keras.Model(
        image,
        [
            layers.Concatenate(axis=1, name="box_encodings")(encodings),
            layers.Concatenate(axis=1, name="class_logits")(logits),
        ],
    )


def ssd_loss(
    classes: tf.Tensor, encodings: tf.Tensor, predicted: tf.Tensor, logits: tf.Tensor
) -> tf.Tensor:
    """Softmax cross-entropy with 3:1 hard-negative mining plus Huber box loss, per positive."""
    positive = classes > 0
    negative = classes == 0
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(classes, 0), logits)
    positives_per_image = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    negatives_per_image = tf.reduce_sum(tf.cast(negative, tf.int32), axis=1)
    keep = tf.minimum(
        tf.maximum(HARD_NEGATIVES_PER_POSITIVE * positives_per_image, MIN_HARD_NEGATIVES),
        negatives_per_image,
    )
    negative_loss = tf.where(negative, cross_entropy, -1.0)
    ranked = tf.sort(negative_loss, axis=1, direction="DESCENDING")
    cutoff = tf.gather(ranked, tf.maximum(keep - 1, 0), batch_dims=1)
    hard_negative = negative & (negative_loss >= cutoff[:, None])
    selected = tf.cast(positive | hard_negative, tf.float32)
    normaliser = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
    class_loss = tf.reduce_sum(cross_entropy * selected) / normaliser
    huber = tf.keras.losses.Huber(reduction="none")(encodings[..., None], predicted[..., None])
    box_loss = (
        tf.reduce_sum(tf.reduce_sum(huber, axis=-1) * tf.cast(positive, tf.float32)) / normaliser
    )
    return class_loss + box_loss


def training_arrays(
    scenes: Sequence[Scene], anchors: FloatArray
) -> tuple[ImageArray, npt.NDArray[np.int32], FloatArray]:
    """Model-input images (as the runtime sees JPEG frames) and SSD targets."""
    images = np.stack([to_model_input(jpeg_round_trip(s.frame)) for s in scenes])
    targets = [encode_targets(s.boxes, anchors) for s in scenes]
    classes = np.stack([t[0] for t in targets])
    encodings = np.stack([t[1] for t in targets])
    return images, classes, encodings


def train(
    model: tf.keras.Model, images: ImageArray, classes: npt.NDArray[np.int32], encodings: FloatArray
) -> None:
    """Adam with cosine-decayed learning rate; batches shuffled with a fixed seed."""
    steps_per_epoch = len(images) // BATCH_SIZE
    schedule = tf.keras.optimizers.schedules.CosineDecay(LEARNING_RATE, EPOCHS * steps_per_epoch)
    optimizer = tf.keras.optimizers.Adam(schedule)
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, classes, encodings))
        .shuffle(len(images), seed=TRAINING_SEED, reshuffle_each_iteration=True)
        .batch(BATCH_SIZE, drop_remainder=True)
        .prefetch(2)
    )

    @tf.function
    def step(
        batch_images: tf.Tensor, batch_classes: tf.Tensor, batch_encodings: tf.Tensor
    ) -> tf.Tensor:
        inputs = tf.cast(batch_images, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            predicted, logits = model(inputs, training=True)
            loss = ssd_loss(batch_classes, batch_encodings, predicted, logits) + tf.add_n(
                model.losses
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    for epoch in range(EPOCHS):
        started = time.monotonic()
        losses = [float(step(*batch)) for batch in dataset]
        seconds = time.monotonic() - started
        print(
            f"epoch {epoch + 1}/{EPOCHS}: loss {np.mean(losses):.3f} ({seconds:.0f} s)", flush=True
        )


# ---------------------------------------------------------------- export


def _postprocess_signature() -> str:
    """The `experimental_implements` text the converter legalises to the custom op."""
    attributes = {
        "max_detections": f"i: {MAX_DETECTIONS}",
        "max_classes_per_detection": "i: 1",
        "use_regular_nms": "b: false",
        "nms_score_threshold": f"f: {NMS_SCORE_THRESHOLD}",
        "nms_iou_threshold": f"f: {NMS_IOU_THRESHOLD}",
        "y_scale": f"f: {BOX_SCALES[0]}",
        "x_scale": f"f: {BOX_SCALES[1]}",
        "h_scale": f"f: {BOX_SCALES[2]}",
        "w_scale": f"f: {BOX_SCALES[3]}",
        "num_classes": f"i: {NUM_CLASSES}",
    }
    entries = " ".join(
        f'attr {{ key: "{key}" value {{ {value} }} }}' for key, value in attributes.items()
    )
    return f'name: "TFLite_Detection_PostProcess" {entries}'


class DetectorExport(tf.Module):
    """Trained network plus SSD post-processing, as a SavedModel the converter understands."""

    def __init__(self, network: tf.Module, anchors: FloatArray) -> None:
        super().__init__()
        self.network = network
        self.anchors = tf.constant(anchors)

    @tf.function(experimental_implements=_postprocess_signature())
    def _postprocess(
        self, box_encodings: tf.Tensor, class_scores: tf.Tensor, anchors: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Placeholder body: the converter replaces the whole function with the custom op."""
        del box_encodings, class_scores, anchors
        boxes = tf.constant(0.0, name="boxes")
        classes = tf.constant(0.0, name="classes")
        scores = tf.constant(0.0, name="scores")
        count = tf.constant(0.0, name="num_detections")
        return boxes, classes, scores, count

    @tf.function(
        input_signature=[tf.TensorSpec([1, MODEL_SIZE_PX, MODEL_SIZE_PX, 3], tf.float32, "image")]
    )
    def detect(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """Float RGB in [0, 1] -> boxes, classes, scores, count, keyed by OUTPUT_NAMES."""
        box_encodings, class_logits = self.network.serve(image)
        outputs = self._postprocess(box_encodings, tf.nn.softmax(class_logits), self.anchors)
        return dict(zip(OUTPUT_NAMES, outputs, strict=True))


def order_outputs(tflite: bytes) -> bytes:
    """Put the outputs in the standard SSD order and name them after their signature keys.

    The converter lists the custom op's outputs in an order of its own (TF2 Object
    Detection API models come out as scores, boxes, count, classes), while consumers of
    SSD models index them by position: boxes, classes, scores, count.
    """
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    (subgraph,) = model.subgraphs
    (signature,) = model.signatureDefs
    by_name = {entry.name.decode(): entry for entry in signature.outputs}
    signature.outputs = [by_name[name] for name in OUTPUT_NAMES]
    subgraph.outputs = [by_name[name].tensorIndex for name in OUTPUT_NAMES]
    for name in OUTPUT_NAMES:
        subgraph.tensors[by_name[name].tensorIndex].name = name.encode()
    builder = flatbuffers.Builder(len(tflite))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite(
    model: tf.keras.Model, anchors: FloatArray, calibration: ImageArray, work_dir: Path
) -> bytes:
    """SavedModel with the post-processing op -> full-integer int8 TFLite with uint8 input."""
    keras_dir = work_dir / "network"
    model.export(str(keras_dir), format="tf_saved_model", verbose=False)
    # The reloaded network holds plain tf.Variables the converter can freeze (Keras 3
    # variables used directly inside a tf.Module would be left uninitialised).
    export = DetectorExport(tf.saved_model.load(str(keras_dir)), anchors)
    detector_dir = work_dir / "detector"
    tf.saved_model.save(export, str(detector_dir), signatures=export.detect)

    def representative() -> Iterator[list[FloatArray]]:
        for image in calibration:
            yield [image[None].astype(np.float32) / 255.0]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(detector_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.allow_custom_ops = True
    return order_outputs(converter.convert())


def calibration_images(scenes: Sequence[Scene]) -> ImageArray:
    """Calibration inputs; the first holds a black and a white pixel so the input range is 0..1."""
    images = np.stack([to_model_input(jpeg_round_trip(s.frame)) for s in scenes])
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


# ---------------------------------------------------------------- verification


def detect_file(interpreter: Interpreter, path: Path) -> list[tuple[Box, float]]:
    """Run one JPEG through the runtime's path; boxes in the original frame's pixels."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise FileNotFoundError(path)
    height, width = frame.shape[:2]
    input_detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(input_detail["index"], to_model_input(frame)[None])
    interpreter.invoke()
    boxes, classes, scores, count = (
        interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()
    )
    detections = []
    for i in range(int(count[0])):
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[0, i])
        box = Box(int(classes[0, i]), xmin * width, ymin * height, xmax * width, ymax * height)
        detections.append((box, float(scores[0, i])))
    return detections


def box_iou(a: Box, b: Box) -> float:
    """IoU of two pixel boxes."""
    width = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    height = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a.xmax - a.xmin) * (a.ymax - a.ymin) + (b.xmax - b.xmin) * (b.ymax - b.ymin) - inter
    return inter / union if union > 0 else 0.0


def score_detections(
    truth: Sequence[Sequence[Box]], found: Sequence[Sequence[tuple[Box, float]]]
) -> Score:
    """Greedy same-label matching at EVAL_IOU of detections scoring >= EVAL_SCORE_THRESHOLD."""
    true_positives = detections = ground_truth = 0
    for boxes, candidates in zip(truth, found, strict=True):
        kept = sorted((c for c in candidates if c[1] >= EVAL_SCORE_THRESHOLD), key=lambda c: -c[1])
        unmatched = list(boxes)
        for box, _ in kept:
            match = max(
                (t for t in unmatched if t.label == box.label),
                key=lambda t: box_iou(t, box),
                default=None,
            )
            if match is not None and box_iou(match, box) >= EVAL_IOU:
                unmatched.remove(match)
                true_positives += 1
        detections += len(kept)
        ground_truth += len(boxes)
    return Score(
        recall=true_positives / max(ground_truth, 1),
        precision=true_positives / max(detections, 1),
        ground_truth=ground_truth,
        detections=detections,
        true_positives=true_positives,
    )


def describe_tensors(interpreter: Interpreter) -> None:
    """Print name, dtype, shape and quantization of every input and output tensor."""
    for kind, details in (
        ("input", interpreter.get_input_details()),
        ("output", interpreter.get_output_details()),
    ):
        for detail in details:
            scale, zero_point = detail["quantization"]
            print(
                f"{kind} {detail['index']}: {detail['name']} {np.dtype(detail['dtype']).name} "
                f"{[int(d) for d in detail['shape']]} scale={scale:.8g} zero_point={zero_point}"
            )


def check_contract(interpreter: Interpreter) -> None:
    """Fail unless the model has the uint8 input and the four float32 SSD outputs."""
    (input_detail,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    scale, zero_point = input_detail["quantization"]
    problems = []
    if input_detail["dtype"] != np.uint8 or list(input_detail["shape"]) != [
        1,
        MODEL_SIZE_PX,
        MODEL_SIZE_PX,
        3,
    ]:
        problems.append(f"input is {input_detail['dtype']} {input_detail['shape']}")
    if zero_point != 0 or abs(scale * 255.0 - 1.0) > 1e-6:
        problems.append(
            f"input quantization is scale={scale} zero_point={zero_point}, not 1/255, 0"
        )
    shapes = [list(d["shape"]) for d in outputs]
    expected = [[1, MAX_DETECTIONS, 4], [1, MAX_DETECTIONS], [1, MAX_DETECTIONS], [1]]
    if shapes != expected or any(d["dtype"] != np.float32 for d in outputs):
        problems.append(f"outputs are {shapes}, expected float32 {expected}")
    if tuple(d["name"] for d in outputs) != OUTPUT_NAMES:
        problems.append(
            f"outputs are named {[d['name'] for d in outputs]}, expected {list(OUTPUT_NAMES)}"
        )
    ops = {op["op_name"] for op in interpreter._get_ops_details()}  # private, but only lists ops
    if "TFLite_Detection_PostProcess" not in ops:
        problems.append(f"no TFLite_Detection_PostProcess among {sorted(ops)}")
    if problems:
        raise SystemExit("model contract broken: " + "; ".join(problems))


# ---------------------------------------------------------------- outputs


def write_demo(scenes: Sequence[Scene], out_dir: Path) -> list[Path]:
    """Held-out JPEGs, their annotations and the same frames as a 10 fps mp4v video."""
    frames_dir = out_dir / DEMO_FRAMES_DIR
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stale in frames_dir.glob("*.jpg"):
        stale.unlink()
    paths, annotations = [], []
    for index, scene in enumerate(scenes):
        path = frames_dir / f"{index:04d}.jpg"
        if not cv2.imwrite(str(path), scene.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"cannot write {path}")
        paths.append(path)
        annotations.append(
            {
                "file": path.name,
                "width": FRAME_W_PX,
                "height": FRAME_H_PX,
                "boxes": [b.to_json() for b in scene.boxes],
            }
        )
    (frames_dir / ANNOTATIONS_FILE).write_text(json.dumps(annotations, indent=1) + "\n")
    video = cv2.VideoWriter(
        str(out_dir / VIDEO_FILE),
        cv2.VideoWriter.fourcc(*"mp4v"),
        VIDEO_FPS,
        (FRAME_W_PX, FRAME_H_PX),
    )
    if not video.isOpened():
        raise OSError(f"cannot open {out_dir / VIDEO_FILE} for mp4v")
    for scene in scenes:
        video.write(scene.frame)
    video.release()
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Generate data, train, export, write the files, verify; non-zero exit on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parent.parent
    parser.add_argument(
        "--out-dir", type=Path, default=repo / "models", help="where models and demo go"
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    tf.keras.utils.set_random_seed(TRAINING_SEED)
    tf.config.experimental.enable_op_determinism()
    anchors = make_anchors()

    started = time.monotonic()
    train_scenes = render_scenes(TRAIN_SCENES, TRAIN_SEED)
    held_out = render_scenes(HELD_OUT_SCENES, HELD_OUT_SEED)
    images, classes, encodings = training_arrays(train_scenes, anchors)
    seconds = time.monotonic() - started
    print(
        f"{len(train_scenes)} training scenes, {len(anchors)} anchors ({seconds:.0f} s)", flush=True
    )

    model = build_model()
    print(f"{model.count_params()} parameters")
    train(model, images, classes, encodings)

    with tempfile.TemporaryDirectory() as work:
        tflite = export_tflite(
            model, anchors, calibration_images(train_scenes[:CALIBRATION_SCENES]), Path(work)
        )
    model_path = out_dir / MODEL_FILE
    model_path.write_bytes(tflite)
    (out_dir / LABELS_FILE).write_text("\n".join(LABELS) + "\n")
    frame_paths = write_demo(held_out, out_dir)

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    describe_tensors(interpreter)
    check_contract(interpreter)
    score = score_detections(
        [s.boxes for s in held_out], [detect_file(interpreter, p) for p in frame_paths]
    )
    print(
        f"held-out: recall {score.recall:.3f} precision {score.precision:.3f} "
        f"({score.true_positives} of {score.ground_truth} shapes, {score.detections} detections, "
        f"score >= {EVAL_SCORE_THRESHOLD}, IoU >= {EVAL_IOU}); model {len(tflite)} bytes"
    )
    if score.recall < REQUIRED_RECALL or score.precision < REQUIRED_PRECISION:
        print("FAILED: recall and precision must both reach 0.93", file=sys.stderr)
        return 1
    if len(tflite) > MAX_MODEL_BYTES:
        print(f"FAILED: model is larger than {MAX_MODEL_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
