"""Postprocessors: raw model outputs -> predictions, one per task type.

Each is built once from the task config and the model's output tensors, and checks there
that the model fits the task (a mismatch is a ModelError at start-up, not a crash later).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import ClassifyTask, TaskConfig
from edge_runtime.errors import ModelError
from edge_runtime.processing.classify import classify
from edge_runtime.processing.labels import Labels
from edge_runtime.processing.preprocess import ResizePlan
from edge_runtime.processing.quantization import dequantize
from edge_runtime.types import Classification, TensorSpec

Extra = dict[str, Any]


class Postprocessor(Protocol):
    task: str

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Classification, ...], Extra]:
        ...


class ClassifyPostprocessor:
    """Top-k over the (dequantized) class scores of a ``[1, N]`` output."""

    task = "classify"

    def __init__(self, config: ClassifyTask, outputs: Sequence[TensorSpec], labels: Labels,
                 where: str) -> None:
        candidates = [o for o in outputs if int(np.prod(o.shape)) > 1 and
                      (len(o.shape) == 1 or (len(o.shape) == 2 and o.shape[0] == 1))]
        if len(outputs) != 1 or not candidates:
            shapes = ", ".join(str(list(o.shape)) for o in outputs)
            raise ModelError(f"{where}: task 'classify' needs one output shaped [1, classes]; "
                             f"this model has {len(outputs)} output(s): {shapes}",
                             hint="use the task that fits the model (detect, raw, ...)")
        self.spec = candidates[0]
        self.classes = int(np.prod(self.spec.shape))
        if len(labels) and max(labels.names) >= self.classes:
            raise ModelError(f"{where}: the labels file has {len(labels)} labels but the model "
                             f"outputs {self.classes} classes",
                             hint="use the labels file that belongs to this model")
        self.config = config
        self.labels = labels

    def __call__(self, outputs: Sequence[npt.NDArray[Any]],
                 plan: ResizePlan | None) -> tuple[tuple[Classification, ...], Extra]:
        scores = dequantize(outputs[0], self.spec.quant)
        return classify(scores, self.labels, self.config.top_k, self.config.min_score), {}


def build_postprocessor(config: TaskConfig, outputs: Sequence[TensorSpec], labels: Labels,
                        where: str) -> Postprocessor:
    """The postprocessor for one pipeline's task, checked against the model's outputs."""
    if isinstance(config, ClassifyTask):
        return ClassifyPostprocessor(config, outputs, labels, where)
    raise TypeError(f"no postprocessor for {type(config).__name__}")
