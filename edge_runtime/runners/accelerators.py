"""Accelerators: which delegate a pipeline asks for, and why it cannot have it.

Pure functions turn a config into a ``DelegateSpec``, a delegate failure plus a survey of
the devices present into one actionable message, and an interpreter's op table into how
many operations the delegate took. ``survey_devices`` and ``accelerator_checks`` are the
only parts that read the machine (sysfs, /dev, the dynamic loader).
"""

from __future__ import annotations

import ctypes
import os
import pwd
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from edge_runtime.config.schema import (
    AcceleratorConfig,
    Config,
    CpuAccelerator,
    EdgeTpuAccelerator,
)
from edge_runtime.errors import DelegateError, EdgeRuntimeError, ModelError
from edge_runtime.runners.model_file import ModelFile, custom_operator_codes, read_model

CPU_LABEL = "cpu"
_ACCELERATOR: TypeAdapter[AcceleratorConfig] = TypeAdapter(AcceleratorConfig)
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"  # the op edgetpu_compiler puts the compiled graph in
EDGETPU_INSTALL_HINT = (
    "install libedgetpu1-std from Coral's apt repository, see "
    "https://coral.ai/software/#debian-packages, or libedgetpu1-max for the maximum clock")
# The Coral USB Accelerator shows up under one id until libedgetpu has loaded its firmware,
# under another afterwards.
CORAL_USB_IDS: Mapping[str, str] = {
    "1a6e:089a": "Coral USB Accelerator, firmware not loaded yet",
    "18d1:9302": "Coral USB Accelerator",
}
USB_SYSFS = Path("/sys/bus/usb/devices")
USB_DEV = Path("/dev/bus/usb")
DEV_DIR = Path("/dev")
APEX_GLOB = "apex_*"  # the PCIe/M.2 Edge TPU's device nodes (gasket + apex drivers)
USB_PERMISSION_HINT = (
    "add the service user to the plugdev group: sudo usermod -aG plugdev USER; install Coral's "
    "udev rule /etc/udev/rules.d/99-edgetpu-accelerator.rules, which libedgetpu1-std ships "
    "and which gives group plugdev the ids 1a6e:089a and 18d1:9302; then replug the device")
APEX_PERMISSION_HINT = (
    "add the service user to the apex group: sudo usermod -aG apex USER; the udev rule "
    "SUBSYSTEM==\"apex\", MODE=\"0660\", GROUP=\"apex\" in /etc/udev/rules.d/65-apex.rules "
    "gives that group the device; then reboot")
USB_UNREADABLE_HINT = (
    "in a container, give it /sys/bus/usb and /dev/bus/usb (docker: --device /dev/bus/usb "
    "-v /sys/bus/usb:/sys/bus/usb:ro); on the host, check lsusb for 1a6e:089a or 18d1:9302")
APEX_DRIVER_HINT = (
    "install the PCIe driver, gasket-dkms from Coral's apt repository; check that lspci lists "
    "the card, then reboot")


# --- what the config asks for -----------------------------------------------------------


@dataclass(frozen=True)
class DelegateSpec:
    """An external delegate to load: library, string options and a name for messages."""

    kind: Literal["edgetpu", "delegate"]
    library: str
    options: tuple[tuple[str, str], ...]
    label: str  # "edgetpu (usb:0)", "delegate libvx_delegate.so"
    device: str | None = None  # edgetpu only

    def option_map(self) -> dict[str, str]:
        return dict(self.options)


def option_text(value: str | int | float | bool) -> str:
    """A config option value as the string the delegate receives (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def delegate_spec(accelerator: AcceleratorConfig) -> DelegateSpec | None:
    """The delegate an accelerator config loads; None for the CPU."""
    if isinstance(accelerator, CpuAccelerator):
        return None
    if isinstance(accelerator, EdgeTpuAccelerator):
        device = accelerator.device
        return DelegateSpec("edgetpu", EDGETPU_LIBRARY, (("device", device),) if device else (),
                            f"edgetpu ({device or 'first found'})", device)
    options = tuple((key, option_text(value)) for key, value in accelerator.options.items())
    return DelegateSpec("delegate", accelerator.library, options,
                        f"delegate {Path(accelerator.library).name}")


def parse_accelerator(text: str, options: Sequence[str] = ()) -> AcceleratorConfig:
    """``cpu``, ``edgetpu[:DEVICE]`` or ``delegate:LIBRARY`` (+ KEY=VALUE options) -> config.

    The command-line form of ``model.accelerator`` (``inspect --accelerator``); raises
    ValueError naming what is wrong.
    """
    kind, _, rest = text.partition(":")
    pairs = [option.partition("=") for option in options]
    if any(not key or not sep for key, sep, _ in pairs):
        raise ValueError("delegate options are KEY=VALUE")
    data: dict[str, Any] = {"type": kind}
    if kind == "edgetpu" and rest:
        data["device"] = rest
    elif kind == "delegate":
        data["library"] = rest
        data["options"] = {key: value for key, _, value in pairs}
    elif rest or kind not in ("cpu", "edgetpu"):
        raise ValueError(f"unknown accelerator '{text}': use cpu, edgetpu[:usb|usb:N|pci|pci:N] "
                         "or delegate:LIBRARY")
    if pairs and kind != "delegate":
        raise ValueError("options are for delegate:LIBRARY only")
    try:
        return _ACCELERATOR.validate_python(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or kind}: {e['msg']}"
                             for e in err.errors())
        raise ValueError(f"accelerator '{text}': {problems}") from err


def model_accelerator_problem(custom_codes: Iterable[str], accelerator: str,
                              model_name: str) -> tuple[str, str] | None:
    """(message, hint) when a model cannot use the accelerator it is configured for.

    An Edge TPU model keeps what the Edge TPU runs inside ``edgetpu-custom-op`` nodes: a
    model without one would run entirely on the CPU behind an "edgetpu" label, and a
    model with one cannot run anywhere but on the Edge TPU.
    """
    compiled = EDGETPU_CUSTOM_OP in set(custom_codes)
    if accelerator == "edgetpu" and not compiled:
        return (f"model {model_name} is not compiled for the Edge TPU (no {EDGETPU_CUSTOM_OP} "
                "among its operators), so every operation would run on the CPU",
                "compile it with edgetpu_compiler, which writes NAME_edgetpu.tflite; put that "
                "in model.path and the original in model.cpu_path")
    if accelerator != "edgetpu" and compiled:
        return (f"model {model_name} is compiled for the Edge TPU ({EDGETPU_CUSTOM_OP}) and "
                "cannot run without it",
                "set model.accelerator.type: edgetpu, or use the model's CPU variant, the "
                "file edgetpu_compiler was given")
    return None


def check_model_fits(model: ModelFile, accelerator: str, where: str) -> None:
    """Raise ModelError (exit 78) when ``model`` cannot run on ``accelerator``."""
    codes = custom_operator_codes(model.content)
    if codes is None:
        return  # a damaged file: the interpreter's load reports it with the path
    problem = model_accelerator_problem(codes, accelerator, model.path.name)
    if problem is not None:
        raise ModelError(f"{where}: {problem[0]}", hint=problem[1])


# --- what the machine has ----------------------------------------------------------------


@dataclass(frozen=True)
class UsbDevice:
    """One USB device as sysfs lists it."""

    name: str  # sysfs name, e.g. "2-1"
    ids: str  # "vendor:product", lower-case hex
    node: Path | None  # /dev/bus/usb/BBB/DDD
    accessible: bool  # read+write on the node (what libusb needs)

    @property
    def coral(self) -> str | None:
        return CORAL_USB_IDS.get(self.ids)


@dataclass(frozen=True)
class ApexDevice:
    """A PCIe/M.2 Edge TPU device node."""

    path: Path
    accessible: bool


@dataclass(frozen=True)
class DeviceSurvey:
    """The Edge TPU-relevant devices on this machine."""

    usb: tuple[UsbDevice, ...]
    apex: tuple[ApexDevice, ...]
    usb_readable: bool  # False when sysfs could not be read (a container without /sys)

    @property
    def coral_usb(self) -> tuple[UsbDevice, ...]:
        return tuple(d for d in self.usb if d.coral)

    def describe(self) -> str:
        """What was seen, for messages: every USB id, and the /dev/apex_N nodes."""
        if self.usb_readable:
            ids = sorted({d.ids for d in self.usb})
            usb = f"USB devices seen: {', '.join(ids)}" if ids else "no USB devices seen"
        else:
            usb = f"USB devices unknown: {USB_SYSFS} is not readable"
        apex = (", ".join(str(a.path) for a in self.apex) if self.apex
                else f"no {DEV_DIR / APEX_GLOB}")
        return f"{usb}; {apex}"


def _read_id(path: Path) -> str | None:
    try:
        return path.read_text().strip().lower()
    except OSError:
        return None


def survey_devices(usb_sysfs: Path = USB_SYSFS, usb_dev: Path = USB_DEV,
                   dev_dir: Path = DEV_DIR,
                   access: Callable[[Path], bool] | None = None) -> DeviceSurvey:
    """Read USB ids from sysfs and list /dev/apex_N, with read/write access for each."""
    can_use = access or (lambda path: os.access(path, os.R_OK | os.W_OK))
    usb: list[UsbDevice] = []
    try:
        entries = sorted(usb_sysfs.iterdir())
        readable = True
    except OSError:
        entries, readable = [], False
    for entry in entries:
        vendor, product = _read_id(entry / "idVendor"), _read_id(entry / "idProduct")
        if vendor is None or product is None:
            continue  # an interface, not a device
        bus, number = _read_id(entry / "busnum"), _read_id(entry / "devnum")
        node = (usb_dev / f"{int(bus):03d}" / f"{int(number):03d}"
                if bus and number and bus.isdigit() and number.isdigit() else None)
        usb.append(UsbDevice(entry.name, f"{vendor}:{product}", node,
                             node is not None and node.exists() and can_use(node)))
    apex = tuple(ApexDevice(path, can_use(path)) for path in sorted(dev_dir.glob(APEX_GLOB)))
    return DeviceSurvey(tuple(usb), apex, readable)


def _device_index(device: str) -> int | None:
    _, _, index = device.partition(":")
    return int(index) if index else None


def edgetpu_device_problem(device: str | None,
                           survey: DeviceSurvey) -> tuple[str, str] | None:
    """(message, hint) when the requested Edge TPU is absent or not accessible, else None."""
    kind = device.split(":")[0] if device else None
    index = _device_index(device) if device else None
    usb = survey.coral_usb
    found: list[tuple[str, Path | None, bool, str]] = []  # (kind, node, accessible, what)
    if kind in (None, "usb"):
        found += [("usb", d.node, d.accessible, f"{d.coral} ({d.ids}) at {USB_SYSFS / d.name}")
                  for d in usb]
    if kind in (None, "pci"):
        found += [("pci", a.path, a.accessible, f"PCIe Edge TPU {a.path}") for a in survey.apex]
    wanted = device or "any"
    if not found or (index is not None and index >= len(found)):
        seen = survey.describe()
        if kind != "pci" and not survey.usb_readable:
            return (f"cannot tell whether Edge TPU {wanted} is present: {seen}",
                    USB_UNREADABLE_HINT)
        if kind == "pci":
            return (f"Edge TPU {wanted} is not present: {len(found)} PCIe Edge TPU(s) found "
                    f"({seen})", APEX_DRIVER_HINT)
        if kind == "usb":
            return (f"Edge TPU {wanted} is not present: {len(found)} Coral USB device(s) found "
                    f"({seen})",
                    "plug the Coral USB Accelerator into a USB 3 port, through a powered hub "
                    "if the board's port is weak, and check lsusb for 1a6e:089a or 18d1:9302")
        return (f"no Edge TPU is present ({seen})",
                "plug in the Coral USB Accelerator, USB ids 1a6e:089a or 18d1:9302, or install "
                "the PCIe card's driver, gasket-dkms")
    # libedgetpu takes the N-th device of the kind asked for, or the first it can open
    chosen = found[index] if index is not None else next((f for f in found if f[2]), found[0])
    chosen_kind, node, accessible, what = chosen
    if not accessible:
        hint = USB_PERMISSION_HINT if chosen_kind == "usb" else APEX_PERMISSION_HINT
        where = f" ({node})" if node is not None else ""
        return (f"permission denied on the Edge TPU: {what}{where} is not readable and "
                f"writable by user {_user()}", hint)
    return None


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return str(os.getuid())


def explain_delegate_failure(spec: DelegateSpec, err: DelegateError, where: str,
                             survey: DeviceSurvey | None = None) -> DelegateError:
    """Turn a raw delegate failure into one actionable line (what, why, what to do)."""
    def error(message: str, hint: str) -> DelegateError:
        return DelegateError(f"{where}: {message}", library=err.library, stage=err.stage,
                             detail=err.detail, hint=hint)

    if spec.kind == "edgetpu":
        if err.stage == "library":
            return error(f"the Edge TPU runtime is not installed: {err.detail}",
                         EDGETPU_INSTALL_HINT)
        problem = edgetpu_device_problem(spec.device, survey) if survey is not None else None
        if problem is not None:
            return error(f"{problem[0]}; libedgetpu said: {err.detail}", problem[1])
        seen = f" ({survey.describe()})" if survey is not None else ""
        return error(f"{spec.label} could not be opened: {err.detail}{seen}",
                     "check that no other process holds the Edge TPU, and dmesg for USB resets: "
                     "a powered hub or a USB 3 port helps")
    if err.stage == "library":
        return error(f"delegate library cannot be loaded: {err.detail}",
                     "give model.accelerator.library as an absolute path, or install the "
                     "library where the dynamic loader finds it, see ldconfig -p")
    if err.stage == "create":
        return error(f"delegate {spec.library} refused to start: {err.detail}",
                     "check model.accelerator.options against the delegate's documentation")
    return error(f"delegate {spec.library} could not be applied to the model: {err.detail}",
                 "check that the model's operators are supported by the delegate")


# --- what ran where -----------------------------------------------------------------------

DELEGATE_OP = "DELEGATE"  # the op name TFLite gives a node that replaced a delegated subgraph


@dataclass(frozen=True)
class ExecutionSplit:
    """How an interpreter executes a model after delegation."""

    operators: int  # operator nodes of the model
    delegated: int  # of those, replaced by delegate kernels
    delegate_kernels: int  # DELEGATE nodes that replaced them
    cpu_operators: Mapping[str, int]  # op name -> count, still run by the CPU kernels

    def as_dict(self) -> dict[str, Any]:
        return {"operators": self.operators, "delegated": self.delegated,
                "delegate_kernels": self.delegate_kernels,
                "cpu_operators": dict(self.cpu_operators)}

    def describe(self) -> str:
        cpu = ", ".join(f"{name} x{count}" for name, count in self.cpu_operators.items())
        return (f"{self.delegated} of {self.operators} operators in {self.delegate_kernels} "
                f"delegate kernel(s); on CPU kernels: {cpu or 'none'}")


def execution_split(ops: Sequence[Mapping[str, Any]], outputs: Sequence[int]) -> ExecutionSplit:
    """Which operators still run, from an interpreter's op table (``_get_ops_details``).

    The table lists the model's nodes and then the DELEGATE nodes that replaced some of
    them; a replaced node stays listed. Walking back from the model outputs through each
    tensor's last producer (a DELEGATE node supersedes the nodes it replaced) finds the
    nodes that execute.
    """
    producer: dict[int, Mapping[str, Any]] = {}
    for op in ops:
        for tensor in op["outputs"]:
            producer[int(tensor)] = op
    executed: set[int] = set()
    pending = [int(t) for t in outputs]
    seen: set[int] = set()
    while pending:
        tensor = pending.pop()
        if tensor < 0 or tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None or int(node["index"]) in executed:
            continue
        executed.add(int(node["index"]))
        pending.extend(int(t) for t in node["inputs"])
    originals = [op for op in ops if op["op_name"] != DELEGATE_OP]
    kernels = [op for op in ops if op["op_name"] == DELEGATE_OP and int(op["index"]) in executed]
    cpu = Counter(str(op["op_name"]) for op in originals
                  if not kernels or int(op["index"]) in executed)
    ran_on_cpu = sum(cpu.values())
    return ExecutionSplit(len(originals), len(originals) - ran_on_cpu, len(kernels),
                          dict(sorted(cpu.items(), key=lambda kv: (-kv[1], kv[0]))))


# --- state for health and stats -----------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorStatus:
    """What a pipeline asked to run on, what it runs on now, and why they differ."""

    requested: str
    active: str
    degraded: bool
    reason: str  # empty unless degraded
    since: float  # wall-clock time of the last change

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = round(self.since, 3)
        return data


# --- checks for doctor --------------------------------------------------------------------

CheckStatus = Literal["pass", "warn", "fail", "skip"]  # skip: cannot be told here


@dataclass(frozen=True)
class AcceleratorCheck:
    """One doctor line: what was checked, the verdict, and a fix when it is not a pass."""

    name: str  # "door: edgetpu (usb) library"
    status: CheckStatus
    message: str
    hint: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.message}"


def library_loads(library: str) -> str | None:
    """None when the dynamic loader can open ``library``, else its error text."""
    try:
        ctypes.CDLL(library)
    except OSError as err:
        return str(err)
    return None


def accelerator_checks(config: Config, *, survey: DeviceSurvey | None = None,
                       load_library: Callable[[str], str | None] = library_loads,
                       ) -> list[AcceleratorCheck]:
    """Checks for every pipeline that asks for an accelerator (none for CPU pipelines).

    Library, device and model are checked without creating a delegate, so it is safe while
    the daemon holds the Edge TPU. A problem is ``fail`` under fallback ``fail`` (the daemon
    would not start) and ``warn`` under fallback ``cpu`` (it would run degraded).
    """
    checks: list[AcceleratorCheck] = []
    for pipeline in config.pipelines:
        accelerator = pipeline.model.accelerator
        spec = delegate_spec(accelerator)
        if spec is None or isinstance(accelerator, CpuAccelerator):
            continue
        name = f"{pipeline.name}: {spec.label}"
        bad: CheckStatus = "fail" if accelerator.fallback == "fail" else "warn"
        suffix = "" if bad == "fail" else "; it would run on the CPU, degraded"
        error = load_library(spec.library)
        if error is not None:
            hint = (EDGETPU_INSTALL_HINT if spec.kind == "edgetpu" else
                    "give an absolute path, or install the library where ldconfig finds it")
            checks.append(AcceleratorCheck(f"{name} library", bad,
                                           f"{spec.library} cannot be loaded: {error}{suffix}",
                                           hint))
        else:
            checks.append(AcceleratorCheck(f"{name} library", "pass", f"{spec.library} loads"))
        if isinstance(accelerator, EdgeTpuAccelerator):
            found = survey or survey_devices()
            problem = edgetpu_device_problem(accelerator.device, found)
            unknown = problem is not None and problem[1] == USB_UNREADABLE_HINT
            checks.append(
                AcceleratorCheck(f"{name} device", "skip" if unknown else bad,
                                 problem[0] + ("" if unknown else suffix), problem[1])
                if problem else
                AcceleratorCheck(f"{name} device", "pass",
                                 f"{len(found.coral_usb)} Coral USB and {len(found.apex)} PCIe "
                                 "Edge TPU(s) present"))
        checks.append(_model_check(name, pipeline.model.path, spec.kind))
    return checks


def _model_check(name: str, path: Path, accelerator: str) -> AcceleratorCheck:
    try:
        model = read_model(path)
    except EdgeRuntimeError as err:
        return AcceleratorCheck(f"{name} model", "fail", err.message, err.hint or "")
    codes = custom_operator_codes(model.content)
    if codes is None:
        return AcceleratorCheck(f"{name} model", "fail", f"{path.name}: operator table is "
                                "damaged", "replace the model file")
    problem = model_accelerator_problem(codes, accelerator, path.name)
    if problem is not None:
        return AcceleratorCheck(f"{name} model", "fail", problem[0], problem[1])
    return AcceleratorCheck(f"{name} model", "pass", f"{path.name} fits {accelerator}")
