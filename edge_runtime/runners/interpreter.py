"""The TFLite interpreter behind the ``ModelRunner`` seam."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import BackendUnavailableError
from edge_runtime.native_log import captured_stderr
from edge_runtime.runners.backends import Backend, BackendChoice, load_backend
from edge_runtime.runners.model_file import CorruptModelError, ModelFile
from edge_runtime.types import QuantParams, TensorSpec

log = logging.getLogger(__name__)

XNNPACK_MARKER = "XNNPACK delegate"
DELEGATE_OP = "DELEGATE"  # a subgraph handed to a delegate, in the operator table


class ModelRunner(Protocol):
    """Runs one model: fill an input buffer, invoke, read outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        """Copy ``inputs`` into the model, run it, return copies of the raw outputs."""
        ...


@dataclass(frozen=True)
class RunnerInfo:
    backend: str
    threads: int
    xnnpack: bool | None  # None when it cannot be told
    notes: tuple[str, ...]


def tensor_specs(details: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    """Interpreter tensor details -> TensorSpec (first quantization parameter per tensor)."""
    specs = []
    for d in details:
        scale, zero_point = d.get("quantization", (0.0, 0))
        specs.append(TensorSpec(
            name=str(d["name"]), index=int(d["index"]),
            shape=tuple(int(x) for x in d["shape"]), dtype=np.dtype(d["dtype"]),
            quant=QuantParams(float(scale), int(zero_point))))
    return tuple(specs)


class TFLiteRunner:
    """One interpreter; tensors allocated once. Not thread-safe: one runner per worker."""

    def __init__(self, model: ModelFile, *, backend: BackendChoice = "auto", threads: int = 1,
                 delegates: Sequence[Any] = ()) -> None:
        self.model = model
        self.backend: Backend = load_backend(backend)
        self.threads = threads
        with captured_stderr() as logged:
            try:
                self._interpreter = self.backend.interpreter_class(
                    model_content=model.content, num_threads=threads,
                    experimental_delegates=list(delegates) or None)
                self._interpreter.allocate_tensors()
            except ValueError as err:
                raise CorruptModelError(
                    f"model file {model.path} could not be loaded by {self.backend.describe()}: "
                    f"{_first_line(err)}", hint="check the file, or re-export the model") from err
            except RuntimeError as err:
                raise BackendUnavailableError(
                    f"{self.backend.describe()} cannot run model {model.path}: "
                    f"{_first_line(err)}") from err
        self.logged = tuple(logged)
        # TFLite prints the XNNPACK line only for the first interpreter of a process; later
        # ones show it as a DELEGATE node (the only delegate when none was passed explicitly).
        # Read once here: the interpreter is not to be touched while another thread invokes.
        self._xnnpack = any(XNNPACK_MARKER in line for line in self.logged) or (
            not delegates and DELEGATE_OP in self.operator_counts())
        for line in logged:
            log.debug("interpreter: %s", line)
        self.inputs = tensor_specs(self._interpreter.get_input_details())
        self.outputs = tensor_specs(self._interpreter.get_output_details())
        self._input_indices = [s.index for s in self.inputs]
        self._output_indices = [s.index for s in self.outputs]

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(self.backend.describe(), self.threads, self._xnnpack, self.logged)

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        interpreter = self._interpreter
        for index, value in zip(self._input_indices, inputs, strict=True):
            interpreter.set_tensor(index, value)  # copies into the interpreter's buffer
        interpreter.invoke()  # releases the GIL
        return tuple(interpreter.get_tensor(i) for i in self._output_indices)

    def operator_counts(self) -> dict[str, int]:
        """Operator name -> count (reads the interpreter's private op table)."""
        counts: dict[str, int] = {}
        try:
            ops = self._interpreter._get_ops_details()
        except AttributeError:  # a backend without the private API
            return counts
        for op in ops:
            name = str(op.get("op_name", "?"))
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
