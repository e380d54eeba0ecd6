"""20 reconnect cycles of a real pipeline (real model, real interpreter) on a network stream:
each cycle the camera goes away and comes back, the pipeline reports the source offline,
reconnects by itself and predicts again. Threads and file descriptors of this process must
not grow across the cycles.

HTTP: the camera process is, in turns, killed (SIGKILL) and started again on the same port
(the connection ends), and frozen (SIGSTOP: the connection stays open, no frame comes: the
stall timeout must close it) and resumed.
RTSP: the real RTSP server hangs up on its clients (SIGUSR1) and takes them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_runtime.bundled import models_dir
from edge_runtime.config.loader import load_config
from edge_runtime.pipeline import ModelStages, Pipeline
from edge_runtime.testing import CollectingSink
from tests.support.broker import free_port
from tests.support.daemon import wait_until
from tests.support.stream_servers import (
    mjpeg_server,
    require_rtsp_server,
    rtsp_frames,
    rtsp_server,
    threads_and_fds,
)

CYCLES = 20
STATE_TIMEOUT_S = 15.0


def stream_pipeline(source: str) -> tuple[Pipeline, CollectingSink]:
    models = models_dir()
    config = load_config(None, env={}, text=f"""\
pipelines:
  - name: cam
    source: {source}
    model: {{path: {models / "digits_int8.tflite"}, labels: {models / "digits_labels.txt"},
             threads: 1}}
""")
    sink = CollectingSink()
    stages = ModelStages.load(config.pipelines[0], threads=1)
    return Pipeline(config.pipelines[0], stages, sink), sink


@pytest.fixture
def running() -> Iterator[Callable[[str], tuple[Pipeline, CollectingSink]]]:
    """Starts stream pipelines; stops them at teardown."""
    made: list[Pipeline] = []

    def start(source: str) -> tuple[Pipeline, CollectingSink]:
        pipeline, sink = stream_pipeline(source)
        made.append(pipeline)
        pipeline.open_source()
        pipeline.start()
        return pipeline, sink

    yield start
    for pipeline in made:
        pipeline.stop()
        pipeline.join(10)


def back_with_predictions(pipeline: Pipeline, sink: CollectingSink) -> bool:
    before = len(sink.results)
    return wait_until(lambda: pipeline.source_online and len(sink.results) > before,
                      STATE_TIMEOUT_S)


Outage = tuple[Callable[[], None], Callable[[], None]]  # take the camera away, bring it back


def run_cycles(pipeline: Pipeline, sink: CollectingSink,
               outages: list[Outage]) -> tuple[tuple[int, int], tuple[int, int]]:
    """One warm-up cycle of each outage, then CYCLES measured ones taking turns;
    (threads, fds) before and after."""

    def cycle(outage: Outage) -> None:
        drop, restore = outage
        drop()
        assert wait_until(lambda: not pipeline.source_online, STATE_TIMEOUT_S), \
            pipeline.source_reason
        restore()
        assert back_with_predictions(pipeline, sink), pipeline.source_reason

    assert back_with_predictions(pipeline, sink)
    for outage in outages:
        cycle(outage)
    before = threads_and_fds()
    errors_before = pipeline.stats.source_errors
    for i in range(CYCLES):
        cycle(outages[i % len(outages)])
    after = threads_and_fds()
    assert pipeline.stats.source_errors >= errors_before + CYCLES
    assert pipeline.state == "running"
    return before, after


class HttpCamera:
    """The MJPEG camera process, replaced by a new one on the same port after a kill."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process = mjpeg_server(port, log, fps=25).start()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.process = mjpeg_server(self.port, self.log, fps=25).start()

    def freeze(self) -> None:
        self.process.freeze()

    def resume(self) -> None:
        self.process.resume()


Starter = Callable[[str], tuple[Pipeline, CollectingSink]]


def test_http_camera_killed_or_frozen_20_times(running: Starter, tmp_path: Path) -> None:
    camera = HttpCamera(free_port(), tmp_path / "camera.log")
    try:
        pipeline, sink = running(
            f"{{type: http_mjpeg, url: 'http://127.0.0.1:{camera.port}/stream', "
            "stall_timeout_s: 0.8, open_timeout_s: 0.5, reconnect_min_s: 0.1, "
            "reconnect_max_s: 0.3}")
        before, after = run_cycles(pipeline, sink, [(camera.kill, camera.restart),
                                                    (camera.freeze, camera.resume)])
    finally:
        camera.process.close()
    print(f"HTTP: threads, fds {before} -> {after}; {pipeline.stats.source_errors} source "
          f"errors, {len(sink.results)} predictions")
    assert after[0] <= before[0], f"threads grew: {before} -> {after}"
    assert after[1] <= before[1], f"file descriptors grew: {before} -> {after}"


def test_rtsp_camera_hangs_up_20_times(running: Starter, tmp_path: Path) -> None:
    import signal

    require_rtsp_server()
    port = free_port()
    server = rtsp_server(port, rtsp_frames(tmp_path / "frames"), tmp_path / "rtsp.log",
                         fps=50).start()  # FFmpeg probes ~20 frames per open
    try:
        pipeline, sink = running(
            f"{{type: rtsp, url: 'rtsp://127.0.0.1:{port}/cam', stall_timeout_s: 2, "
            "reconnect_min_s: 0.1, reconnect_max_s: 0.3}")
        before, after = run_cycles(pipeline, sink,
                                   [(lambda: server.signal(signal.SIGUSR1), lambda: None)])
    finally:
        server.close()
    print(f"RTSP: threads, fds {before} -> {after}; {pipeline.stats.source_errors} source "
          f"errors, {len(sink.results)} predictions")
    assert after[0] <= before[0], f"threads grew: {before} -> {after}"
    assert after[1] <= before[1], f"file descriptors grew: {before} -> {after}"
