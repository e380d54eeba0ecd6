"""The doctor's pure judgements, exit codes, output lines and the check registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.config.schema import Config
from edge_runtime.doctor.checks import (
    decode_throttled,
    judge_clock,
    judge_free_space,
    judge_governor,
    judge_throttled,
)
from edge_runtime.doctor.registry import (
    Check,
    CheckResult,
    DoctorContext,
    exit_code,
    format_result,
    run_checks,
    summary,
)

MIB = 1024**2


def test_throttled_bits_split_into_now_and_since_boot() -> None:
    # 0x50005 is the classic weak-power-supply reading: under-voltage and throttling now
    # (bits 0, 2) and both have happened since boot (bits 16, 18)
    assert decode_throttled(0x50005) == (["under-voltage", "throttled"],
                                         ["under-voltage", "throttled"])
    assert decode_throttled(0x80000) == ([], ["soft temperature limit"])
    assert decode_throttled(0) == ([], [])


@pytest.mark.parametrize(("value", "status"), [
    (0x0, "pass"), (0x50005, "fail"), (0x50000, "warn"), (0x8, "warn")])
def test_under_voltage_now_fails_other_throttling_warns(value: int, status: str) -> None:
    result = judge_throttled(value)
    assert result.status == status
    assert (result.hint is not None) == (status != "pass")


@pytest.mark.parametrize(("governor", "driver", "status"), [
    ("powersave", "cpufreq-dt", "warn"),  # a Pi held at its lowest clock
    ("powersave", "intel_pstate", "pass"),  # p-state powersave still scales
    ("ondemand", "cpufreq-dt", "pass"), ("performance", None, "pass")])
def test_governor(governor: str, driver: str | None, status: str) -> None:
    assert judge_governor(governor, driver).status == status


def test_clock_witnesses_from_most_to_least_specific() -> None:
    assert judge_clock(True, "no", 5).status == "pass"  # timesyncd's flag wins
    assert judge_clock(False, "yes", 5).status == "pass"
    assert judge_clock(False, "no", 0).status == "warn"
    assert judge_clock(False, None, 5).message.startswith("the kernel reports the clock "
                                                          "unsynchronised")
    assert judge_clock(False, None, 0).status == "pass"
    assert judge_clock(False, None, None).status == "skip"


def test_free_space_against_minimum_and_outbox_bound() -> None:
    state = Path("/var/lib/edge-runtime")
    assert judge_free_space(state, False, 10 * MIB, 256 * MIB).status == "fail"
    assert judge_free_space(state, False, 100 * MIB, 256 * MIB).status == "warn"
    ok = judge_free_space(state, True, 1000 * MIB, 256 * MIB)
    assert ok.status == "pass" and ok.message == (
        "/var/lib/edge-runtime (will be created) writable, 1000 MiB free")


def test_exit_code_is_the_worst_status() -> None:
    ok, skip = CheckResult("a", "pass", "x"), CheckResult("b", "skip", "x")
    warn, fail = CheckResult("c", "warn", "x", "do y"), CheckResult("d", "fail", "x", "do z")
    assert exit_code([ok, skip]) == 0
    assert exit_code([ok, warn, skip]) == 1
    assert exit_code([warn, fail, ok]) == 2
    assert summary([ok, skip, warn, fail, fail]) == \
        "1 passed, 1 warning(s), 2 failed, 1 skipped"


def test_a_line_per_result_with_its_fix() -> None:
    assert format_result(CheckResult("broker", "fail", "no broker", "start it")) == (
        "FAIL  broker     no broker\n                 fix: start it")
    assert format_result(CheckResult("cpu", "pass", "fine", "unused")) == \
        "PASS  cpu        fine"


def _context() -> DoctorContext:
    config = Config.model_validate({"pipelines": [{
        "name": "cam", "source": {"type": "synthetic"}, "model": {"path": "m.tflite"}}]})
    return DoctorContext(config, None)


def test_a_crashing_check_is_a_fail_line_and_the_others_still_run() -> None:
    def broken(_context: DoctorContext) -> Iterator[CheckResult]:
        raise RuntimeError("oops")
        yield  # pragma: no cover - makes it a generator like the real checks

    def fine(_context: DoctorContext) -> Iterator[CheckResult]:
        yield CheckResult("extra", "pass", "accelerator present")

    checks: list[tuple[str, Check]] = [("broken", broken), ("extra", fine)]
    results = run_checks(_context(), checks)
    assert [(r.check, r.status) for r in results] == [("broken", "fail"), ("extra", "pass")]
    assert "RuntimeError('oops')" in results[0].message

