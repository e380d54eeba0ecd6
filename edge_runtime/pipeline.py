"""source -> preprocess -> runner -> postprocess -> sink, as a pipeline of threads.

Four stages overlap so inference never waits for I/O (``invoke()`` and OpenCV release
the GIL):

  capture  --FrameSlot-->  prepare (decode + preprocess into a pooled input buffer)
           --slot-->  infer (one interpreter)  --slot-->  post (postprocess + sink)

Live sources hand over through a latest-frame-wins slot (stale frames are dropped and
counted); unpaced files hand over with back-pressure so no frame is lost. Sensor sources
deliver windows of samples inside frames and always hand over with back-pressure: each
window is a distinct stretch of time, not a newer view of the same scene (their own bounded
sample buffer absorbs and counts what a slow pipeline cannot take). Two input buffers
alternate, so preprocessing frame n+1 overlaps inference of frame n without any per-frame
allocation.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy.typing as npt

from edge_runtime.backoff import Backoff
from edge_runtime.config.schema import Config, PipelineConfig, SourceConfig, StreamSourceBase
from edge_runtime.errors import ModelError, SourceError
from edge_runtime.handoff import FrameSlot, HandoffClosed
from edge_runtime.processing.labels import Labels, load_labels, parse_labels
from edge_runtime.processing.preprocess import Preprocessor, ResizePlan
from edge_runtime.processing.tasks import Postprocessor, build_postprocessor
from edge_runtime.processing.windowing import WindowPreprocessor
from edge_runtime.runners.model_file import ModelFile, embedded_labels, read_model
from edge_runtime.runners.placement import PipelineRunner, build_runner
from edge_runtime.sources import FrameSource, WindowedSource, build_source
from edge_runtime.timing import LatencyWindow
from edge_runtime.types import Frame, Image, Result, StageTimes

log = logging.getLogger(__name__)

INPUT_BUFFERS = 2  # one being filled while the other is inferred
TAKE_TIMEOUT_S = 0.5
SOURCE_RETRY_MIN_S = 0.5
SOURCE_RETRY_MAX_S = 30.0
STABLE_SOURCE_S = 10.0  # a source online this long resets its reconnect backoff
STAGES = ("capture_wait", "decode", "preprocess", "inference", "postprocess", "publish",
          "end_to_end")
PipelineState = Literal["starting", "running", "finished", "failed", "stopped"]


def resolve_threads(setting: int | str, pipelines: int, cpus: int | None = None) -> int:
    """Interpreter threads for one pipeline.

    ``auto``: one core is left for capture, decode, preprocessing and publishing; the
    remaining cores are split evenly between pipelines; at least 1.
    """
    if isinstance(setting, int):
        return setting
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, (cores - 1) // max(1, pipelines))


class InputPreprocessor(Protocol):
    """Writes a captured frame (image or sensor window) into a model input buffer."""

    def new_input_buffer(self) -> npt.NDArray[Any]:
        ...

    def fill_frame(self, frame: Frame, out: npt.NDArray[Any]) -> ResizePlan | None:
        ...


def source_backoff(config: SourceConfig) -> Backoff:
    """Reconnect delays of a live source: a stream's own settings, or the defaults."""
    if isinstance(config, StreamSourceBase):
        return Backoff(config.reconnect_min_s, config.reconnect_max_s)
    return Backoff(SOURCE_RETRY_MIN_S, SOURCE_RETRY_MAX_S)


class ResultSink(Protocol):
    """Where results go (the outbox in the daemon; stdout for ``predict``)."""

    def submit(self, pipeline: PipelineConfig, stages: ModelStages, result: Result) -> None:
        ...


@dataclass
class ModelStages:
    """The pure-ish compute of one pipeline: preprocess, invoke, postprocess."""

    config: PipelineConfig
    model: ModelFile
    runner: PipelineRunner
    preprocessor: InputPreprocessor
    postprocessor: Postprocessor
    labels: Labels

    @classmethod
    def load(cls, config: PipelineConfig, threads: int) -> ModelStages:
        """Load the model and check that it fits the pipeline's preprocessing and task."""
        where = f"pipeline '{config.name}'"
        model = read_model(config.model.path)
        runner = build_runner(config, model, threads)
        labels = (load_labels(config.model.labels) if config.model.labels is not None
                  else model_labels(model, where))
        if len(runner.inputs) != 1:
            raise ModelError(f"{where}: model {model.path.name} has {len(runner.inputs)} inputs; "
                             "pipelines need exactly one")
        spec = runner.inputs[0]
        pre = config.preprocess
        window = config.window
        section, what = ("preprocess", "preprocessing") if window is None else ("window",) * 2
        preprocessor: InputPreprocessor
        try:
            if window is not None:
                mean, std = window.normalize.mean_std() if window.normalize else (None, None)
                preprocessor = WindowPreprocessor(spec, samples=window.samples,
                                                  channels=len(config.sensor_channels()),
                                                  mean=mean, std=std)
            else:
                preprocessor = Preprocessor(spec, resize=pre.resize,
                                            interpolation=pre.interpolation, color=pre.color,
                                            mean=pre.mean, std=pre.std, pad_value=pre.pad_value)
        except ValueError as err:
            raise ModelError(
                f"{where}: model {model.path.name} input {list(spec.shape)} {spec.dtype} cannot "
                f"be fed by the configured {what}: {err}",
                hint=f"fix the {section} section, or use a model made for this input") from err
        postprocessor = build_postprocessor(config.task, runner.outputs, labels, where)
        return cls(config, model, runner, preprocessor, postprocessor, labels)

    def process(self, image: Image) -> Result:
        """One frame through every stage, serially (``predict`` and the serial baseline)."""
        buffer = self.preprocessor.new_input_buffer()
        t0 = time.perf_counter()
        plan = self.preprocessor.fill_frame(Frame(0, time.time(), time.monotonic(), image=image),
                                            buffer)
        t1 = time.perf_counter()
        outputs = self.runner.invoke([buffer])
        t2 = time.perf_counter()
        predictions, extra = self.postprocessor(outputs, plan)
        t3 = time.perf_counter()
        times = StageTimes(preprocess=(t1 - t0) * 1e3, inference=(t2 - t1) * 1e3,
                           postprocess=(t3 - t2) * 1e3, total=(t3 - t0) * 1e3)
        return Result(0, time.time(), None, predictions, times, extra, image=image)


def model_labels(model: ModelFile, where: str) -> Labels:
    """The labels file embedded in the model's TFLite metadata (when no labels file is
    configured); empty when it has none."""
    found = embedded_labels(model.content)
    if found is None:
        return Labels()
    name, text = found
    log.info("%s: labels from %s embedded in %s", where, name, model.path.name)
    return parse_labels(text)


@dataclass
class PipelineStats:
    """Counters and latency windows; written by the pipeline threads, read by anyone."""

    captured: int = 0
    inferred: int = 0
    results: int = 0
    decode_errors: int = 0
    source_errors: int = 0
    first_result_mono: float | None = None
    last_result_mono: float | None = None
    last_progress_mono: float = field(default_factory=time.monotonic)
    # last failed read or reopen of a live source: the capture thread is in its retry loop
    last_retry_mono: float | None = None
    windows: dict[str, LatencyWindow] = field(
        default_factory=lambda: {stage: LatencyWindow() for stage in STAGES})


@dataclass
class _Job:
    frame: Frame
    buffer: npt.NDArray[Any]
    plan: ResizePlan | None
    capture_wait: float
    decode: float
    preprocess: float
    inference: float = 0.0
    outputs: tuple[npt.NDArray[Any], ...] = ()


class Pipeline:
    """One configured pipeline running on its own threads."""

    def __init__(self, config: PipelineConfig, stages: ModelStages, sink: ResultSink,
                 source: FrameSource | None = None) -> None:
        self.config = config
        self.name = config.name
        self.stages = stages
        self.sink = sink
        self.source: FrameSource = source or build_source(config.source, window=config.window)
        self.stats = PipelineStats()
        self.state: PipelineState = "starting"
        self.source_online = False
        self.source_reason = ""
        self.source_since = time.time()
        self.source_since_mono = time.monotonic()  # health judges durations on this clock
        self.started_mono: float | None = None
        self.error: BaseException | None = None
        self._start_error: SourceError | None = None  # a stream that was down at start
        self._stop = threading.Event()
        self._frames: FrameSlot[Frame] = FrameSlot(
            drop_stale=self.source.live and not isinstance(self.source, WindowedSource))
        self._ready: FrameSlot[_Job] = FrameSlot(drop_stale=False)
        self._done: FrameSlot[_Job] = FrameSlot(drop_stale=False)
        self._buffers: queue.Queue[npt.NDArray[Any]] = queue.Queue()
        self.input_buffers = [stages.preprocessor.new_input_buffer()
                              for _ in range(INPUT_BUFFERS)]
        for buffer in self.input_buffers:
            self._buffers.put(buffer)
        self._threads: list[threading.Thread] = []

    @property
    def dropped_frames(self) -> int:
        return self._frames.dropped

    def open_source(self) -> None:
        """Open the source now, so start-up fails with a clear error if it cannot. A network
        stream that is down is not a start-up error: the pipeline starts with it offline and
        the capture thread keeps reconnecting."""
        try:
            self.source.open()
        except SourceError as err:
            if not isinstance(self.config.source, StreamSourceBase):
                raise
            log.warning("pipeline %s: %s; reconnecting in the background", self.name,
                        err.message)
            self._start_error = err
            self._set_source(False, err.message)
            return
        self._set_source(True, "open")

    def start(self) -> None:
        targets: list[tuple[str, Callable[[], None]]] = [
            ("capture", self._capture_loop), ("prepare", self._prepare_loop),
            ("infer", self._infer_loop), ("post", self._post_loop)]
        for stage, target in targets:
            thread = threading.Thread(target=self._guard(stage, target),
                                      name=f"{self.name}-{stage}", daemon=True)
            self._threads.append(thread)
        self.state = "running"
        self.started_mono = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop capturing; frames already captured still flow to the sink.

        A sensor source is interrupted instead: it hands over the windows it already cut,
        then ends, and the capture loop closes the hand-off behind them.
        """
        self._stop.set()
        if isinstance(self.source, WindowedSource):
            self.source.interrupt()
        else:
            self._frames.close()

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        alive = any(t.is_alive() for t in self._threads)
        if not alive:
            self.source.close()
            if self.state == "running":
                self.state = "stopped" if self._stop.is_set() else "finished"
        return not alive

    @property
    def done(self) -> bool:
        return bool(self._threads) and not any(t.is_alive() for t in self._threads)

    # --- stages ------------------------------------------------------------------------------

    def _guard(self, stage: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as err:  # a bug or an unexpected library error: fail the pipeline
                self.error = err
                self.state = "failed"
                log.exception("pipeline %s: %s stage failed", self.name, stage)
                for slot in (self._frames, self._ready, self._done):
                    slot.close()
        return run

    def _capture_loop(self) -> None:
        backoff = source_backoff(self.config.source)
        windowed = isinstance(self.source, WindowedSource)  # ends by itself once interrupted
        try:
            if self._start_error is not None:
                self._recover_source(self._start_error, backoff)
            while windowed or not self._stop.is_set():
                try:
                    frame = self.source.read()
                except SourceError as err:
                    if not self.source.live:
                        raise
                    self._recover_source(err, backoff)
                    continue
                if frame is None:
                    if not self._stop.is_set():
                        log.info("pipeline %s: %s ended", self.name, self.source.description)
                    return
                if not self.source_online:  # back only once it delivers again
                    self._set_source(True, "delivering again")
                    log.info("pipeline %s: %s is back", self.name, self.source.description)
                self._frames.put(frame)
                # counted once handed over, so captured = inferred + dropped + decode errors
                self.stats.captured += 1
        except HandoffClosed:
            pass
        finally:
            self._frames.close()

    def _recover_source(self, err: SourceError, backoff: Backoff) -> None:
        """A live source failed: report it offline and reopen it with backoff. It stays
        offline (and its offline time keeps counting) until it delivers a frame: a camera or
        pipe that opens but sends nothing is not back. The backoff starts again from its
        minimum only after the source stayed online STABLE_SOURCE_S, so a camera that hangs
        up after every frame is retried ever more slowly, not in a tight loop."""
        self.stats.source_errors += 1
        if self.source_online and time.monotonic() - self.source_since_mono >= STABLE_SOURCE_S:
            backoff.reset()
        # warn when it goes offline, not on every failed retry while it stays offline
        log.log(logging.WARNING if self.source_online else logging.DEBUG, "pipeline %s: %s",
                self.name, err.message)
        self.stats.last_retry_mono = time.monotonic()
        self._set_source(False, err.message)
        self.source.close()
        while not self._stop.wait(backoff.next_delay()):
            try:
                self.source.open()
            except SourceError as retry_err:
                self.stats.last_retry_mono = time.monotonic()
                self._set_source(False, retry_err.message)
                continue
            self.stats.last_retry_mono = time.monotonic()  # reopened; offline until a frame
            return

    def _set_source(self, online: bool, reason: str) -> None:
        if online != self.source_online:
            self.source_since = time.time()
            self.source_since_mono = time.monotonic()
        self.source_online, self.source_reason = online, reason

    def _prepare_loop(self) -> None:
        preprocessor = self.stages.preprocessor
        windows = self.stats.windows
        buffer: npt.NDArray[Any] | None = None
        try:
            while True:
                # a free input buffer first, then the newest frame: a live frame never
                # ages while this thread waits for the interpreter to release a buffer
                buffer = buffer if buffer is not None else self._free_buffer()
                frame = self._frames.take(TAKE_TIMEOUT_S)
                if frame is None:
                    continue
                t0 = time.monotonic()
                try:
                    frame.decode()
                except ValueError:
                    self.stats.decode_errors += 1
                    continue
                t1 = time.monotonic()
                plan = preprocessor.fill_frame(frame, buffer)
                t2 = time.monotonic()
                job = _Job(frame, buffer, plan, (t0 - frame.capture_mono) * 1e3,
                           (t1 - t0) * 1e3, (t2 - t1) * 1e3)
                windows["capture_wait"].add(job.capture_wait)
                windows["decode"].add(job.decode)
                windows["preprocess"].add(job.preprocess)
                buffer = None
                self._ready.put(job)
        except HandoffClosed:
            pass
        finally:
            self._ready.close()

    def _free_buffer(self) -> npt.NDArray[Any]:
        """Wait for an input buffer the interpreter is done with."""
        while True:
            try:
                return self._buffers.get(timeout=TAKE_TIMEOUT_S)
            except queue.Empty:
                if self._ready.closed:  # the inference stage failed: nobody returns buffers
                    raise HandoffClosed from None

    def _infer_loop(self) -> None:
        runner = self.stages.runner
        window = self.stats.windows["inference"]
        try:
            while True:
                job = self._ready.take(TAKE_TIMEOUT_S)
                if job is None:
                    continue
                t0 = time.monotonic()
                job.outputs = runner.invoke((job.buffer,))
                t1 = time.monotonic()
                self._buffers.put(job.buffer)
                job.inference = (t1 - t0) * 1e3
                window.add(job.inference)
                self.stats.inferred += 1
                self.stats.last_progress_mono = t1
                self._done.put(job)
        except HandoffClosed:
            pass
        finally:
            self._done.close()

    def _post_loop(self) -> None:
        postprocess = self.stages.postprocessor
        windows = self.stats.windows
        try:
            while True:
                job = self._done.take(TAKE_TIMEOUT_S)
                if job is None:
                    continue
                t0 = time.monotonic()
                predictions, extra = postprocess(job.outputs, job.plan)
                t1 = time.monotonic()
                frame = job.frame
                times = StageTimes(
                    capture_wait=job.capture_wait, decode=job.decode, preprocess=job.preprocess,
                    inference=job.inference, postprocess=(t1 - t0) * 1e3,
                    total=(t1 - frame.capture_mono) * 1e3)
                result = Result(frame.number, frame.capture_ts, frame.filename, predictions,
                                times, extra, frame.window, image=frame.image)
                self.sink.submit(self.config, self.stages, result)
                t2 = time.monotonic()
                windows["postprocess"].add(times.postprocess)
                windows["publish"].add((t2 - t1) * 1e3)
                windows["end_to_end"].add((t2 - frame.capture_mono) * 1e3)
                self.stats.results += 1
                if self.stats.first_result_mono is None:
                    self.stats.first_result_mono = t2
                self.stats.last_result_mono = t2
        except HandoffClosed:
            pass

    def snapshot(self) -> dict[str, Any]:
        """Counters and p50/p95/p99 per stage, for stats, health and bench."""
        stats = self.stats
        snapshot: dict[str, Any] = {
            "state": self.state,
            "source": {"online": self.source_online, "reason": self.source_reason,
                       "since": round(self.source_since, 3),
                       "description": self.source.description},
            "captured": stats.captured, "dropped_frames": self.dropped_frames,
            "inferred": stats.inferred, "results": stats.results,
            "decode_errors": stats.decode_errors, "source_errors": stats.source_errors,
            "latency_ms": {name: w.summary() for name, w in stats.windows.items()},
            "model": {"name": self.stages.model.name, "sha256": self.stages.model.sha256},
            "backend": self.stages.runner.info.backend,
            "threads": self.stages.runner.threads,
            "accelerator": self.stages.runner.accelerator_status().as_dict(),
        }
        if isinstance(self.source, WindowedSource):
            snapshot["sensor"] = self.source.counters()
        return snapshot


def load_all_stages(config: Config) -> list[ModelStages]:
    """Load and check every pipeline's model (start-up and check-config share this)."""
    return [ModelStages.load(p, resolve_threads(p.model.threads, len(config.pipelines)))
            for p in config.pipelines]
