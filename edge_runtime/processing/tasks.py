"""Postprocessors: raw model outputs -> predictions, one per task type.

Each is built once from the task config and the model's output tensors, and checks there
that the model fits the task (a mismatch is a ModelError at start-up, not a crash later).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import (
    AnomalyTask,
    ClassifyTask,
    DetectTask,
    RawTask,
    RegressTask,
    TaskConfig,
)
from edge_runtime.errors import ModelError
from edge_runtime.processing import detect
from edge_runtime.processing.classify import classify
from edge_runtime.processing.labels import Labels
from edge_runtime.processing.preprocess import ResizePlan, map_boxes_to_frame
from edge_runtime.processing.quantization import dequantize, dtype_range
from edge_runtime.types import Detection, OutputValue, Prediction, TensorSpec

Extra = dict[str, Any]


class Postprocessor(Protocol):
    task: str

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Prediction, ...], Extra]:
        ...


def describe_outputs(outputs: Sequence[TensorSpec]) -> str:
    return ", ".join(str(list(o.shape)) for o in outputs)


def looks_like(outputs: Sequence[TensorSpec]) -> str | None:
    """What kind of model these outputs suggest, for error hints."""
    shapes = [o.shape for o in outputs]
    if detect.ssd_outputs(shapes, [o.name for o in outputs]) is not None:
        return "detect"
    if len(shapes) == 1 and detect.yolo_layout(shapes[0]) is not None:
        return "detect"
    if len(shapes) == 1 and classifier_output(outputs[0]):
        return "classify"
    return None


def classifier_output(spec: TensorSpec) -> bool:
    """``[N]`` or ``[1, N]`` with N > 1: one score per class."""
    return int(np.prod(spec.shape)) > 1 and (
        len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[0] == 1))


def task_hint(outputs: Sequence[TensorSpec], wrong: str) -> str:
    kind = looks_like(outputs)
    if kind is not None and kind != wrong:
        return f"this looks like a {kind} model: use task type {kind}"
    return "use the task that fits the model (classify, detect, regress, anomaly, raw)"


def check_labels_fit(labels: Labels, classes: int, offset: int, where: str) -> None:
    if len(labels) and max(labels.names) - offset >= classes:
        raise ModelError(f"{where}: the labels file has {len(labels)} labels but the model "
                         f"outputs {classes} classes",
                         hint="use the labels file that belongs to this model")


class ClassifyPostprocessor:
    """Top-k over the (dequantized) class scores of a ``[1, N]`` output."""

    task = "classify"

    def __init__(self, config: ClassifyTask, outputs: Sequence[TensorSpec], labels: Labels,
                 where: str) -> None:
        if len(outputs) != 1 or not classifier_output(outputs[0]):
            raise ModelError(f"{where}: task 'classify' needs one output shaped [1, classes]; "
                             f"this model has {len(outputs)} output(s): "
                             f"{describe_outputs(outputs)}",
                             hint=task_hint(outputs, "classify"))
        self.spec = outputs[0]
        self.classes = int(np.prod(self.spec.shape))
        check_labels_fit(labels, self.classes, 0, where)
        self.config = config
        self.labels = labels

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Prediction, ...], Extra]:
        scores = dequantize(outputs[0], self.spec.quant)
        return classify(scores, self.labels, self.config.top_k, self.config.min_score), {}


class DetectPostprocessor:
    """Boxes, classes and scores of an SSD or YOLO model, mapped back to the frame and
    filtered (score, class allow-list, region, count)."""

    task = "detect"

    def __init__(self, config: DetectTask, outputs: Sequence[TensorSpec], labels: Labels,
                 where: str) -> None:
        self.config = config
        self.labels = labels
        self.specs = tuple(outputs)
        self.layout = self._layout(config, outputs, where)
        self.ssd: detect.SsdOutputs | None = None
        self.units: detect.BoxUnits | None = None
        self._classes_first: bool | None = None
        if self.layout == "ssd":
            self.ssd = detect.ssd_outputs([o.shape for o in outputs], [o.name for o in outputs])
            self._classes_first = self.ssd.classes_first if self.ssd else None
        else:
            shape = outputs[0].shape
            check_labels_fit(labels, detect.yolo_class_count(shape, self.layout),
                             config.label_offset, where)
            self.units = None if config.box_units == "auto" else config.box_units
            spec = outputs[0]
            if self.units is None and spec.quant.is_quantized and not np.issubdtype(
                    spec.dtype, np.floating):
                _, qmax = dtype_range(spec.dtype)
                self.units = detect.units_from_range((qmax - spec.quant.zero_point)
                                                     * spec.quant.scale)
        self.allowed = self._allow_list(config, labels, where)
        self.region = (np.asarray(config.region, np.float64)
                       if config.region is not None else None)

    @staticmethod
    def _layout(config: DetectTask, outputs: Sequence[TensorSpec],
                where: str) -> detect.Layout:
        shapes = [o.shape for o in outputs]
        is_ssd = detect.ssd_outputs(shapes, [o.name for o in outputs]) is not None
        yolo = detect.yolo_layout(shapes[0]) if len(shapes) == 1 else None
        layout = config.layout
        if layout == "auto":
            if is_ssd:
                return "ssd"
            if yolo is not None:
                return yolo
            if len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][0] == 1:
                raise ModelError(
                    f"{where}: task 'detect' cannot tell the YOLO layout of output "
                    f"{list(shapes[0])}", hint="set task.layout to yolo_v8 ([1, 4 + classes, "
                    "boxes]) or yolo_v5 ([1, boxes, 5 + classes])")
        elif layout == "ssd" and is_ssd:
            return "ssd"
        elif layout != "ssd" and len(shapes) == 1 and detect.yolo_fits(shapes[0], layout):
            return layout
        expected = {"auto": "the four outputs of TFLite_Detection_PostProcess (boxes "
                            "[1, N, 4], classes [1, N], scores [1, N], count [1]) or one YOLO "
                            "output [1, 4 + classes, N] or [1, N, 5 + classes]",
                    "ssd": "the four outputs of TFLite_Detection_PostProcess (boxes [1, N, 4], "
                           "classes [1, N], scores [1, N], count [1])",
                    "yolo_v8": "one output [1, 4 + classes, N]",
                    "yolo_v5": "one output [1, N, 5 + classes]"}[layout]
        raise ModelError(f"{where}: task 'detect' (layout {layout}) needs {expected}; this "
                         f"model has {len(outputs)} output(s): {describe_outputs(outputs)}",
                         hint=task_hint(outputs, "detect"))

    @staticmethod
    def _allow_list(config: DetectTask, labels: Labels, where: str) -> frozenset[int] | None:
        """Class indices (as the model outputs them) the ``classes`` setting keeps."""
        if config.classes is None:
            return None
        by_name = {name: index - config.label_offset for index, name in labels.names.items()}
        allowed = set()
        for entry in config.classes:
            if isinstance(entry, int):
                allowed.add(entry)
            elif entry in by_name:
                allowed.add(by_name[entry])
            else:
                known = ", ".join(labels.names.values()) if len(labels) else "none"
                raise ModelError(f"{where}: task.classes names '{entry}', which is not a label "
                                 f"of this model (labels: {known})",
                                 hint="use a label from the labels file, or a class index")
        return frozenset(allowed)

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Prediction, ...], Extra]:
        if plan is None:
            raise ValueError("task detect needs image frames")
        candidates = self._candidates(outputs, plan.dst_size)
        detections = self._detections(candidates, plan)
        return detections, {"frame_size": list(plan.src_size)}

    def _candidates(self, outputs: Sequence[npt.NDArray[Any]],
                    input_size: tuple[int, int]) -> detect.Candidates:
        config = self.config
        if self.ssd is not None:
            ssd = self.ssd
            first, second = (dequantize(outputs[i], self.specs[i].quant).reshape(-1)
                             for i in ssd.pair)
            count = outputs[ssd.count]
            classes_first = self._classes_first
            if classes_first is None:
                n = int(np.clip(np.rint(count.reshape(-1)[0]), 0, first.size))
                classes_first = detect.classes_come_first(first[:n], second[:n])
                self._classes_first = classes_first  # decided once the values could tell
                if classes_first is None:
                    classes_first = True  # the TF1 order; only undecidable frames get here
            classes, scores = (first, second) if classes_first else (second, first)
            boxes = dequantize(outputs[ssd.boxes], self.specs[ssd.boxes].quant)
            found = detect.decode_ssd(boxes, classes, scores, count)
            return self._allowed(found.take(found.scores >= config.min_score))
        layout, quant = self.layout, self.specs[0].quant
        passing = detect.yolo_prefilter(outputs[0], layout, quant, config.min_score)
        table = detect.yolo_table(
            dequantize(detect.yolo_select(outputs[0], layout, passing), quant), layout)
        units = self.units or detect.yolo_units(table)
        # the allow-list goes before NMS: a dropped class must not suppress a kept one
        found = self._allowed(detect.decode_yolo(table, layout, units, input_size,
                                                 config.min_score))
        return found.take(detect.batched_nms(found, config.iou_threshold,
                                             config.class_agnostic_nms))

    def _allowed(self, found: detect.Candidates) -> detect.Candidates:
        if self.allowed is None:
            return found
        return found.take(np.isin(found.classes, sorted(self.allowed)))

    def _detections(self, found: detect.Candidates,
                    plan: ResizePlan) -> tuple[Detection, ...]:
        found = found.take(detect.best_first(found.scores))
        pixels = map_boxes_to_frame(found.boxes, plan)
        src_w, src_h = plan.src_size
        normalised = pixels / (src_w, src_h, src_w, src_h)
        # boxes wholly in the letterbox padding collapse to nothing once clipped
        keep = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
        if self.region is not None:
            centres = (normalised[:, :2] + normalised[:, 2:]) / 2
            keep &= detect.points_in_polygon(centres, self.region)
        offset = self.config.label_offset
        detections = []
        for i in np.flatnonzero(keep)[:self.config.max_detections]:
            index = int(found.classes[i])
            nx0, ny0, nx1, ny1 = (float(v) for v in normalised[i])
            px0, py0, px1, py1 = (float(v) for v in pixels[i])
            detections.append(Detection(index, self.labels.name(index + offset),
                                        float(found.scores[i]), (nx0, ny0, nx1, ny1),
                                        (px0, py0, px1, py1)))
        return tuple(detections)


class ValuesPostprocessor:
    """Every output value, dequantized and named (regress, anomaly)."""

    def __init__(self, config: RegressTask | AnomalyTask, outputs: Sequence[TensorSpec],
                 labels: Labels, where: str) -> None:
        self.task: str = config.type
        self.specs = tuple(outputs)
        count = sum(int(np.prod(o.shape)) for o in outputs)
        if config.names is not None:
            if len(config.names) != count:
                raise ModelError(f"{where}: task.names has {len(config.names)} name(s) but the "
                                 f"model outputs {count} value(s) ({describe_outputs(outputs)})",
                                 hint="give one name per output value")
            names = list(config.names)
        else:
            check_labels_fit(labels, count, 0, where)
            names = [labels.name(i) for i in range(count)]
        self.names = names
        threshold = config.threshold
        if isinstance(threshold, dict):
            unknown = sorted(set(threshold) - set(names))
            if unknown:
                raise ModelError(f"{where}: task.threshold names {', '.join(unknown)}, not among "
                                 f"the output values ({', '.join(names)})",
                                 hint="use the value names (task.names or the labels)")
            self.thresholds: list[float | None] = [threshold.get(n) for n in names]
        else:
            self.thresholds = [threshold] * count

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Prediction, ...], Extra]:
        values = np.concatenate([dequantize(o, s.quant).reshape(-1)
                                 for o, s in zip(outputs, self.specs, strict=True)])
        predictions = tuple(
            OutputValue(i, name, float(v), None if limit is None else bool(v >= limit))
            for i, (name, v, limit) in enumerate(zip(self.names, values, self.thresholds,
                                                     strict=True)))
        extra: Extra = {}
        if self.task == "anomaly" and any(t is not None for t in self.thresholds):
            extra["anomalous"] = any(p.above for p in predictions)
        return predictions, extra


class RawPostprocessor:
    """Every output tensor, dequantized, as nested lists under ``outputs``."""

    task = "raw"

    def __init__(self, config: RawTask, outputs: Sequence[TensorSpec]) -> None:
        self.specs = tuple(outputs)
        self.decimals = config.decimals

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Prediction, ...], Extra]:
        tensors = [{"name": spec.name, "shape": list(spec.shape),
                    "values": np.round(dequantize(o, spec.quant).astype(np.float64),
                                       self.decimals).tolist()}
                   for o, spec in zip(outputs, self.specs, strict=True)]
        return (), {"outputs": tensors}


def build_postprocessor(config: TaskConfig, outputs: Sequence[TensorSpec], labels: Labels,
                        where: str) -> Postprocessor:
    """The postprocessor for one pipeline's task, checked against the model's outputs."""
    if isinstance(config, ClassifyTask):
        return ClassifyPostprocessor(config, outputs, labels, where)
    if isinstance(config, DetectTask):
        return DetectPostprocessor(config, outputs, labels, where)
    if isinstance(config, RegressTask | AnomalyTask):
        return ValuesPostprocessor(config, outputs, labels, where)
    return RawPostprocessor(config, outputs)
