"""Test accelerators: a real external delegate built from C, and an Edge TPU-shaped model.

``build_probe_delegate`` compiles tests/delegates/probe_delegate.c with the system compiler
(skipping with the reason when there is none); ``make_edgetpu_like_model`` rewrites the
digits model the way edgetpu_compiler lays out its output (the middle of the graph inside
one ``edgetpu-custom-op`` node), so Edge TPU paths can be exercised without the compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE_SOURCE = Path(__file__).resolve().parents[1] / "delegates" / "probe_delegate.c"
COMPILERS = ("cc", "gcc", "clang")
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"  # what edgetpu_compiler names its op (independent copy)
CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


def c_compiler() -> str | None:
    for name in (os.environ.get("CC"), *COMPILERS):
        if name and shutil.which(name):
            return name
    return None


def build_probe_delegate(directory: Path) -> Path:
    """``libprobe_delegate.so`` in ``directory``; pytest.skip when no C compiler exists."""
    compiler = c_compiler()
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang; or $CC) to build the probe delegate")
    library = directory / "libprobe_delegate.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-o", str(library), str(PROBE_SOURCE)], check=True, capture_output=True)
    return library


def make_edgetpu_like_model(source: Path, dest: Path) -> Path:
    """Copy ``source`` with its middle operators replaced by one ``edgetpu-custom-op`` node.

    The digits model is QUANTIZE, CONV_2D..FULLY_CONNECTED, SOFTMAX, QUANTIZE; the result is
    QUANTIZE, edgetpu-custom-op, SOFTMAX, QUANTIZE with the same input and output tensors,
    the layout of a real *_edgetpu.tflite. Only the Edge TPU could run it.
    """
    import flatbuffers  # type: ignore[import-untyped]
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = EDGETPU_CUSTOM_OP
    code.version = 1
    model.operatorCodes.append(code)
    graph = model.subgraphs[0]
    first, *middle, softmax, last = graph.operators
    custom = schema.OperatorT()
    custom.opcodeIndex = len(model.operatorCodes) - 1
    custom.inputs = list(first.outputs)
    custom.outputs = list(middle[-1].outputs)
    custom.customOptions = list(b"stands in for the compiled Edge TPU executable")
    graph.operators = [first, custom, softmax, last]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dest.write_bytes(bytes(builder.Output()))
    return dest


def operator_count(path: Path) -> int:
    """Nodes of the model's main graph before any delegate, straight from the interpreter
    module that is installed (ai-edge-litert, else tflite-runtime)."""
    try:
        from ai_edge_litert import interpreter as tflite
    except ImportError:
        from tflite_runtime import interpreter as tflite
    plain = tflite.Interpreter(
        model_content=path.read_bytes(),
        experimental_op_resolver_type=tflite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return len(plain._get_ops_details())


def coral_present(sysfs: Path = Path("/sys/bus/usb/devices"), dev: Path = Path("/dev")) -> bool:
    """A Coral USB Accelerator in sysfs or a PCIe Edge TPU node: the hardware tests run."""
    for entry in sysfs.glob("*"):
        try:
            ids = ((entry / "idVendor").read_text().strip(),
                   (entry / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            return True
    return any(dev.glob("apex_*"))
