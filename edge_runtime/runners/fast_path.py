"""Is a CPU runner on its fast path: did XNNPACK take the int8 graph?

``assess_fast_path`` is pure: it reads how the interpreter split the model between delegate
kernels and CPU kernels (``ExecutionSplit``, from the op table). ``paired_invoke_ratio`` is
the measuring part used by ``bench`` (``TFLiteRunner.xnnpack_speedup``): the same model on
the builtin kernels alone against the interpreter as configured.

Why the start-up check is structural and not timed: when XNNPACK took no operator, every
operator runs on the builtin kernels by construction, so timing it against them proves
nothing and costs start-up time. The factor users care about (ai-edge-litert's XNNPACK int8
path against this backend) needs the other backend, so it is measured by
``edge-runtime bench`` in each environment and documented in docs/performance.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.runners.accelerators import ExecutionSplit
from edge_runtime.types import TensorSpec

PROBE_WARMUP_INVOKES = 2
PROBE_MIN_INVOKES = 5
PROBE_MIN_S = 0.6  # both interpreters: enough invokes for a stable median on a noisy machine
PERF_DOC = "docs/performance.md"
# raw-loop inferences/s, ai-edge-litert 2.3 / tflite-runtime 2.14, 1 thread, 2-core x86 (PERF_DOC):
# about 5x on the small demo models, 21x on MobileNetV2 int8
LITERT_INT8_SPEEDUP = (5, 21)


@dataclass(frozen=True)
class FastPath:
    """How much of a model XNNPACK runs, for a runner without an accelerator."""

    split: ExecutionSplit | None  # None: the backend hides its op table
    quantized: bool  # int8/uint8 model

    @property
    def xnnpack(self) -> bool | None:
        return None if self.split is None else self.split.delegate_kernels > 0

    @property
    def slow_int8(self) -> bool:
        """An integer model of which XNNPACK took no operator."""
        return (self.quantized and self.split is not None and self.split.operators > 0
                and self.split.delegated == 0)

    def describe(self) -> str:
        split = self.split
        if split is None:
            return "XNNPACK cannot be told (no op table)"
        if split.delegated:
            return f"XNNPACK on ({split.delegated} of {split.operators} operators)"
        return f"XNNPACK off (all {split.operators} operators on the builtin kernels)"


def is_quantized_model(specs: Sequence[TensorSpec]) -> bool:
    return any(s.quant.is_quantized and np.issubdtype(s.dtype, np.integer) for s in specs)


def assess_fast_path(split: ExecutionSplit | None, specs: Sequence[TensorSpec]) -> FastPath:
    """The fast-path verdict from the execution split and the model's tensors."""
    return FastPath(split, is_quantized_model(specs))


def slow_int8_warning(fast_path: FastPath, backend: str, model: str) -> str | None:
    """The start-up warning for an int8 model stuck on the builtin kernels, else None."""
    if not fast_path.slow_int8:
        return None
    low, high = LITERT_INT8_SPEEDUP
    return (f"{backend} has no fast int8 path for model {model}: {fast_path.describe()}; "
            f"ai-edge-litert ran int8 models {low}-{high}x faster through XNNPACK on the "
            f"benchmark machine ({PERF_DOC}); 'edge-runtime bench MODEL' measures this one")


def paired_invoke_ratio(slow: Any, fast: Any, inputs: Sequence[tuple[int, np.ndarray]]
                        ) -> float:
    """Median ``invoke()`` time of interpreter ``slow`` / that of ``fast``, timed
    alternately (one of each in turn, after a warm-up) so a busy machine slows both alike."""
    for interpreter in (slow, fast):
        for index, value in inputs:
            interpreter.set_tensor(index, value)
        for _ in range(PROBE_WARMUP_INVOKES):
            interpreter.invoke()
    times: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    while len(times[0]) < PROBE_MIN_INVOKES or time.perf_counter() - started < PROBE_MIN_S:
        for interpreter, spent in zip((slow, fast), times, strict=True):
            t0 = time.perf_counter()
            interpreter.invoke()
            spent.append(time.perf_counter() - t0)
    return float(np.median(times[0]) / np.median(times[1]))
