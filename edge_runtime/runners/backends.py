"""Interpreter backends, picked from an explicit registry with lazy imports.

``litert`` is ``ai-edge-litert`` (the maintained successor of ``tflite-runtime``, numpy 2);
``tflite-runtime`` is the older wheel (numpy < 2, no fast int8 XNNPACK path on x86).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from edge_runtime.errors import BackendUnavailableError

BackendName = Literal["litert", "tflite-runtime"]
BackendChoice = Literal["auto", "litert", "tflite-runtime"]

# name -> (module holding Interpreter/load_delegate, package to read the version from, pip name)
REGISTRY: dict[BackendName, tuple[str, str, str]] = {
    "litert": ("ai_edge_litert.interpreter", "ai_edge_litert", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite_runtime", "tflite-runtime"),
}
AUTO_ORDER: tuple[BackendName, ...] = ("litert", "tflite-runtime")


@dataclass(frozen=True)
class Backend:
    """A loaded interpreter module."""

    name: BackendName
    version: str
    module: Any  # the module exposing Interpreter and load_delegate

    @property
    def interpreter_class(self) -> Any:
        return self.module.Interpreter

    def describe(self) -> str:
        return f"{self.name} {self.version}"


_cache: dict[BackendName, Backend] = {}


def _import(name: BackendName) -> Backend:
    if name in _cache:
        return _cache[name]
    module_name, package_name, pip_name = REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
        package = importlib.import_module(package_name)
    except ImportError as err:
        raise BackendUnavailableError(
            f"interpreter backend '{name}' is not installed ({err})",
            hint=f"pip install {pip_name}, or choose another model.backend") from err
    version = str(getattr(package, "__version__", "unknown"))
    backend = Backend(name, version, module)
    _cache[name] = backend
    return backend


def load_backend(choice: BackendChoice = "auto") -> Backend:
    """Import the requested backend; ``auto`` takes the first importable one."""
    if choice != "auto":
        return _import(choice)
    errors = []
    for name in AUTO_ORDER:
        try:
            return _import(name)
        except BackendUnavailableError as err:
            errors.append(err.message)
    raise BackendUnavailableError(
        "no TFLite interpreter backend is installed: " + "; ".join(errors),
        hint="pip install ai-edge-litert")
