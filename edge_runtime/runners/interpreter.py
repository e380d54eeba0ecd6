"""The TFLite interpreter behind the ``ModelRunner`` seam."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import BackendUnavailableError, DelegateError
from edge_runtime.native_log import captured_stderr
from edge_runtime.runners.accelerators import (
    CPU_LABEL,
    AcceleratorStatus,
    DelegateSpec,
    ExecutionSplit,
    execution_split,
)
from edge_runtime.runners.backends import Backend, BackendChoice, load_backend
from edge_runtime.runners.fast_path import FastPath, assess_fast_path, paired_invoke_ratio
from edge_runtime.runners.model_file import CorruptModelError, ModelFile
from edge_runtime.types import QuantParams, TensorSpec

log = logging.getLogger(__name__)

XNNPACK_MARKER = "XNNPACK delegate"


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
    accelerator: str = CPU_LABEL  # "cpu" or the delegate's label


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
                 delegate: DelegateSpec | None = None, default_delegates: bool = True) -> None:
        """``delegate``: an external delegate applied before the default XNNPACK delegate
        (which takes what is left); ``default_delegates=False`` leaves XNNPACK out, so every
        DELEGATE node belongs to ``delegate`` (``inspect`` counts its share that way)."""
        self.model = model
        self.backend: Backend = load_backend(backend)
        self.threads = threads
        self.delegate = delegate
        self.started = time.time()
        delegates = ([self.backend.load_delegate(delegate.library, delegate.option_map())]
                     if delegate is not None else [])
        options: dict[str, Any] = {}
        if not default_delegates:
            options["experimental_op_resolver_type"] = (
                self.backend.module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with captured_stderr() as logged:
            try:
                self._interpreter = self.backend.interpreter_class(
                    model_content=model.content, num_threads=threads,
                    experimental_delegates=delegates or None, **options)
                self._interpreter.allocate_tensors()
            except ValueError as err:
                raise CorruptModelError(
                    f"model file {model.path} could not be loaded by {self.backend.describe()}: "
                    f"{_first_line(err)}", hint="check the file, or re-export the model") from err
            except RuntimeError as err:
                if delegate is not None:  # the delegate refused the graph (Prepare failed)
                    detail = _native_error(logged) or _first_line(err)
                    raise DelegateError(
                        f"delegate {delegate.library} could not be applied to model "
                        f"{model.path.name}: {detail}", library=delegate.library,
                        stage="prepare", detail=detail) from err
                raise BackendUnavailableError(
                    f"{self.backend.describe()} cannot run model {model.path}: "
                    f"{_first_line(err)}") from err
        self.logged = tuple(logged)
        for line in logged:
            log.debug("interpreter: %s", line)
        self.inputs = tensor_specs(self._interpreter.get_input_details())
        self.outputs = tensor_specs(self._interpreter.get_output_details())
        self._input_indices = [s.index for s in self.inputs]
        self._output_indices = [s.index for s in self.outputs]
        # Read once here: the interpreter is not to be touched while another thread invokes.
        self.info = self._describe(default_delegates)

    def _describe(self, default_delegates: bool) -> RunnerInfo:
        """Backend, threads and whether XNNPACK took part of the graph.

        TFLite prints its "XNNPACK delegate" line once per process, so the op table decides
        when it can: without an external delegate every DELEGATE node is XNNPACK's.
        """
        xnnpack: bool | None = any(XNNPACK_MARKER in line for line in self.logged)
        if self.delegate is None:
            split = self.execution_split()
            if split is not None:
                xnnpack = default_delegates and split.delegate_kernels > 0
        elif not xnnpack:
            xnnpack = None if default_delegates else False
        accelerator = self.delegate.label if self.delegate is not None else CPU_LABEL
        return RunnerInfo(self.backend.describe(), self.threads, xnnpack, self.logged,
                          accelerator)

    def accelerator_status(self) -> AcceleratorStatus:
        """A runner without fallback runs where it was asked to, or does not exist."""
        label = self.info.accelerator
        return AcceleratorStatus(label, label, False, "", self.started)

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        interpreter = self._interpreter
        for index, value in zip(self._input_indices, inputs, strict=True):
            interpreter.set_tensor(index, value)  # copies into the interpreter's buffer
        interpreter.invoke()  # releases the GIL
        return tuple(interpreter.get_tensor(i) for i in self._output_indices)

    def _ops(self) -> list[dict[str, Any]] | None:
        """The interpreter's op table (a private API; None on a backend without it)."""
        try:
            return list(self._interpreter._get_ops_details())
        except AttributeError:
            return None

    def execution_split(self) -> ExecutionSplit | None:
        """How many operators delegate kernels took, and what the CPU kernels still run."""
        ops = self._ops()
        return execution_split(ops, self._output_indices) if ops is not None else None

    def operator_counts(self) -> dict[str, int]:
        """Operator name -> count (reads the interpreter's private op table)."""
        counts: dict[str, int] = {}
        for op in self._ops() or ():
            name = str(op.get("op_name", "?"))
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def fast_path(self) -> FastPath | None:
        """How much of the model XNNPACK runs; None with an accelerator delegate (its
        kernels are not XNNPACK's). Reads the op table: not while another thread invokes."""
        if self.delegate is not None:
            return None
        return assess_fast_path(self.execution_split(), self.inputs + self.outputs)

    def xnnpack_speedup(self) -> float:
        """Measured: median invoke on the builtin kernels alone / median invoke of this
        interpreter, both on zero inputs with this runner's thread count. Takes a second or
        so (a second interpreter is built and thrown away)."""
        builtin = TFLiteRunner(self.model, backend=self.backend.name, threads=self.threads,
                               default_delegates=False)
        inputs = [(s.index, np.zeros(s.shape, s.dtype)) for s in self.inputs]
        return paired_invoke_ratio(builtin._interpreter, self._interpreter, inputs)


def _native_error(lines: Sequence[str]) -> str:
    """The last line a native library wrote that is not an INFO notice."""
    errors = [line.strip() for line in lines if not line.startswith("INFO:")]
    return errors[-1] if errors else ""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
