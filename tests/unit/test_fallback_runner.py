"""FallbackRunner: the switch between accelerator and CPU, with real interpreters.

The "accelerator" here is a real CPU interpreter that can be told to fail, standing in for
an Edge TPU that is unplugged mid-run (which cannot be caused without the hardware).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.errors import DelegateError, ModelError
from edge_runtime.runners import TFLiteRunner, read_model
from edge_runtime.runners.placement import FallbackRunner
from tests.support.daemon import wait_until

MODELS = models_dir()
DIGITS = read_model(MODELS / "digits_int8.tflite")
LABEL = "edgetpu (usb)"


class Unpluggable(TFLiteRunner):
    """A real interpreter whose invoke raises like a device that went away."""

    unplugged = False
    invokes = 0

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        if self.unplugged:
            raise RuntimeError("Edge TPU: USB transfer error -19\nsecond line")
        self.invokes += 1
        return super().invoke(inputs)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frames(count: int) -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8) for _ in range(count)]


def reference_outputs(inputs: list[npt.NDArray[np.uint8]]) -> list[npt.NDArray[Any]]:
    """Independent: a plain interpreter over the same inputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=DIGITS.content, num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for tensor in inputs:
        interpreter.set_tensor(inp["index"], tensor)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]).copy())
    return outputs


def unavailable() -> DelegateError:
    return DelegateError("pipeline 'p': no Edge TPU is present", library="libedgetpu.so.1",
                         stage="create", detail="Failed to open device")


def test_unplugged_accelerator_reruns_the_frame_on_the_cpu() -> None:
    accelerated = Unpluggable(DIGITS)
    runner = FallbackRunner(lambda: accelerated, TFLiteRunner(DIGITS), label=LABEL,
                            retry_s=3600, where="pipeline 'p'")
    inputs = frames(6)
    expected = reference_outputs(inputs)
    outputs = [runner.invoke([inputs[0]]), runner.invoke([inputs[1]])]
    assert not runner.accelerator_status().degraded and accelerated.invokes == 2
    accelerated.unplugged = True
    outputs += [runner.invoke([tensor]) for tensor in inputs[2:]]
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got[0], want)
    status = runner.accelerator_status()
    assert (status.requested, status.active, status.degraded) == (LABEL, "cpu", True)
    assert status.reason == ("pipeline 'p': edgetpu (usb) failed while running: Edge TPU: USB "
                             "transfer error -19")
    assert accelerated.invokes == 2


def test_accelerator_that_comes_back_is_used_again() -> None:
    clock = Clock()
    attempts: list[str] = []
    accelerated = Unpluggable(DIGITS)

    def build() -> TFLiteRunner:
        attempts.append("try")
        if len(attempts) < 3:
            raise unavailable()
        return accelerated

    runner = FallbackRunner(build, TFLiteRunner(DIGITS), label=LABEL, retry_s=5.0,
                            where="pipeline 'p'", clock=clock)
    status = runner.accelerator_status()
    assert status.degraded and status.reason == "pipeline 'p': no Edge TPU is present"
    inputs = frames(3)
    runner.invoke([inputs[0]])
    assert attempts == ["try"]  # not due yet
    clock.now = 5.0
    runner.invoke([inputs[0]])  # starts the second attempt in the background
    assert wait_until(lambda: len(attempts) == 2, timeout=5)
    clock.now = 10.0
    expected = reference_outputs(inputs)
    done: list[bool] = []

    def invoke_until_switched() -> bool:
        output = runner.invoke([inputs[len(done) % 3]])
        np.testing.assert_array_equal(output[0], expected[len(done) % 3])
        done.append(True)
        return not runner.accelerator_status().degraded

    assert wait_until(invoke_until_switched, timeout=10, interval=0.01)
    assert attempts == ["try", "try", "try"]
    status = runner.accelerator_status()
    assert (status.active, status.degraded, status.reason) == (LABEL, False, "")
    before = accelerated.invokes
    runner.invoke([inputs[0]])
    assert accelerated.invokes == before + 1


def test_accelerated_model_must_have_the_cpu_variants_tensors() -> None:
    vibration = TFLiteRunner(read_model(MODELS / "vibration_int8.tflite"))
    with pytest.raises(ModelError, match="different input or output tensors"):
        FallbackRunner(lambda: vibration, TFLiteRunner(DIGITS), label=LABEL, retry_s=1,
                       where="pipeline 'p'")
