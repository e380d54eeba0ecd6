"""Where a model runs: its accelerator, with the configured fallback to the CPU.

``build_runner`` applies the policy: ``fail`` raises the accelerator's problem (exit 69);
``cpu`` runs the CPU variant of the model, reports the pipeline degraded and retries the
accelerator every ``retry_s`` on a short-lived thread. Switching between the two happens
inside ``invoke`` on the inference thread, between two invokes; a frame whose accelerated
invoke fails is run again on the CPU, so no frame is lost either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy.typing as npt

from edge_runtime.config.schema import AcceleratorConfig, CpuAccelerator, PipelineConfig
from edge_runtime.errors import DelegateError, ModelError
from edge_runtime.runners.accelerators import (
    CPU_LABEL,
    AcceleratorStatus,
    DelegateSpec,
    check_model_fits,
    delegate_spec,
    explain_delegate_failure,
    survey_devices,
)
from edge_runtime.runners.backends import Backend, BackendChoice
from edge_runtime.runners.interpreter import RunnerInfo, TFLiteRunner
from edge_runtime.runners.model_file import ModelFile, custom_operator_codes, read_model
from edge_runtime.types import TensorSpec

log = logging.getLogger(__name__)


class AcceleratedRunner(Protocol):
    """What FallbackRunner needs from the runner on the accelerator."""

    model: ModelFile
    threads: int
    info: RunnerInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        ...


def same_signature(a: Sequence[TensorSpec], b: Sequence[TensorSpec]) -> bool:
    """Tensors agree in shape, dtype and quantization (names and indices may differ)."""
    def key(spec: TensorSpec) -> tuple[Any, ...]:
        return spec.shape, spec.dtype, spec.quant

    return [key(x) for x in a] == [key(y) for y in b]


class FallbackRunner:
    """Runs on the accelerator when it works and on the CPU otherwise.

    ``invoke`` is called from one thread (the pipeline's inference thread);
    ``accelerator_status`` from any thread.
    """

    def __init__(self, build_accelerated: Callable[[], AcceleratedRunner], cpu: TFLiteRunner,
                 *, label: str, retry_s: float, where: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cpu = cpu
        self.inputs = cpu.inputs
        self.outputs = cpu.outputs
        self.label = label
        self.retry_s = retry_s
        self.where = where
        self._build = build_accelerated
        self._clock = clock
        self._lock = threading.Lock()  # guards _status and _retrying
        self._candidate: AcceleratedRunner | None = None  # set by a retry, taken by invoke
        self._retrying = False
        self._next_retry = 0.0
        self._status = AcceleratorStatus(label, label, False, "", time.time())
        self._active: AcceleratedRunner | TFLiteRunner = cpu
        try:
            accelerated = self._checked(build_accelerated())
        except DelegateError as err:
            self._fall_back(err.message, err.hint)
        else:
            self._active = accelerated

    # --- what the pipeline sees -------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self.cpu.backend  # the accelerated runner uses the same backend

    @property
    def model(self) -> ModelFile:
        return self._active.model

    @property
    def threads(self) -> int:
        return self._active.threads

    @property
    def info(self) -> RunnerInfo:
        return self._active.info

    def accelerator_status(self) -> AcceleratorStatus:
        with self._lock:
            return self._status

    def invoke(self, inputs: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], ...]:
        """Run one input on the active runner; switches happen here, between invokes."""
        if self._candidate is not None:
            self._switch_back()
        elif self._active is self.cpu and self._clock() >= self._next_retry:
            self._start_retry()
        active = self._active
        if active is self.cpu:
            return active.invoke(inputs)
        try:
            return active.invoke(inputs)
        except RuntimeError as err:  # the device went away mid-run (unplugged, reset)
            text = str(err).strip().splitlines()
            self._fall_back(f"{self.where}: {self.label} failed while running: "
                            f"{text[0] if text else type(err).__name__}")
            return self.cpu.invoke(inputs)  # the same frame again: nothing is lost

    # --- switching ------------------------------------------------------------------------

    def _checked(self, runner: AcceleratedRunner) -> AcceleratedRunner:
        if not (same_signature(runner.inputs, self.cpu.inputs)
                and same_signature(runner.outputs, self.cpu.outputs)):
            raise ModelError(
                f"{self.where}: model {runner.model.path.name} and its CPU variant "
                f"{self.cpu.model.path.name} have different input or output tensors",
                hint="model.cpu_path must be the model edgetpu_compiler was given")
        return runner

    def _fall_back(self, reason: str, hint: str | None = None) -> None:
        self._active = self.cpu
        self._next_retry = self._clock() + self.retry_s
        with self._lock:
            self._status = AcceleratorStatus(self.label, CPU_LABEL, True, reason, time.time())
        log.warning("%s%s; running on the CPU (%s), degraded, and retrying %s every %g s",
                    reason, f" ({hint})" if hint else "", self.cpu.model.path.name, self.label,
                    self.retry_s)

    def _switch_back(self) -> None:
        runner, self._candidate = self._candidate, None
        assert runner is not None
        self._active = runner
        with self._lock:
            self._status = AcceleratorStatus(self.label, self.label, False, "", time.time())
        log.info("%s: %s works again; switched back from the CPU", self.where, self.label)

    def _start_retry(self) -> None:
        with self._lock:
            if self._retrying:
                return
            self._retrying = True
        self._next_retry = self._clock() + self.retry_s
        threading.Thread(target=self._retry, name=f"{self.where}-accelerator-retry",
                         daemon=True).start()

    def _retry(self) -> None:
        """Build the accelerated runner off the inference thread; invoke picks it up."""
        try:
            self._candidate = self._checked(self._build())
        except (DelegateError, ModelError) as err:
            with self._lock:
                changed = err.message != self._status.reason
                if changed:
                    self._status = AcceleratorStatus(self.label, CPU_LABEL, True, err.message,
                                                     self._status.since)
            log.log(logging.INFO if changed else logging.DEBUG, "%s still unavailable: %s",
                    self.label, err.message)
        except Exception:  # a retry must never take the pipeline down
            log.exception("%s: retrying %s failed unexpectedly", self.where, self.label)
        finally:
            with self._lock:
                self._retrying = False


PipelineRunner = TFLiteRunner | FallbackRunner


def build_runner(config: PipelineConfig, model: ModelFile, threads: int) -> PipelineRunner:
    """The runner for one pipeline's model, on its accelerator, with its fallback policy."""
    where = f"pipeline '{config.name}'"
    settings = config.model
    accelerator = settings.accelerator
    spec = delegate_spec(accelerator)
    check_model_fits(model, accelerator.type, where)
    if spec is None or isinstance(accelerator, CpuAccelerator):
        return TFLiteRunner(model, backend=settings.backend, threads=threads)

    def accelerated() -> TFLiteRunner:
        return accelerated_runner(model, spec, settings.backend, threads, where)

    if accelerator.fallback == "fail":
        return accelerated()
    cpu_model = read_model(settings.cpu_path) if settings.cpu_path is not None else model
    check_model_fits(cpu_model, CPU_LABEL, where)
    cpu = TFLiteRunner(cpu_model, backend=settings.backend, threads=threads)
    return FallbackRunner(accelerated, cpu, label=spec.label, retry_s=accelerator.retry_s,
                          where=where)


def accelerated_runner(model: ModelFile, spec: DelegateSpec, backend: BackendChoice,
                       threads: int, where: str, *, default_delegates: bool = True,
                       ) -> TFLiteRunner:
    """A runner with ``spec``'s delegate; its failure explained in one actionable line."""
    try:
        return TFLiteRunner(model, backend=backend, threads=threads, delegate=spec,
                            default_delegates=default_delegates)
    except DelegateError as err:
        survey = survey_devices() if spec.kind == "edgetpu" else None
        raise explain_delegate_failure(spec, err, where, survey) from err


def placement_report(model: ModelFile, accelerator: AcceleratorConfig, backend: BackendChoice,
                     ) -> tuple[TFLiteRunner, dict[str, Any]]:
    """Load ``model`` on ``accelerator`` and say what runs where (for ``inspect``).

    Returns the runner (XNNPACK on, as the daemon runs it) and a report: the model's custom
    operators, the split with every default delegate, and for an accelerator its own share,
    counted on a second interpreter without XNNPACK so every DELEGATE node is the
    accelerator's.
    """
    where = "inspect"
    check_model_fits(model, accelerator.type, where)
    spec = delegate_spec(accelerator)
    if spec is None:
        runner = TFLiteRunner(model, backend=backend, threads=1)
        share = None
    else:
        runner = accelerated_runner(model, spec, backend, 1, where)
        share = accelerated_runner(model, spec, backend, 1, where,
                                   default_delegates=False).execution_split()
    split = runner.execution_split()
    return runner, {
        "requested": spec.label if spec is not None else CPU_LABEL,
        "custom_operators": list(custom_operator_codes(model.content) or ()),
        "accelerator_share": share.as_dict() if share is not None else None,
        "execution": split.as_dict() if split is not None else None,
    }
