"""The Edge TPU path on a real Coral (skipped without one).

Needs a Coral USB Accelerator (1a6e:089a or 18d1:9302 in sysfs) or a PCIe Edge TPU
(/dev/apex_N), libedgetpu1-std, and the digits model compiled for the Edge TPU:

    edgetpu_compiler -o models/ models/digits_int8.tflite   # writes digits_int8_edgetpu.tflite

or EDGE_RUNTIME_EDGETPU_MODEL pointing at it. Run with ``pytest -m hardware``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.runners.accelerators import library_loads
from edge_runtime.testing import ArraySource
from tests.conftest import SubscriberFactory
from tests.integration.test_delegates import (
    DIGITS,
    FRAMES,
    images,
    labels,
    pipeline_config,
    run,
    truth,
    write_config,
)
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess, run_cli
from tests.support.delegates import coral_present

pytestmark = pytest.mark.hardware
MODELS = models_dir()
EDGETPU_MODEL = Path(os.environ.get("EDGE_RUNTIME_EDGETPU_MODEL",
                                    MODELS / "digits_int8_edgetpu.tflite"))


@pytest.fixture
def coral() -> Path:
    """The compiled model, once the hardware, the runtime and the model are all there."""
    if not coral_present():
        pytest.skip("no Coral Edge TPU: no USB device 1a6e:089a or 18d1:9302 in "
                    "/sys/bus/usb/devices and no /dev/apex_*")
    if library_loads("libedgetpu.so.1") is not None:
        pytest.skip("libedgetpu.so.1 is not installed (apt install libedgetpu1-std)")
    if not EDGETPU_MODEL.is_file():
        pytest.skip(f"no Edge TPU model at {EDGETPU_MODEL}: run edgetpu_compiler -o models/ "
                    "models/digits_int8.tflite, or set EDGE_RUNTIME_EDGETPU_MODEL")
    return EDGETPU_MODEL


def test_edgetpu_takes_the_compiled_graph_and_classifies(coral: Path, tmp_path: Path,
                                                         broker: MosquittoBroker,
                                                         subscriber_factory: SubscriberFactory,
                                                         ) -> None:
    result = run_cli("inspect", str(coral), "--json")
    assert result.returncode == 0, result.stderr
    placement = json.loads(result.stdout)["accelerator"]
    assert placement["custom_operators"] == ["edgetpu-custom-op"]
    assert placement["accelerator_share"]["delegated"] >= 1

    config = pipeline_config({"path": str(coral), "cpu_path": str(DIGITS),
                              "accelerator": {"type": "edgetpu", "fallback": "cpu"}})
    pipeline, sink = run(config, ArraySource(images()))
    status = pipeline.snapshot()["accelerator"]
    assert status["active"] == status["requested"] and not status["degraded"], status
    correct = sum(a == b for a, b in zip(labels(sink), truth(), strict=True))
    assert correct >= 0.9 * FRAMES

    path = write_config(tmp_path, {"type": "edgetpu"}, model=coral, port=broker.port, fps=50)
    subscriber = subscriber_factory(broker.host, broker.port, ["edge/accel/+/predictions"])
    daemon = DaemonProcess(path, [], tmp_path / "daemon.log").start()
    try:
        assert subscriber.wait_for_count("digits", 20, timeout_s=30), daemon.log_text()
        assert daemon.terminate() == 0
        assert "accelerator edgetpu (first found)" in daemon.log_text()
    finally:
        daemon.close()
