"""Interpreter backends, picked from an explicit registry with lazy imports.

``litert`` is ``ai-edge-litert`` (the maintained successor of ``tflite-runtime``, numpy 2);
``tflite-runtime`` is the older wheel (numpy < 2, no fast int8 XNNPACK path on x86).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edge_runtime.errors import BackendUnavailableError, DelegateError
from edge_runtime.native_log import captured_stderr, last_native_message, suppressed_unraisable

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

    def load_delegate(self, library: str, options: Mapping[str, str]) -> Any:
        """Load a TFLite external delegate with this backend's ``load_delegate``.

        Raises DelegateError (stage ``library`` or ``create``) carrying the delegate's own
        error text: what it passed to report_error, else its last line on stderr.
        """
        failure: tuple[str, str] | None = None
        # Both backends raise OSError for a library that does not load and ValueError
        # ("Failed to load delegate from X" + the delegate's report on the next line) for a
        # delegate that refused; the half-built Delegate's __del__ then raises AttributeError
        # (OSError case) when it is freed. It is freed when ``err`` goes at the end of the
        # except clause, inside this block, which is why the error is not chained.
        with suppressed_unraisable(_is_delegate_finalizer), captured_stderr() as native:
            try:
                return self.module.load_delegate(library, dict(options))
            except OSError as err:
                failure = ("library", str(err).strip())
            except ValueError as err:
                failure = ("create", "; ".join(str(err).strip().splitlines()[1:]).strip())
        stage, detail = failure
        detail = detail or last_native_message(native) or "no reason given"
        raise DelegateError(f"delegate {library} failed to load: {detail}", library=library,
                            stage=stage, detail=detail)


def _is_delegate_finalizer(args: sys.UnraisableHookArgs) -> bool:
    return (args.exc_type is AttributeError
            and getattr(args.object, "__qualname__", "") == "Delegate.__del__")


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
