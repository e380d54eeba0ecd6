"""The MJPEG splitter (pure) and the FIFO source that uses it."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.errors import SourceError
from edge_runtime.sources.mjpeg import MjpegSplitter
from edge_runtime.sources.pipe import MjpegPipeSource
from tests.support.frames import jpeg_frames

FRAMES = jpeg_frames(4, size=(40, 30), seed=7)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),
       garbage=st.binary(max_size=30).filter(lambda g: b"\xff" not in g))
def test_any_chunking_yields_the_written_frames(cuts: list[int], garbage: bytes) -> None:
    stream = garbage + garbage.join(FRAMES)
    splitter = MjpegSplitter()
    out: list[bytes] = []
    for chunk in _chunks(stream, cuts):
        out += splitter.feed(chunk)
    assert out == FRAMES
    assert splitter.skipped_bytes == len(garbage) * len(FRAMES)


def test_exif_thumbnail_does_not_cut_the_frame() -> None:
    outer, thumbnail = FRAMES[0], FRAMES[1]
    body = b"Exif\x00\x00" + thumbnail  # a whole JPEG (with its own FF D9) inside APP1
    app1 = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    with_thumbnail = outer[:2] + app1 + outer[2:]
    assert MjpegSplitter().feed(with_thumbnail + FRAMES[2]) == [with_thumbnail, FRAMES[2]]


def test_progressive_jpeg_with_several_scans_stays_whole() -> None:
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    progressive = encoded.tobytes()
    assert progressive.count(b"\xff\xda") > 1  # really several scans
    assert MjpegSplitter().feed(progressive + FRAMES[0]) == [progressive, FRAMES[0]]


def test_oversized_frame_is_dropped_and_the_next_one_found() -> None:
    splitter = MjpegSplitter(max_frame_bytes=len(FRAMES[0]) + 100)
    truncated = FRAMES[3][:-2] * 3  # never ends within the limit
    out = splitter.feed(truncated) + splitter.feed(FRAMES[0])
    assert out == [FRAMES[0]]
    assert splitter.skipped_bytes >= len(FRAMES[0]) + 100


def test_corrupt_segment_resynchronises_on_the_next_frame() -> None:
    corrupt = FRAMES[1][:2] + b"\x12\x34" + FRAMES[1][4:]  # first marker is not a marker
    assert MjpegSplitter().feed(corrupt + FRAMES[2]) == [FRAMES[2]]


def test_pipe_source_reads_frames_and_reports_a_stall(tmp_path: Path) -> None:
    fifo = tmp_path / "cam.mjpeg"
    os.mkfifo(fifo)
    source = MjpegPipeSource(fifo, stall_timeout_s=0.3)
    source.open()
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"".join(FRAMES[:2]))
        first, second = source.read(), source.read()
        assert (first.number, second.number) == (0, 1)
        assert (first.encoded, second.encoded) == (FRAMES[0], FRAMES[1])
        start = time.monotonic()
        with pytest.raises(SourceError, match=r"no frame for 0\.3 s"):
            source.read()
        assert time.monotonic() - start >= 0.3
    finally:
        os.close(writer)
        source.close()


def test_writer_gone_is_silence_not_end_of_file(tmp_path: Path) -> None:
    fifo = tmp_path / "cam.mjpeg"
    os.mkfifo(fifo)
    source = MjpegPipeSource(fifo, stall_timeout_s=0.2)
    source.open()
    try:
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(writer, FRAMES[0])
        os.close(writer)  # the writer exits
        assert source.read().number == 0
        with pytest.raises(SourceError, match="writer stopped"):
            source.read()
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a new writer starts
        os.write(writer, FRAMES[1])
        os.close(writer)
        assert source.read().number == 1
    finally:
        source.close()


def test_pipe_source_refuses_missing_path_and_regular_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        MjpegPipeSource(tmp_path / "missing").open()
    regular = tmp_path / "video.mjpeg"
    regular.write_bytes(FRAMES[0])
    with pytest.raises(SourceError, match="not a named pipe"):
        MjpegPipeSource(regular).open()


def test_frames_faster_than_fps_are_skipped_not_queued(tmp_path: Path) -> None:
    fifo = tmp_path / "cam.mjpeg"
    os.mkfifo(fifo)
    source = MjpegPipeSource(fifo, fps=1.0, stall_timeout_s=0.3)
    source.open()
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"".join(FRAMES))  # a burst well inside one frame period
        assert source.read().pixels().shape == (30, 40, 3)
        with pytest.raises(SourceError):
            source.read()  # the rest of the burst came too early: skipped
    finally:
        os.close(writer)
        source.close()
