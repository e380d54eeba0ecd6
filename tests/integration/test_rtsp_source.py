"""The RTSP source against a real RTSP server (gst-rtsp-server from Debian packages, started
by the test): frames, credentials and masking, transport per source even when two open at
once, stall, hang-up."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.errors import SourceError
from edge_runtime.sources.rtsp import FFMPEG_OPTIONS_ENV, RtspStream, Transport
from edge_runtime.stream_url import StreamUrl
from tests.support.broker import free_port
from tests.support.stream_servers import (
    ServerProcess,
    require_rtsp_server,
    rtsp_frames,
    rtsp_server,
)

USER, PASSWORD = "operator", "Rtsp:pa/ss@9"
STALL_S = 1.5


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_rtsp_server()
    return rtsp_frames(tmp_path_factory.mktemp("rtsp-frames"))


@pytest.fixture
def server(frames_dir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """Credentials required; TCP only, so a UDP source must fail."""
    process = rtsp_server(free_port(), frames_dir, tmp_path / "rtsp.log", user=USER,
                          password=PASSWORD, protocols="tcp").start()
    yield process
    process.close()


def port_of(server: ServerProcess) -> int:
    return int(server.args[server.args.index("--port") + 1])


def stream(server: ServerProcess, *, transport: Transport = "tcp", password: str = PASSWORD,
           in_url: bool = False) -> RtspStream:
    port = port_of(server)
    if in_url:
        url = StreamUrl.parse(f"rtsp://{USER}:Rtsp%3Apa%2Fss%409@127.0.0.1:{port}/cam",
                              ("rtsp",))
    else:
        url = StreamUrl.parse(f"rtsp://127.0.0.1:{port}/cam", ("rtsp",), username=USER,
                              password=password)
    return RtspStream(url, transport=transport, open_timeout_s=5, stall_timeout_s=STALL_S)


@pytest.mark.parametrize("in_url", [False, True])
def test_frames_with_credentials(server: ServerProcess, in_url: bool) -> None:
    source = stream(server, in_url=in_url)
    source.open()
    try:
        frames = [source.read() for _ in range(5)]
    finally:
        source.close()
    assert [f.number for f in frames] == list(range(5))
    assert all(f.pixels().shape == (128, 128, 3) for f in frames)
    port = port_of(server)
    expected = (f"rtsp://***:***@127.0.0.1:{port}/cam" if in_url
                else f"rtsp://127.0.0.1:{port}/cam")
    assert source.description == f"RTSP stream {expected} (tcp)"


def test_wrong_password_is_explained_and_masked(server: ServerProcess) -> None:
    with pytest.raises(SourceError, match="401") as info:
        stream(server, password="Not-It-7").open()
    assert info.value.hint == "check username and password"
    assert "Not-It-7" not in str(info.value)


def test_transport_is_per_source_even_when_opened_at_once(server: ServerProcess) -> None:
    """The server accepts TCP only: the UDP source fails with 461 and the TCP one works,
    however their opens interleave (the env var is set under the native-open lock)."""
    outcomes: dict[str, list[str]] = {"tcp": [], "udp": []}

    def attempt(transport: Transport) -> None:
        source = stream(server, transport=transport)
        try:
            source.open()
            source.read()
            outcomes[transport].append("ok")
        except SourceError as err:
            outcomes[transport].append(err.message)
        finally:
            source.close()

    for _ in range(3):
        threads = [threading.Thread(target=attempt, args=(t,)) for t in ("udp", "tcp")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert outcomes["tcp"] == ["ok"] * 3
    assert len(outcomes["udp"]) == 3
    assert all("461" in reason or "Unsupported transport" in reason
               for reason in outcomes["udp"]), outcomes["udp"]
    assert FFMPEG_OPTIONS_ENV not in os.environ  # restored after every open


def test_udp_transport_delivers_frames(frames_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    server = rtsp_server(port, frames_dir, tmp_path / "rtsp.log", protocols="udp").start()
    source = RtspStream(StreamUrl.parse(f"rtsp://127.0.0.1:{port}/cam", ("rtsp",)),
                        transport="udp", open_timeout_s=5, stall_timeout_s=STALL_S)
    try:
        source.open()
        frames = [source.read() for _ in range(5)]
    finally:
        source.close()
        server.close()
    assert all(f.pixels().shape == (128, 128, 3) for f in frames)


def test_silent_server_is_a_stall_and_hang_up_ends_at_once(server: ServerProcess) -> None:
    source = stream(server)
    source.open()
    try:
        source.read()
        server.freeze()
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no frame for 1\.5 s \(stream stalled\)"):
            while True:
                source.read()
        waited = time.monotonic() - started
        assert waited <= STALL_S + 3.0  # frames buffered before the freeze come first
    finally:
        server.resume()
        source.close()
    source.open()
    try:
        source.read()
        server.signal(signal.SIGUSR1)  # the server hangs up on its clients
        started = time.monotonic()
        with pytest.raises(SourceError, match="stream ended"):
            while True:
                source.read()
        assert time.monotonic() - started < STALL_S
    finally:
        source.close()
