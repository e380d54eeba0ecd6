"""Decoded frames reuse freed memory instead of page-faulting fresh memory in per frame.

Each case runs in a fresh interpreter, so the allocator starts from its defaults.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

FRAMES = 200
DECODE_LOOP = f"""
import resource, sys
from edge_runtime.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
from edge_runtime.sources.synthetic import SyntheticSource
source = SyntheticSource(640, 480, encode=True)
source.open()
for _ in range(5):
    source.read().decode()
frames = [source.read() for _ in range({FRAMES})]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for frame in frames:
    frame.decode()
    frame.image = None  # dropped, as the pipeline drops it after preprocessing
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / {FRAMES})
"""


def page_faults_per_frame(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", DECODE_LOOP, mode], capture_output=True,
                            text=True, check=True, timeout=60)
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")
def test_decoded_frames_reuse_freed_memory() -> None:
    defaults = page_faults_per_frame("defaults")
    if defaults < 100:
        pytest.skip(f"this glibc reuses frame memory by itself ({defaults:.0f} faults/frame)")
    # 640x480x3 bytes is 225 pages: the defaults fault every decoded frame in afresh
    assert page_faults_per_frame("retain") < 5
