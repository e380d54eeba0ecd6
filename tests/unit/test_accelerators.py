"""Accelerator config, checks and messages: pure functions, fabricated sysfs trees and op tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.schema import Config, PipelineConfig
from edge_runtime.errors import DelegateError
from edge_runtime.runners.accelerators import (
    ApexDevice,
    DelegateSpec,
    DeviceSurvey,
    UsbDevice,
    accelerator_checks,
    delegate_spec,
    edgetpu_device_problem,
    execution_split,
    explain_delegate_failure,
    model_accelerator_problem,
    parse_accelerator,
    survey_devices,
)
from edge_runtime.runners.model_file import custom_operator_codes
from tests.support.delegates import make_edgetpu_like_model

MODELS = models_dir()
DIGITS = MODELS / "digits_int8.tflite"


def pipeline(model: dict[str, Any], base_dir: Path | None = None) -> PipelineConfig:
    data = {"name": "cam", "source": {"type": "synthetic"},
            "model": {"path": "m.tflite", **model}}
    return PipelineConfig.model_validate(data, context={"base_dir": base_dir})


# --- config -------------------------------------------------------------------------------


def test_accelerator_defaults_to_cpu() -> None:
    config = pipeline({})
    assert config.model.accelerator.type == "cpu"
    assert delegate_spec(config.model.accelerator) is None


def test_edgetpu_spec_passes_the_device_option() -> None:
    config = pipeline({"accelerator": {"type": "edgetpu", "device": "usb:1"}})
    spec = delegate_spec(config.model.accelerator)
    assert spec == DelegateSpec("edgetpu", "libedgetpu.so.1", (("device", "usb:1"),),
                                "edgetpu (usb:1)", "usb:1")
    anywhere = delegate_spec(pipeline({"accelerator": {"type": "edgetpu"}}).model.accelerator)
    assert anywhere is not None and anywhere.options == ()


def test_delegate_options_become_strings_and_relative_library_resolves(tmp_path: Path) -> None:
    config = pipeline({"accelerator": {
        "type": "delegate", "library": "lib/libvx_delegate.so",
        "options": {"backends": "CpuAcc,CpuRef", "logging-severity": 2, "fast": True,
                    "scale": 0.5}}}, base_dir=tmp_path)
    spec = delegate_spec(config.model.accelerator)
    assert spec is not None
    assert spec.library == str(tmp_path / "lib" / "libvx_delegate.so")
    assert spec.option_map() == {"backends": "CpuAcc,CpuRef", "logging-severity": "2",
                                 "fast": "true", "scale": "0.5"}
    bare = pipeline({"accelerator": {"type": "delegate", "library": "libarmnnDelegate.so"}},
                    base_dir=tmp_path)
    assert bare.model.accelerator.library == "libarmnnDelegate.so"  # type: ignore[union-attr]


@pytest.mark.parametrize("model, fragment", [
    ({"accelerator": {"type": "edgetpu", "fallback": "cpu"}}, "needs cpu_path"),
    ({"cpu_path": "m_cpu.tflite"}, "cpu_path is the CPU variant"),
    ({"accelerator": {"type": "edgetpu", "device": "usb0"}}, "pattern"),
    ({"accelerator": {"type": "edgetpu", "fallback": "gpu"}}, "fallback"),
    ({"accelerator": {"type": "delegate"}}, "library"),
])
def test_invalid_accelerator_configs(model: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        pipeline(model)


def test_delegate_fallback_cpu_without_cpu_path_is_valid() -> None:
    config = pipeline({"accelerator": {"type": "delegate", "library": "/x.so", "fallback": "cpu"}})
    assert config.model.cpu_path is None


@pytest.mark.parametrize("text, options, expected", [
    ("cpu", [], {"type": "cpu"}),
    ("edgetpu", [], {"type": "edgetpu", "device": None}),
    ("edgetpu:pci:0", [], {"type": "edgetpu", "device": "pci:0"}),
    ("delegate:/usr/lib/libvx_delegate.so", ["a=1", "b=x=y"],
     {"type": "delegate", "library": "/usr/lib/libvx_delegate.so",
      "options": {"a": "1", "b": "x=y"}}),
])
def test_parse_accelerator(text: str, options: list[str], expected: dict[str, Any]) -> None:
    parsed = parse_accelerator(text, options).model_dump()
    assert {key: parsed[key] for key in expected} == expected


@pytest.mark.parametrize("text, options, fragment", [
    ("gpu", [], "unknown accelerator 'gpu'"),
    ("edgetpu:usb0", [], "device"),
    ("cpu", ["a=1"], "delegate:LIBRARY only"),
    ("delegate:/x.so", ["novalue"], "KEY=VALUE"),
    ("delegate:", [], "library"),
])
def test_parse_accelerator_rejects(text: str, options: list[str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_accelerator(text, options)


# --- models -------------------------------------------------------------------------------


def schema_custom_codes(path: Path) -> tuple[str, ...]:
    """Independent reference: the generated TFLite schema module (ships with ai-edge-litert;
    imported here so the tflite-runtime environment can still collect this file)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    return tuple(c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
                 for c in model.operatorCodes if c.customCode)


def test_custom_operator_codes_match_the_schema_reader(tmp_path: Path) -> None:
    edgetpu = make_edgetpu_like_model(DIGITS, tmp_path / "digits_edgetpu.tflite")
    models = [DIGITS, MODELS / "vibration_int8.tflite", edgetpu,
              *sorted(Path(__file__).parents[1].glob("models/*.tflite"))]
    for path in models:
        assert custom_operator_codes(path.read_bytes()) == schema_custom_codes(path), path
    assert custom_operator_codes(edgetpu.read_bytes()) == ("edgetpu-custom-op",)


def test_custom_operator_codes_of_a_truncated_file_is_unknown() -> None:
    content = DIGITS.read_bytes()
    assert custom_operator_codes(content[: len(content) // 3]) is None


@pytest.mark.parametrize("codes, accelerator, fragment", [
    ((), "edgetpu", "not compiled for the Edge TPU"),
    (("TFLite_Detection_PostProcess",), "edgetpu", "not compiled for the Edge TPU"),
    (("edgetpu-custom-op",), "cpu", "cannot run without it"),
    (("edgetpu-custom-op",), "delegate", "cannot run without it"),
])
def test_model_accelerator_problem(codes: tuple[str, ...], accelerator: str,
                                   fragment: str) -> None:
    problem = model_accelerator_problem(codes, accelerator, "m.tflite")
    assert problem is not None and fragment in problem[0]


@pytest.mark.parametrize("codes, accelerator", [
    (("edgetpu-custom-op",), "edgetpu"), ((), "cpu"), ((), "delegate")])
def test_model_fits_accelerator(codes: tuple[str, ...], accelerator: str) -> None:
    assert model_accelerator_problem(codes, accelerator, "m.tflite") is None


# --- devices ------------------------------------------------------------------------------


def fake_usb(root: Path, name: str, ids: str, bus: int = 2, number: int = 3) -> None:
    entry = root / name
    entry.mkdir(parents=True)
    vendor, product = ids.split(":")
    for key, value in (("idVendor", vendor), ("idProduct", product), ("busnum", str(bus)),
                       ("devnum", str(number))):
        (entry / key).write_text(value + "\n")


def test_survey_reads_sysfs_ids_and_device_nodes(tmp_path: Path) -> None:
    sysfs, usb_dev, dev = tmp_path / "sys", tmp_path / "usb", tmp_path / "dev"
    fake_usb(sysfs, "1-1", "1d6b:0002", bus=1, number=1)
    fake_usb(sysfs, "2-1", "18d1:9302", bus=2, number=3)
    (sysfs / "2-1:1.0").mkdir()  # an interface directory: no ids
    (usb_dev / "002").mkdir(parents=True)
    (usb_dev / "002" / "003").touch()
    dev.mkdir()
    (dev / "apex_0").touch()
    survey = survey_devices(sysfs, usb_dev, dev, access=lambda path: path.name != "apex_0")
    assert [(d.name, d.ids) for d in survey.usb] == [("1-1", "1d6b:0002"), ("2-1", "18d1:9302")]
    (coral,) = survey.coral_usb
    assert coral.node == usb_dev / "002" / "003" and coral.accessible
    assert not survey.usb[0].accessible  # its node does not exist
    assert [(a.path.name, a.accessible) for a in survey.apex] == [("apex_0", False)]


def test_survey_without_sysfs_says_so(tmp_path: Path) -> None:
    survey = survey_devices(tmp_path / "missing", tmp_path, tmp_path)
    assert not survey.usb_readable
    assert "not readable" in survey.describe()


def usb(ids: str, accessible: bool = True, name: str = "2-1") -> UsbDevice:
    return UsbDevice(name, ids, Path("/dev/bus/usb/002/003"), accessible)


def survey_of(*devices: UsbDevice, apex: tuple[Any, ...] = ()) -> DeviceSurvey:
    return DeviceSurvey(tuple(devices), apex, True)


def test_no_edgetpu_lists_the_usb_devices_seen() -> None:
    problem = edgetpu_device_problem("usb", survey_of(usb("1d6b:0003"), usb("046d:c52b")))
    assert problem is not None
    message, hint = problem
    assert "not present" in message and "046d:c52b, 1d6b:0003" in message
    assert "1a6e:089a" in hint and "18d1:9302" in hint


def test_second_usb_edgetpu_missing_when_one_is_present() -> None:
    problem = edgetpu_device_problem("usb:1", survey_of(usb("1a6e:089a")))
    assert problem is not None and "usb:1 is not present: 1 Coral USB" in problem[0]
    assert edgetpu_device_problem("usb:0", survey_of(usb("1a6e:089a"))) is None


def test_usb_edgetpu_without_permission_names_plugdev() -> None:
    problem = edgetpu_device_problem(None, survey_of(usb("18d1:9302", accessible=False)))
    assert problem is not None
    message, hint = problem
    assert "permission denied" in message and "/dev/bus/usb/002/003" in message
    assert "plugdev" in hint and "udev" in hint


def test_pci_edgetpu_missing_and_not_accessible() -> None:
    missing = edgetpu_device_problem("pci:0", survey_of(usb("18d1:9302")))
    assert missing is not None and "gasket-dkms" in missing[1]
    denied = edgetpu_device_problem(
        "pci", survey_of(apex=(ApexDevice(Path("/dev/apex_0"), False),)))
    assert denied is not None and "/dev/apex_0" in denied[0] and "apex group" in denied[1]
    assert edgetpu_device_problem(
        "pci:0", survey_of(apex=(ApexDevice(Path("/dev/apex_0"), True),))) is None


def test_without_sysfs_the_usb_edgetpu_is_unknown_not_absent() -> None:
    survey = DeviceSurvey((), (), usb_readable=False)
    problem = edgetpu_device_problem("usb", survey)
    assert problem is not None and problem[0].startswith("cannot tell whether Edge TPU usb")
    assert "/dev/bus/usb" in problem[1]
    pci = edgetpu_device_problem("pci:0", survey)  # /dev is readable: absent is absent
    assert pci is not None and "is not present" in pci[0]


def test_any_edgetpu_prefers_an_accessible_one() -> None:
    survey = survey_of(usb("18d1:9302", accessible=False, name="1-1"), usb("18d1:9302"))
    assert edgetpu_device_problem(None, survey) is None


# --- failure messages ---------------------------------------------------------------------

EDGETPU = DelegateSpec("edgetpu", "libedgetpu.so.1", (("device", "usb"),), "edgetpu (usb)",
                       "usb")


def raw(stage: str, detail: str, library: str = "libedgetpu.so.1") -> DelegateError:
    return DelegateError("raw", library=library, stage=stage, detail=detail)


def test_missing_libedgetpu_names_the_package() -> None:
    err = explain_delegate_failure(EDGETPU, raw("library", "cannot open shared object file"),
                                   "pipeline 'door'")
    assert err.message.startswith("pipeline 'door': the Edge TPU runtime is not installed")
    assert err.hint is not None and "libedgetpu1-std" in err.hint
    assert "libedgetpu1-max" in err.hint and err.exit_code == 69


def test_edgetpu_open_failure_uses_the_device_survey() -> None:
    err = explain_delegate_failure(EDGETPU, raw("create", "Failed to open device"), "p",
                                   survey_of(usb("1d6b:0002")))
    assert "not present" in err.message and "1d6b:0002" in err.message
    assert "Failed to open device" in err.message


def test_delegate_refusal_keeps_the_delegate_text() -> None:
    spec = DelegateSpec("delegate", "/usr/lib/libvx_delegate.so", (), "delegate libvx")
    err = explain_delegate_failure(spec, raw("create", "NPU driver galcore missing",
                                             spec.library), "pipeline 'door'")
    assert "NPU driver galcore missing" in err.message and "\n" not in str(err)
    assert err.stage == "create" and err.detail == "NPU driver galcore missing"


# --- what ran where -----------------------------------------------------------------------


def op(index: int, name: str, inputs: list[int], outputs: list[int]) -> dict[str, Any]:
    return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}


# tensor 0 input -> A -> 1 -> B -> 2 -> C -> 3 -> D -> 4 output; weights 10, 11
CHAIN = [op(0, "QUANTIZE", [0], [1]), op(1, "CONV_2D", [1, 10], [2]),
         op(2, "CONV_2D", [2, 11], [3]), op(3, "SOFTMAX", [3], [4])]


def test_split_without_delegates_runs_everything_on_the_cpu() -> None:
    split = execution_split(CHAIN, [4])
    assert (split.operators, split.delegated, split.delegate_kernels) == (4, 0, 0)
    assert split.cpu_operators == {"CONV_2D": 2, "QUANTIZE": 1, "SOFTMAX": 1}


def test_split_counts_the_nodes_a_delegate_replaced() -> None:
    table = [*CHAIN, op(4, "DELEGATE", [1, 10, 11], [3])]  # took both CONV_2D
    split = execution_split(table, [4])
    assert (split.operators, split.delegated, split.delegate_kernels) == (4, 2, 1)
    assert split.cpu_operators == {"QUANTIZE": 1, "SOFTMAX": 1}
    assert "2 of 4 operators in 1 delegate kernel(s)" in split.describe()


def test_split_with_two_delegate_kernels() -> None:
    table = [*CHAIN, op(4, "DELEGATE", [0], [1]), op(5, "DELEGATE", [2, 11], [3])]
    split = execution_split(table, [4])
    assert (split.delegated, split.delegate_kernels) == (2, 2)
    assert split.cpu_operators == {"CONV_2D": 1, "SOFTMAX": 1}


def test_accelerator_checks_for_a_missing_edgetpu(tmp_path: Path) -> None:
    edgetpu = make_edgetpu_like_model(DIGITS, tmp_path / "digits_edgetpu.tflite")
    config = Config.model_validate({"device_id": "d", "pipelines": [
        {"name": "strict", "source": {"type": "synthetic"},
         "model": {"path": str(edgetpu), "accelerator": {"type": "edgetpu"}}},
        {"name": "lenient", "source": {"type": "synthetic"},
         "model": {"path": str(DIGITS), "cpu_path": str(DIGITS),
                   "accelerator": {"type": "edgetpu", "fallback": "cpu"}}},
        {"name": "plain", "source": {"type": "synthetic"}, "model": {"path": str(DIGITS)}}]})
    checks = accelerator_checks(config, survey=survey_of(usb("1d6b:0002")),
                                load_library=lambda name: f"{name}: cannot open")
    by_name = {c.name.replace(" edgetpu (first found)", ""): c for c in checks}
    assert [(name, c.status) for name, c in by_name.items()] == [
        ("strict: library", "fail"), ("strict: device", "fail"), ("strict: model", "pass"),
        ("lenient: library", "warn"), ("lenient: device", "warn"), ("lenient: model", "fail")]
    assert "libedgetpu1-std" in by_name["strict: library"].hint
    assert "no Edge TPU is present" in by_name["lenient: device"].message
    unknown = accelerator_checks(config, survey=DeviceSurvey((), (), usb_readable=False),
                                 load_library=lambda name: None)
    assert [c.status for c in unknown if c.name.endswith("device")] == ["skip", "skip"]
    assert by_name["lenient: model"].line().startswith(
        "lenient: edgetpu (first found) model: model digits_int8.tflite is not compiled")
