"""The doctor's check registry: small functions that each return frozen results.

A check is ``f(context) -> Iterable[CheckResult]`` registered with ``@check("name")``; it
may return several results (one per pipeline, per camera...). Checks run in registration
order and may read what earlier ones left in the context (the loaded models). To add one
(an accelerator, a sensor bus), register it in a module imported by
:func:`edge_runtime.doctor.run_doctor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edge_runtime.config.schema import Config
    from edge_runtime.pipeline import ModelStages

log = logging.getLogger(__name__)

CheckStatus = Literal["pass", "warn", "fail", "skip"]  # skip: not applicable or not readable
EXIT_OK, EXIT_WARNINGS, EXIT_FAILURES = 0, 1, 2


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: CheckStatus
    message: str
    hint: str | None = None  # one line: what to do about a warn or fail

    def as_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "message": self.message,
                "hint": self.hint}


@dataclass
class DoctorContext:
    config: Config
    config_path: Path | None
    stages: dict[str, ModelStages] = field(default_factory=dict)  # by pipeline, loaded ok


Check = Callable[[DoctorContext], Iterable[CheckResult]]
_CHECKS: list[tuple[str, Check]] = []


def check(name: str) -> Callable[[Check], Check]:
    """Register a check under ``name`` (the first column of the doctor's output)."""
    def register(function: Check) -> Check:
        _CHECKS.append((name, function))
        return function
    return register


def registered() -> tuple[tuple[str, Check], ...]:
    return tuple(_CHECKS)


def run_checks(context: DoctorContext,
               checks: Sequence[tuple[str, Check]] | None = None) -> list[CheckResult]:
    """Run every check; a check that crashes becomes a ``fail`` line, never a traceback."""
    results: list[CheckResult] = []
    for name, function in registered() if checks is None else checks:
        try:
            results.extend(function(context))
        except Exception as err:  # a diagnostic must report everything it can
            log.debug("doctor check %s crashed", name, exc_info=True)
            results.append(CheckResult(name, "fail", f"the check itself failed: {err!r}",
                                       "please report this as a bug"))
    return results


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when everything passed (or was skipped), 1 with warnings, 2 with failures."""
    statuses = {r.status for r in results}
    if "fail" in statuses:
        return EXIT_FAILURES
    return EXIT_WARNINGS if "warn" in statuses else EXIT_OK


def summary(results: Sequence[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail", "skip")}
    return (f"{counts['pass']} passed, {counts['warn']} warning(s), {counts['fail']} failed, "
            f"{counts['skip']} skipped")


def format_result(result: CheckResult, width: int = 10) -> str:
    """``PASS  model      digits: ...`` plus an indented ``fix:`` line for warn/fail."""
    line = f"{result.status.upper():<5} {result.check:<{width}} {result.message}"
    if result.hint and result.status in ("warn", "fail"):
        line += f"\n{'':<{6 + width}} fix: {result.hint}"
    return line
