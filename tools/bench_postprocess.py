#!/usr/bin/env python3
"""Time the detect postprocessing (decode, threshold, NMS, map to the frame) per frame.

Pure numpy on synthetic output tensors shaped like real exports, so no model is needed:
YOLOv8 at 640 ([1, 84, 8400], 80 classes), YOLOv5 at 640 ([1, 25200, 85]), both int8, and
an SSD ending (boxes, classes, scores, count; float32, 10 and 100 detections). For YOLO,
a reference row times the same decode when the whole output is dequantized first (without
the runtime's prefilter on the raw int8 values). Each YOLO
tensor holds OBJECTS true objects, each seen by a cluster of overlapping candidates (as a
real model's neighbouring grid cells see it), the rest background noise. Prints the median
and p95 milliseconds per frame of each case, and classify top-5 over 1000 classes as a
reference, all from one run on one machine.

Run: ``python tools/bench_postprocess.py [--frames 200] [--objects 10]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import ClassifyTask, DetectTask
from edge_runtime.processing import detect
from edge_runtime.processing.labels import Labels
from edge_runtime.processing.preprocess import map_boxes_to_frame, plan_resize
from edge_runtime.processing.quantization import dequantize
from edge_runtime.processing.tasks import ClassifyPostprocessor, DetectPostprocessor
from edge_runtime.types import QuantParams, TensorSpec

INPUT_PX = 640
CLASSES = 80
CANDIDATES_PER_OBJECT = 20
INT8 = np.dtype(np.int8)
# int8 covering 0..1: boxes normalised to the input, as Ultralytics' TFLite exports write them
OUTPUT_SCALE, OUTPUT_ZERO_POINT = 1 / 255, -128


def yolo_rows(candidates: int, objects: int, objectness: bool,
              rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """(candidates, 4 [+ 1] + classes) real values: clusters around objects, noise elsewhere."""
    width = 4 + int(objectness) + CLASSES
    rows = np.zeros((candidates, width))
    rows[:, 0:2] = rng.uniform(0, INPUT_PX, (candidates, 2))
    rows[:, 2:4] = rng.uniform(8, 64, (candidates, 2))
    rows[:, 4:] = rng.uniform(0, 0.05, (candidates, width - 4))  # background
    first_class = 5 if objectness else 4
    for k in range(objects):
        centre = rng.uniform(64, INPUT_PX - 64, 2)
        size = rng.uniform(32, 160, 2)
        cls = int(rng.integers(CLASSES))
        cluster = rng.choice(candidates, CANDIDATES_PER_OBJECT, replace=False)
        rows[cluster, 0:2] = centre + rng.normal(0, 3, (CANDIDATES_PER_OBJECT, 2))
        rows[cluster, 2:4] = size * rng.uniform(0.9, 1.1, (CANDIDATES_PER_OBJECT, 2))
        rows[cluster, first_class + cls] = rng.uniform(0.3, 0.95, CANDIDATES_PER_OBJECT)
        if objectness:
            rows[cluster, 4] = rng.uniform(0.6, 1.0, CANDIDATES_PER_OBJECT)
        del k
    return rows


def quantize(real: npt.NDArray[np.float64], scale: float, zero_point: int) -> npt.NDArray[Any]:
    return np.clip(np.rint(real / scale) + zero_point, -128, 127).astype(np.int8)


def yolo_case(layout: str, objects: int, rng: np.random.Generator,
              ) -> tuple[DetectPostprocessor, npt.NDArray[Any]]:
    v8 = layout == "yolo_v8"
    candidates = 8400 if v8 else 25200
    rows = yolo_rows(candidates, objects, objectness=not v8, rng=rng)
    rows[:, :4] /= INPUT_PX
    tensor = quantize(rows, OUTPUT_SCALE, OUTPUT_ZERO_POINT)
    output = tensor.T[None] if v8 else tensor[None]
    spec = TensorSpec("output0", 0, output.shape, INT8, QuantParams(OUTPUT_SCALE,
                                                                     OUTPUT_ZERO_POINT))
    post = DetectPostprocessor(DetectTask(type="detect", min_score=0.25), [spec], Labels(),
                               "bench")
    return post, np.ascontiguousarray(output)


def ssd_case(detections: int, rng: np.random.Generator,
             ) -> tuple[DetectPostprocessor, list[npt.NDArray[Any]]]:
    boxes = np.sort(rng.uniform(0, 1, (1, detections, 4)).astype(np.float32), axis=2)
    classes = rng.integers(0, CLASSES, (1, detections)).astype(np.float32)
    scores = np.sort(rng.uniform(0, 1, (1, detections)).astype(np.float32))[:, ::-1].copy()
    count = np.array([detections], np.float32)
    f32 = np.dtype(np.float32)
    specs = [TensorSpec(name, i, array.shape, f32, QuantParams(0.0, 0))
             for i, (name, array) in enumerate([("boxes", boxes), ("classes", classes),
                                                ("scores", scores), ("count", count)])]
    post = DetectPostprocessor(DetectTask(type="detect"), specs, Labels(), "bench")
    return post, [boxes, classes, scores, count]


def dequantize_all(post: DetectPostprocessor, output: npt.NDArray[Any],
                   plan: Any) -> int:
    """The reference: dequantize the whole output, decode, NMS, map the kept boxes."""
    layout = post.layout
    table = detect.yolo_table(dequantize(output, post.specs[0].quant), layout)
    found = detect.decode_yolo(table, layout, "normalised", (INPUT_PX, INPUT_PX),
                               post.config.min_score)
    kept = found.take(detect.batched_nms(found, post.config.iou_threshold))
    pixels = map_boxes_to_frame(kept.boxes, plan)  # boxes wholly in the padding drop out
    return int(np.sum((pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])))


def timed(frames: int, call: Callable[[], object]) -> tuple[float, float]:
    """(median, p95) milliseconds per call."""
    call()  # warm up
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--objects", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    plan = plan_resize(1280, 720, INPUT_PX, INPUT_PX, "letterbox")
    print(f"machine: {platform.machine()} {platform.processor() or ''} python "
          f"{platform.python_version()} numpy {np.__version__}; {args.frames} frames, "
          f"{args.objects} objects per frame")
    rows = []
    for layout in ("yolo_v8", "yolo_v5"):
        post, output = yolo_case(layout, args.objects, rng)
        kept = len(post([output], plan)[0])
        rows.append((f"{layout} {list(output.shape)} int8", kept,
                     *timed(args.frames, lambda p=post, o=output: p([o], plan))))
        reference = dequantize_all(post, output, plan)
        rows.append(("  same, dequantizing all first", reference,
                     *timed(args.frames, lambda p=post, o=output: dequantize_all(p, o, plan))))
    for detections in (10, 100):
        post_ssd, outputs = ssd_case(detections, rng)
        kept = len(post_ssd(outputs, plan)[0])
        rows.append((f"ssd {detections} detections float32", kept,
                     *timed(args.frames, lambda p=post_ssd, o=outputs: p(o, plan))))
    scores = rng.integers(0, 256, (1, 1000)).astype(np.uint8)
    spec = TensorSpec("scores", 0, (1, 1000), np.dtype(np.uint8), QuantParams(1 / 256, 0))
    classify = ClassifyPostprocessor(ClassifyTask(type="classify", top_k=5), [spec], Labels(),
                                     "bench")
    rows.append(("classify top-5 of 1000 (reference)", 5,
                 *timed(args.frames, lambda: classify([scores], plan))))
    print(f"{'case':<40} {'kept':>5} {'median ms':>10} {'p95 ms':>8}")
    for name, kept, median, p95 in rows:
        print(f"{name:<40} {kept:>5} {median:>10.3f} {p95:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
