"""The HTTP MJPEG source against a real local HTTP server (in this process): frames, stall,
hang-up, timeouts, authentication, wrong content, fps cap, masking."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from edge_runtime.errors import SourceError
from edge_runtime.sources.http_mjpeg import HttpMjpegStream
from edge_runtime.stream_url import StreamUrl
from tests.support.broker import free_port
from tests.support.frames import jpeg_frames
from tests.support.mjpeg_server import MjpegServer

FRAMES = jpeg_frames(5, size=(64, 48), seed=3)
PASSWORD = "pa:ss/word@1"
STALL_S = 0.6


def stream(url: str, *, username: str | None = None, password: str | None = None,
           fps: float | None = None, open_timeout_s: float = 2.0,
           stall_timeout_s: float = STALL_S) -> HttpMjpegStream:
    return HttpMjpegStream(StreamUrl.parse(url, ("http",), username=username,
                                           password=password),
                           fps=fps, open_timeout_s=open_timeout_s,
                           stall_timeout_s=stall_timeout_s)


@pytest.fixture
def camera() -> Iterator[MjpegServer]:
    with MjpegServer(FRAMES, fps=50) as server:
        yield server


def test_frames_are_the_served_jpegs_decoded_on_demand(camera: MjpegServer) -> None:
    source = stream(camera.url())
    source.open()
    try:
        frames = [source.read() for _ in range(7)]
    finally:
        source.close()
    assert [f.encoded for f in frames] == [FRAMES[i % 5] for i in range(7)]
    assert [f.number for f in frames] == list(range(7))
    expected = cv2.imdecode(np.frombuffer(FRAMES[1], np.uint8), cv2.IMREAD_COLOR)
    assert (frames[1].pixels() == expected).all()


def test_open_but_silent_is_a_stall(camera: MjpegServer) -> None:
    source = stream(camera.url())
    source.open()
    try:
        source.read()
        camera.freeze()
        time.sleep(0.2)  # frames already in flight may still arrive
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no frame for 0.6 s \(stream stalled\)"):
            while True:
                source.read()
        assert time.monotonic() - started <= STALL_S + 0.5
    finally:
        camera.resume()
        source.close()


def test_server_hang_up_is_reported_at_once() -> None:
    camera = MjpegServer(FRAMES, fps=50).start()
    source = stream(camera.url(), stall_timeout_s=30)
    source.open()
    try:
        source.read()
        camera.close()
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"closed the stream|connection lost"):
            while True:
                source.read()
        assert time.monotonic() - started < 5  # not the 30 s stall timeout
    finally:
        source.close()


def test_connection_refused() -> None:
    source = stream(f"http://127.0.0.1:{free_port()}/stream")
    with pytest.raises(SourceError, match="connection refused"):
        source.open()


def test_no_answer_within_the_open_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        source = stream(f"http://127.0.0.1:{port}/stream", open_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no answer within 0\.5 s"):
            source.open()
        assert time.monotonic() - started < 3


def test_credentials_basic_auth_and_masking() -> None:
    with MjpegServer(FRAMES, fps=50, username="op", password=PASSWORD) as camera:
        good = stream(camera.url(), username="op", password=PASSWORD)
        good.open()
        assert good.read().encoded == FRAMES[0]
        good.close()
        # inside the URL, percent-encoded
        inside = stream(f"http://op:pa%3Ass%2Fword%401@127.0.0.1:{camera.port}/stream")
        inside.open()
        assert inside.read().encoded == FRAMES[0]
        inside.close()
        assert inside.description == f"HTTP MJPEG stream http://***:***@127.0.0.1:{camera.port}/stream"
        for source in (stream(camera.url(), username="op", password="nottheone"),
                       stream(camera.url())):
            with pytest.raises(SourceError, match="HTTP 401 Unauthorized") as info:
                source.open()
            assert info.value.hint == "check username and password"
            assert "nottheone" not in str(info.value) and PASSWORD not in str(info.value)


def test_digest_only_camera_is_explained() -> None:
    with (MjpegServer(FRAMES, username="op", password="x", challenge="Digest") as camera,
          pytest.raises(SourceError, match="Digest authentication")):
        stream(camera.url(), username="op", password="x").open()


def test_snapshot_url_and_missing_path(camera: MjpegServer) -> None:
    with pytest.raises(SourceError, match=r"not an MJPEG stream \(Content-Type image/jpeg") as info:
        stream(camera.url("/snapshot")).open()
    assert info.value.hint is not None and "snapshot" in info.value.hint
    with pytest.raises(SourceError, match="HTTP 404"):
        stream(camera.url("/nothing")).open()


def test_fps_cap_skips_frames_without_decoding(camera: MjpegServer) -> None:
    source = stream(camera.url(), fps=10)
    source.open()
    try:
        source.read()
        served_before = camera.sent
        started = time.monotonic()
        for _ in range(5):
            frame = source.read()
            assert frame.image is None  # still encoded: decoded only if inferred
        elapsed = time.monotonic() - started
        served = camera.sent - served_before
    finally:
        source.close()
    assert elapsed >= 0.4  # 5 frames at 10 fps, not at the server's 50
    assert served > 10  # the rest arrived and was skipped
