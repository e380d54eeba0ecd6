"""One error hierarchy; each class maps to a documented process exit code.

User errors carry a one-line message (what, where, what to do) that the CLI prints
without a traceback. Wrap library exceptions with ``raise ... from err``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (sysexits.h values where one fits)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 64  # EX_USAGE
    INPUT_MISSING = 66  # EX_NOINPUT: input file missing or unreadable
    BACKEND_UNAVAILABLE = 69  # EX_UNAVAILABLE: interpreter/delegate cannot run
    STATE_UNWRITABLE = 73  # EX_CANTCREAT: the state directory is full or failing (transient)
    CONFIG = 78  # EX_CONFIG: systemd does not restart on it (RestartPreventExitStatus)


class EdgeRuntimeError(Exception):
    """Base of every error edge-runtime raises on purpose."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgeRuntimeError):
    """The command line itself is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(EdgeRuntimeError):
    """The configuration is invalid; ``problems`` holds one line per error."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, *, problems: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join(self.problems)


class ModelError(ConfigError):
    """A model file is corrupt, or does not fit the pipeline configured for it."""


class InputError(EdgeRuntimeError):
    """An input file (model, image, video, labels) is missing or unreadable."""

    exit_code = ExitCode.INPUT_MISSING


class SourceError(EdgeRuntimeError):
    """A frame or sensor source cannot be opened or read."""

    exit_code = ExitCode.INPUT_MISSING


class BackendUnavailableError(EdgeRuntimeError):
    """The interpreter backend or a delegate cannot be loaded."""

    exit_code = ExitCode.BACKEND_UNAVAILABLE


class DelegateError(BackendUnavailableError):
    """An accelerator delegate cannot be used: its library, its device or the model.

    ``stage`` says where it failed (``library``: the shared library does not load,
    ``create``: the library refused to create the delegate, ``prepare``: the interpreter
    could not apply it to the model, ``invoke``: it failed while running); ``detail`` is the
    delegate's own error text.
    """

    def __init__(self, message: str, *, library: str, stage: str, detail: str,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.library = library
        self.stage = stage
        self.detail = detail


class StateError(EdgeRuntimeError):
    """The state directory (outbox) cannot be written right now: disk full, I/O error.

    Transient, so systemd restarts the daemon (unlike a configuration error).
    """

    exit_code = ExitCode.STATE_UNWRITABLE
