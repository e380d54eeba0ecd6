"""The start-up fast-path check on the real interpreter, under each backend.

ai-edge-litert hands the int8 digits graph to XNNPACK; tflite-runtime 2.14 on x86 takes
none of its int8 operators (docs/performance.md), which must be reported as a warning.
Runs again under tflite-runtime (``-m backend``, see deploy/run-tests.sh).
"""

from __future__ import annotations

import os

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.runners.fast_path import slow_int8_warning
from edge_runtime.runners.interpreter import TFLiteRunner
from edge_runtime.runners.model_file import read_model

pytestmark = pytest.mark.backend
BACKEND = os.environ.get("EDGE_RUNTIME_TEST_BACKEND", "litert")
DIGITS = models_dir() / "digits_int8.tflite"


def test_fast_path_check_reads_the_real_interpreter() -> None:
    runner = TFLiteRunner(read_model(DIGITS), backend=BACKEND, threads=1)  # type: ignore[arg-type]
    fast = runner.fast_path()
    assert fast is not None and fast.quantized and fast.split is not None
    assert fast.split.operators == sum(n for op, n in runner.operator_counts().items()
                                       if op != "DELEGATE")
    warning = slow_int8_warning(fast, runner.info.backend, "digits_int8")
    if BACKEND == "litert":
        assert fast.xnnpack and fast.split.delegated > 0
        assert warning is None
    else:
        assert fast.xnnpack is False and fast.split.delegated == 0
        assert warning is not None and warning.startswith("tflite-runtime")
