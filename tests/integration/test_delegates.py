"""Accelerators end to end with a real external delegate built from C by the test suite.

The probe delegate (tests/delegates/probe_delegate.c) takes no operators, writes a marker
file when TFLite prepares it (with the number of nodes it was offered) and fails on
request, so every path the daemon takes with a real NPU delegate - loaded with options,
refused with its own error text, back after an outage - runs through the real interpreter
on the real digits model. The Edge TPU paths run on this machine's missing libedgetpu.
"""

from __future__ import annotations

import gc
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import PipelineConfig
from edge_runtime.errors import DelegateError
from edge_runtime.pipeline import ModelStages, Pipeline
from edge_runtime.runners import TFLiteRunner, read_model
from edge_runtime.runners.accelerators import DelegateSpec, library_loads
from edge_runtime.runners.backends import BackendChoice, load_backend
from edge_runtime.testing import ArraySource, CollectingSink
from edge_runtime.types import Frame, Image
from tests.conftest import SubscriberFactory
from tests.integration.test_bad_input import assert_one_clear_line
from tests.support.broker import MosquittoBroker, free_port
from tests.support.daemon import DaemonProcess, run_cli
from tests.support.delegates import build_probe_delegate, make_edgetpu_like_model, operator_count

MODELS = models_dir()
DIGITS = MODELS / "digits_int8.tflite"
USB_SYSFS = Path("/sys/bus/usb/devices")
HELD_OUT = sorted((MODELS / "demo" / "digits").glob("*.jpg"))
FRAMES = 40
NPU_ERROR = "NPU firmware 6.4.9 not found in /lib/firmware"
PIPELINE_TIMEOUT_S = 60.0
BACKEND = cast("BackendChoice", os.environ.get("EDGE_RUNTIME_TEST_BACKEND", "litert"))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe_delegate(tmp_path_factory.mktemp("delegate"))


@pytest.fixture(scope="module")
def edgetpu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_edgetpu_like_model(DIGITS, tmp_path_factory.mktemp("models") /
                                   "digits_int8_edgetpu.tflite")


@pytest.fixture
def no_libedgetpu() -> None:
    if library_loads("libedgetpu.so.1") is None:
        pytest.skip("libedgetpu.so.1 is installed here; these tests need a machine without it")


def images(count: int = FRAMES) -> list[Image]:
    return [cast("Image", cv2.imread(str(path), cv2.IMREAD_COLOR)) for path in HELD_OUT[:count]]


def truth(count: int = FRAMES) -> list[str]:
    return [path.stem.split("_")[1] for path in HELD_OUT[:count]]  # NNNN_<label>.jpg


def pipeline_config(model: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "digits", "source": {"type": "synthetic"},
        "model": {"path": str(DIGITS), "labels": str(MODELS / "digits_labels.txt"),
                  "threads": 1, **model},
        "task": {"type": "classify", "top_k": 1}})


def probe_accelerator(probe: Path, fallback: str = "fail", retry_s: float = 60.0,
                      **options: str) -> dict[str, Any]:
    return {"type": "delegate", "library": str(probe), "options": options,
            "fallback": fallback, "retry_s": retry_s}


def run(config: PipelineConfig, source: Any) -> tuple[Pipeline, CollectingSink]:
    """The real four-thread pipeline to the end of ``source``."""
    sink = CollectingSink()
    pipeline = Pipeline(config, ModelStages.load(config, threads=1), sink, source=source)
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(timeout=PIPELINE_TIMEOUT_S)
    assert pipeline.state == "finished", pipeline.error
    return pipeline, sink


def labels(sink: CollectingSink) -> list[str]:
    return [result.predictions[0].label for result in sink.results]


def cpu_labels() -> list[str]:
    """The same frames through a pipeline without any accelerator."""
    _, sink = run(pipeline_config({}), ArraySource(images()))
    return labels(sink)


def test_pipeline_runs_on_the_delegate_loaded_with_its_options(probe: Path,
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "prepared.txt"
    config = pipeline_config({"accelerator": probe_accelerator(probe, marker=str(marker))})
    pipeline, sink = run(config, ArraySource(images()))
    # Prepare ran once, offered the whole graph: the delegate goes before XNNPACK
    assert marker.read_text() == f"prepared {operator_count(DIGITS)}\n"
    assert len(sink.results) == FRAMES
    assert labels(sink) == cpu_labels()  # a delegate that takes nothing changes nothing
    assert sum(a == b for a, b in zip(labels(sink), truth(), strict=True)) >= 0.9 * FRAMES
    accelerator = pipeline.snapshot()["accelerator"]
    assert accelerator["requested"] == accelerator["active"] == "delegate libprobe_delegate.so"
    assert accelerator["degraded"] is False and accelerator["reason"] == ""


def test_failing_delegate_with_cpu_fallback_runs_degraded(probe: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture,
                                                          ) -> None:
    marker = tmp_path / "prepared.txt"
    config = pipeline_config({"accelerator": probe_accelerator(
        probe, "cpu", marker=str(marker), fail="create", message=NPU_ERROR)})
    pipeline, sink = run(config, ArraySource(images()))
    assert labels(sink) == cpu_labels()
    assert not marker.exists()
    accelerator = pipeline.snapshot()["accelerator"]
    assert accelerator["requested"] == "delegate libprobe_delegate.so"
    assert accelerator["active"] == "cpu" and accelerator["degraded"] is True
    assert accelerator["reason"] == (f"pipeline 'digits': delegate {probe} refused to start: "
                                     f"{NPU_ERROR}")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(NPU_ERROR in w and "running on the CPU" in w for w in warnings), warnings


class GatedSource:
    """Held-out frames; after ``switch_at`` frames it brings the accelerator back (removes
    the file the probe fails on) and keeps delivering until the pipeline switched."""

    live = False

    def __init__(self, frames: list[Image], switch_at: int, outage: Path,
                 pipeline: list[Pipeline]) -> None:
        self.description = "gated held-out frames"
        self.frames, self.switch_at, self.outage = frames, switch_at, outage
        self.pipeline = pipeline
        self.delivered = 0
        self.switched_at: int | None = None

    def open(self) -> None:
        self.delivered = 0

    def read(self) -> Frame | None:
        if self.delivered == self.switch_at:
            self.outage.unlink()
        if self.delivered >= self.switch_at and self.switched_at is None:
            if not self.pipeline[0].snapshot()["accelerator"]["degraded"]:
                self.switched_at = self.delivered
            elif self.delivered > 10 * len(self.frames):
                return None  # never switched: the test fails on switched_at
            time.sleep(0.01)  # paced while waiting for the retry
        if self.switched_at is not None and self.delivered >= self.switched_at + 20:
            return None
        image = self.frames[self.delivered % len(self.frames)]
        self.delivered += 1
        return Frame(self.delivered - 1, time.time(), time.monotonic(), image=image)

    def close(self) -> None:
        pass


def test_delegate_that_comes_back_is_used_again_without_losing_a_frame(probe: Path,
                                                                       tmp_path: Path) -> None:
    outage, marker = tmp_path / "npu-down", tmp_path / "prepared.txt"
    outage.touch()
    config = pipeline_config({"accelerator": probe_accelerator(
        probe, "cpu", retry_s=0.1, marker=str(marker), fail_while=str(outage))})
    stages = ModelStages.load(config, threads=1)
    assert stages.runner.accelerator_status().degraded
    holder: list[Pipeline] = []
    source = GatedSource(images(), switch_at=10, outage=outage, pipeline=holder)
    sink = CollectingSink()
    pipeline = Pipeline(config, stages, sink, source=source)
    holder.append(pipeline)
    pipeline.open_source()
    pipeline.start()
    assert pipeline.join(timeout=PIPELINE_TIMEOUT_S)
    assert pipeline.state == "finished", pipeline.error
    assert source.switched_at is not None, "the pipeline never switched back"
    assert [r.frame_number for r in sink.results] == list(range(source.delivered))
    assert marker.read_text() == f"prepared {operator_count(DIGITS)}\n"
    accelerator = pipeline.snapshot()["accelerator"]
    assert accelerator["active"] == "delegate libprobe_delegate.so"
    assert accelerator["degraded"] is False


def write_config(tmp_path: Path, accelerator: dict[str, Any], *, model: Path = DIGITS,
                 cpu_path: Path | None = None, port: int = 1, fps: float | None = None,
                 ) -> Path:
    model_section: dict[str, Any] = {"path": str(model), "labels": str(MODELS /
                                     "digits_labels.txt"), "threads": 1,
                                     "accelerator": accelerator}
    if cpu_path is not None:
        model_section["cpu_path"] = str(cpu_path)
    source: dict[str, Any] = {"type": "images", "path": str(MODELS / "demo" / "digits"),
                              "loop": True}
    if fps is not None:
        source["fps"] = fps
    config = {"device_id": "accel", "state_dir": str(tmp_path / "state"),
              "mqtt": {"host": "127.0.0.1", "port": port},
              "health": {"port": free_port(), "stats_interval_s": 0},
              "pipelines": [{"name": "digits", "source": source, "model": model_section}]}
    path = tmp_path / "edge.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_failing_delegate_with_fail_policy_exits_69_with_its_text(probe: Path, tmp_path: Path,
                                                                  command: str) -> None:
    path = write_config(tmp_path, probe_accelerator(probe, fail="create", message=NPU_ERROR))
    result = run_cli(*([command, str(path)] if command == "check-config"
                       else [command, "--config", str(path)]))
    assert result.returncode == 69, result.stderr
    assert_one_clear_line(result.stderr, "pipeline 'digits'", f"refused to start: {NPU_ERROR}",
                          "model.accelerator.options")


def test_delegate_refusing_the_model_exits_69(probe: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path, probe_accelerator(probe, fail="prepare"))
    result = run_cli("check-config", str(path))
    assert result.returncode == 69
    assert_one_clear_line(result.stderr, "could not be applied to the model")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[DaemonProcess] = []

    def make(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, [], tmp_path / f"daemon-{len(made)}.log")
        made.append(daemon)
        return daemon.start()

    try:
        yield make
    finally:
        for daemon in made:
            daemon.close()


def test_degraded_daemon_still_publishes(probe: Path, tmp_path: Path, broker: MosquittoBroker,
                                         subscriber_factory: SubscriberFactory,
                                         daemon_factory: Any) -> None:
    path = write_config(tmp_path, probe_accelerator(probe, "cpu", fail="create",
                                                    message=NPU_ERROR),
                        port=broker.port, fps=50)
    subscriber = subscriber_factory(broker.host, broker.port, ["edge/accel/+/predictions"])
    daemon = daemon_factory(path)
    assert subscriber.wait_for_count("digits", 20, timeout_s=30), daemon.log_text()
    health = run_cli("health", "--config", str(path), "--json")
    assert health.returncode == 1, health.stdout  # degraded
    body = json.loads(health.stdout)
    assert body["overall"] == "degraded"
    digits = body["pipelines"]["digits"]
    assert digits["state"] == "degraded" and digits["accelerator"] == "cpu/xnnpack"
    assert digits["accelerator_fallback"] == (f"pipeline 'digits': delegate {probe} refused "
                                              f"to start: {NPU_ERROR}")
    assert daemon.terminate() == 0
    log = daemon.log_text()
    assert f"refused to start: {NPU_ERROR}" in log and "running on the CPU" in log
    assert "accelerator cpu (degraded: delegate libprobe_delegate.so unavailable)" in log
    assert "Traceback" not in log and "Exception ignored" not in log
    labels_seen = {m.json()["predictions"][0]["label"] for m in subscriber.messages(
        "edge/accel/digits/predictions")}
    assert labels_seen <= {str(d) for d in range(10)} and len(labels_seen) > 1


# --- Edge TPU on a machine without libedgetpu ---------------------------------------------

MISSING_LIBEDGETPU = re.compile(
    r"edge-runtime: error: pipeline 'digits': the Edge TPU runtime is not installed: "
    r"libedgetpu\.so\.1: [^()]+ \(install libedgetpu1-std from Coral's apt repository, see "
    r"https://coral\.ai/software/#debian-packages, or libedgetpu1-max for the maximum clock\)")


@pytest.mark.usefixtures("no_libedgetpu")
def test_edgetpu_without_libedgetpu_fail_policy(tmp_path: Path, edgetpu_model: Path) -> None:
    path = write_config(tmp_path, {"type": "edgetpu", "device": "usb"}, model=edgetpu_model)
    for args in (("check-config", str(path)), ("run", "--config", str(path))):
        result = run_cli(*args)
        assert result.returncode == 69
        assert_one_clear_line(result.stderr)  # no Delegate.__del__ noise either
        assert MISSING_LIBEDGETPU.fullmatch(result.stderr.strip()), result.stderr


@pytest.mark.usefixtures("no_libedgetpu")
def test_edgetpu_without_libedgetpu_cpu_fallback_runs_degraded(tmp_path: Path,
                                                               edgetpu_model: Path) -> None:
    accelerator = {"type": "edgetpu", "device": "usb", "fallback": "cpu"}
    config = pipeline_config({"path": str(edgetpu_model), "cpu_path": str(DIGITS),
                              "accelerator": accelerator})
    pipeline, sink = run(config, ArraySource(images()))
    assert labels(sink) == cpu_labels()
    status = pipeline.snapshot()["accelerator"]
    assert (status["requested"], status["active"], status["degraded"]) == (
        "edgetpu (usb)", "cpu", True)
    assert "the Edge TPU runtime is not installed" in status["reason"]

    path = write_config(tmp_path, accelerator, model=edgetpu_model, cpu_path=DIGITS)
    result = run_cli("predict", "--config", str(path), "--input", str(HELD_OUT[0]), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == truth(1)[0]
    assert "libedgetpu1-std" in result.stderr and "running on the CPU" in result.stderr


def test_edgetpu_with_a_model_not_compiled_for_it_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"type": "edgetpu"})
    result = run_cli("check-config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "digits_int8.tflite is not compiled for the Edge TPU",
                          "edgetpu_compiler")


# --- inspect ------------------------------------------------------------------------------


def test_inspect_counts_what_the_delegate_and_the_cpu_run(probe: Path) -> None:
    result = run_cli("inspect", str(DIGITS), "--json", "--accelerator", f"delegate:{probe}",
                     "--delegate-option", "message=unused")
    assert result.returncode == 0, result.stderr
    placement = json.loads(result.stdout)["accelerator"]
    assert placement["requested"] == "delegate libprobe_delegate.so"
    operators = json.loads(run_cli("inspect", str(DIGITS), "--json").stdout)["operators"]
    model_ops = sum(count for name, count in operators.items() if name != "DELEGATE")
    share = placement["accelerator_share"]
    assert share["delegated"] == 0 and share["delegate_kernels"] == 0  # the probe takes none
    assert share["operators"] == model_ops and sum(share["cpu_operators"].values()) == model_ops
    execution = placement["execution"]  # XNNPACK takes what the delegate left
    assert execution["delegated"] > 0
    assert execution["delegated"] + sum(execution["cpu_operators"].values()) == model_ops


@pytest.mark.usefixtures("no_libedgetpu")
def test_inspect_an_edgetpu_model_says_what_is_missing(edgetpu_model: Path) -> None:
    result = run_cli("inspect", str(edgetpu_model))
    assert result.returncode == 69
    assert_one_clear_line(result.stderr, "Edge TPU runtime is not installed", "libedgetpu1-std")
    result = run_cli("inspect", str(edgetpu_model), "--accelerator", "cpu")
    assert result.returncode == 78
    assert_one_clear_line(result.stderr, "compiled for the Edge TPU", "cannot run without it")


@pytest.mark.backend
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_each_backend_loads_delegates_and_reports_their_failures(
        probe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the backend under test (EDGE_RUNTIME_TEST_BACKEND, see run-tests.sh). A
    library that does not load leaves a half-built Delegate whose __del__ raises
    AttributeError; it must not reach sys.unraisablehook (pytest turns what does into a
    warning, made an error here) nor the terminal."""
    backend = load_backend(BACKEND)
    marker = tmp_path / "prepared.txt"
    runner = TFLiteRunner(read_model(DIGITS), backend=BACKEND, delegate=DelegateSpec(
        "delegate", str(probe), (("marker", str(marker)),), "delegate probe"))
    assert runner.backend.name == BACKEND
    assert marker.read_text() == f"prepared {operator_count(DIGITS)}\n"
    with pytest.raises(DelegateError) as refused:
        backend.load_delegate(str(probe), {"fail": "create", "message": NPU_ERROR})
    assert (refused.value.stage, refused.value.detail) == ("create", NPU_ERROR)
    with pytest.raises(DelegateError) as missing:
        backend.load_delegate(str(tmp_path / "libmissing.so"), {})
    assert missing.value.stage == "library"
    assert "cannot open shared object file" in missing.value.detail
    gc.collect()
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("no_libedgetpu")
def test_doctor_reports_the_missing_edgetpu_on_its_own_lines(tmp_path: Path,
                                                             broker: MosquittoBroker,
                                                             edgetpu_model: Path) -> None:
    path = write_config(tmp_path, {"type": "edgetpu", "device": "usb", "fallback": "cpu"},
                        model=edgetpu_model, cpu_path=DIGITS, port=broker.port)
    done = run_cli("doctor", "--config", str(path), "--json")
    report = json.loads(done.stdout)
    lines = {r["message"].split(":", 2)[1].strip(): r for r in report["results"]
             if r["check"] == "accelerator"}
    # without sysfs (a container) nobody can tell whether a Coral is plugged in
    device = "warn" if USB_SYSFS.is_dir() else "skip"
    assert {name: r["status"] for name, r in lines.items()} == {
        "edgetpu (usb) library": "warn", "edgetpu (usb) device": device,
        "edgetpu (usb) model": "pass"}
    assert "libedgetpu1-std" in lines["edgetpu (usb) library"]["hint"]
    assert "it would run on the CPU, degraded" in lines["edgetpu (usb) library"]["message"]
    others = [r for r in report["results"] if r["check"] in {"model", "fast path", "broker"}]
    assert others and all(r["status"] == "pass" for r in others), others
