"""``edge-runtime doctor``: checks the device and the configured things without starting the
daemon. Each check prints pass/warn/fail with a one-line fix; see docs/health.md."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.config import load_config
from edge_runtime.doctor import checks as _builtin_checks  # noqa: F401 - registers them
from edge_runtime.doctor.registry import CheckResult, DoctorContext, run_checks
from edge_runtime.errors import ConfigError, EdgeRuntimeError


def run_doctor(config_path: Path, overrides: list[str]) -> list[CheckResult]:
    """Every registered check against the config; a config that does not load is the one
    failure reported (the other checks need it)."""
    try:
        config = load_config(config_path, overrides)
    except ConfigError as err:
        problems = err.problems or [err.message]
        return [CheckResult("config", "fail", problem, err.hint if i == len(problems) - 1
                            else None) for i, problem in enumerate(problems)]
    except EdgeRuntimeError as err:
        return [CheckResult("config", "fail", err.message, err.hint)]
    results = [CheckResult("config", "pass", f"{config_path} is valid "
                           f"({len(config.pipelines)} pipeline(s))")]
    return results + run_checks(DoctorContext(config, config_path))
