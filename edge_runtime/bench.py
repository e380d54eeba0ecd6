"""``edge-runtime bench``: how close the full pipeline gets to the interpreter's own limit.

Three loops run on one model in one process, interleaved in rounds of about a second so
that noise from other processes on a shared machine hits all of them alike:

- raw: set the input, invoke, read the outputs - the interpreter's own limit;
- pipeline: the daemon's four-thread ``Pipeline`` fed by the bench: an unpaced (or
  ``--fps``-paced) synthetic JPEG source (640x480 unless ``--frame``) for image models,
  the synthetic vibration sensor, unpaced, for sensor models; with real decoding or
  windowing, preprocessing, postprocessing and publishing into a durable outbox in a
  temporary directory (and to the broker when ``--config`` names a reachable one);
- serial: the same work in one thread (read, decode, preprocess, invoke, postprocess,
  publish), the loop users would otherwise write.

A model file alone gets default preprocessing: an image input is fed JPEG frames, a
[1, samples, 3] input windows of the synthetic sensor (50 % overlap); its task is
``classify`` when its one output is shaped [1, N], else ``raw`` (outputs dequantized). Any
other input gets the raw loop only.

The summarising functions come first and are pure; the measuring shell follows.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_runtime.config.schema import (
    Config,
    OutputConfig,
    PipelineConfig,
    SyntheticSensorSource,
    SyntheticSource,
)
from edge_runtime.errors import UsageError
from edge_runtime.pipeline import (
    STAGES,
    InputPreprocessor,
    ModelStages,
    Pipeline,
    ResultSink,
    resolve_threads,
)
from edge_runtime.processing.labels import Labels
from edge_runtime.processing.preprocess import Preprocessor, input_geometry
from edge_runtime.processing.tasks import build_postprocessor
from edge_runtime.processing.windowing import WindowPreprocessor
from edge_runtime.publishing.mqtt import MqttLink
from edge_runtime.publishing.outbox import Outbox
from edge_runtime.runners.backends import BackendChoice
from edge_runtime.runners.fast_path import FastPath, slow_int8_warning
from edge_runtime.runners.interpreter import TFLiteRunner
from edge_runtime.runners.model_file import ModelFile, read_model
from edge_runtime.runners.placement import PipelineRunner
from edge_runtime.sources import build_source
from edge_runtime.supervisor import OutboxSink, open_outbox
from edge_runtime.timing import percentile_summary
from edge_runtime.types import Result, StageTimes, TensorSpec

MIN_ROUNDS = 3  # raw, pipeline and serial alternate at least this many times
ROUND_S = 1.0  # measuring time of one loop in one round (more rounds for longer runs)
BUSY_OTHER_CORES = 0.1  # other processes using this much CPU make the figures pessimistic
DEFAULT_SECONDS = 6.0  # measuring time per loop, split over the rounds
FRAME_SIZE = (640, 480)  # width, height of the synthetic camera frames
SENSOR_CHANNELS = 3  # axes of the synthetic vibration sensor
SENSOR_RATE_HZ = 1000.0  # its sample rate when the config does not say
FIRST_RESULT_TIMEOUT_S = 30.0
PIPELINE_STOP_TIMEOUT_S = 10.0
LINK_DRAIN_S = 5.0  # for the broker to acknowledge the last bench messages
POLL_S = 0.002  # waiting for a result
WARMUP_RESULTS = 2  # results before the measured window: the pipeline filling up
PROGRESS_INTERVAL_S = 0.5
BROKER_PROBE_TIMEOUT_S = 1.0
BENCH_SUFFIX = "-bench"  # device id and client id of the bench, so it never poses as the daemon
MB = 1024 * 1024


# --- pure summarising ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopMeasure:
    """Frames completed in a measured window, the CPU time this process took, and the CPU
    time every other process on the machine took meanwhile (None when it cannot be told)."""

    frames: int
    seconds: float
    cpu_seconds: float
    others_cpu_seconds: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cores(self) -> float:
        """Process CPU time / wall time: 1.0 is one core busy."""
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_cores(self) -> float | None:
        """Cores other processes kept busy on average: competition for this loop."""
        if self.others_cpu_seconds is None or self.seconds <= 0:
            return None
        return self.others_cpu_seconds / self.seconds


def combine(measures: Sequence[LoopMeasure]) -> LoopMeasure:
    """The rounds of one loop as one measurement (frames and times add up)."""
    others = [m.others_cpu_seconds for m in measures]
    return LoopMeasure(sum(m.frames for m in measures), sum(m.seconds for m in measures),
                       sum(m.cpu_seconds for m in measures),
                       None if None in others else sum(o for o in others if o is not None))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def thread_group(name: str, pipeline: str) -> str:
    """A thread name -> the column it is reported in (pipeline stages by stage name)."""
    prefix = f"{pipeline}-"
    if name.startswith(prefix):
        return name[len(prefix):]
    if name in ("mqtt-link", "MainThread"):
        return "mqtt" if name == "mqtt-link" else "main"
    return "other"  # interpreter worker threads, OpenCV's pool, SQLite...


def thread_cores(used: Mapping[int, float], names: Mapping[int, str], pipeline: str,
                 seconds: float) -> dict[str, float]:
    """CPU seconds per thread id over ``seconds`` -> cores used per thread group."""
    if seconds <= 0:
        return {}
    groups: dict[str, float] = {}
    for tid, cpu in used.items():
        group = thread_group(names.get(tid, ""), pipeline)
        groups[group] = groups.get(group, 0.0) + cpu
    return {g: round(s / seconds, 3) for g, s in sorted(groups.items())}


def rounds_for(seconds: float) -> int:
    """How many rounds a run of ``seconds`` per loop is split into."""
    return max(MIN_ROUNDS, round(seconds / ROUND_S))


def round_ratios(pipeline: Sequence[LoopMeasure], raw: Sequence[LoopMeasure]) -> list[float]:
    """pipeline/raw of each round (neighbours in time): their spread shows the noise."""
    return [p.fps / r.fps for p, r in zip(pipeline, raw, strict=False) if r.fps > 0]


def busy_machine_note(measures: Mapping[str, LoopMeasure | None]) -> str | None:
    """A note when other processes kept the machine busy while the loops ran."""
    busy = {name: m.other_cores for name, m in measures.items()
            if m is not None and m.other_cores is not None
            and m.other_cores >= BUSY_OTHER_CORES}
    if not busy:
        return None
    shares = ", ".join(f"{c:.2f} during the {name} loop" for name, c in busy.items())
    return (f"other processes kept {shares} (cores on average): the loops competed for the "
            "CPU, the pipeline (which needs more than one core) the most; run again on a "
            "quieter machine")


def add_counts(total: dict[str, int], snapshot: Mapping[str, Any]) -> None:
    for key in ("captured", "dropped_frames", "inferred", "results", "decode_errors"):
        total[key] = total.get(key, 0) + int(snapshot[key])


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarise(*, subject: Mapping[str, Any], raw_rounds: Sequence[LoopMeasure],
              pipeline_rounds: Sequence[LoopMeasure], serial_rounds: Sequence[LoopMeasure],
              stage_samples: Mapping[str, npt.NDArray[np.float64]],
              pipeline_threads: Mapping[str, float], frames: Mapping[str, int],
              peak_rss_mb: float, first_prediction_s: float | None) -> dict[str, Any]:
    """The report: one JSON-able object (the keys documented in docs/performance.md)."""
    raw = combine(raw_rounds)
    pipeline = combine(pipeline_rounds) if pipeline_rounds else None
    serial = combine(serial_rounds) if serial_rounds else None
    loops = {"raw": raw, "pipeline": pipeline, "serial": serial}
    raw_fps = raw.fps
    pipeline_fps = pipeline.fps if pipeline else None
    serial_fps = serial.fps if serial else None
    busy = busy_machine_note(loops)
    return {
        **subject,
        "raw_fps": round(raw_fps, 2),
        "pipeline_fps": rounded(pipeline_fps, 2),
        "serial_fps": rounded(serial_fps, 2),
        "ratio": rounded(ratio(pipeline_fps, raw_fps), 4),
        "pipeline_vs_serial": rounded(ratio(pipeline_fps, serial_fps)),
        "raw_invoke_ms": rounded(1e3 / raw_fps if raw_fps else None, 4),
        "latency_ms": {stage: percentile_summary(samples)
                       for stage, samples in stage_samples.items()},
        "cpu_cores": {**{name: rounded(m.cores) if m else None for name, m in loops.items()},
                      "pipeline_threads": dict(pipeline_threads)},
        "other_process_cores": {name: rounded(m.other_cores) if m else None
                                for name, m in loops.items()},
        "round_ratios": [round(r, 4) for r in round_ratios(pipeline_rounds, raw_rounds)],
        "round_other_cores": [{"pipeline": rounded(p.other_cores), "raw": rounded(r.other_cores)}
                              for p, r in zip(pipeline_rounds, raw_rounds, strict=False)],
        "frames": dict(frames),
        "measured_s": {name: rounded(m.seconds) if m else None for name, m in loops.items()},
        "peak_rss_mb": round(peak_rss_mb, 1),
        "first_prediction_s": rounded(first_prediction_s),
        "notes": [*subject.get("notes", ()), *([busy] if busy else [])],
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a short human-readable table."""
    fast = report["fast_path"]
    speedup = fast.get("xnnpack_speedup")
    lines = [
        f"model     {report['model']} (sha256 {report['model_sha256'][:12]}...)",
        f"backend   {report['backend']}, {report['threads']} interpreter thread(s), "
        f"{fast['description']}"
        + (f"; {speedup:.1f}x the builtin kernels (measured)" if speedup else ""),
        f"source    {report['source']}; publishing to {report['publish']}",
        f"machine   {report['machine']['cpus']} CPUs ({report['machine']['cpu_model']}), "
        f"Python {report['machine']['python']}",
        "",
        f"{'loop':<12}{'frames/s':>11}{'cpu cores':>11}{'others':>9}  (others: cores other "
        "processes used meanwhile)",
    ]
    cores, others = report["cpu_cores"], report["other_process_cores"]
    for name, key in (("raw", "raw_fps"), ("pipeline", "pipeline_fps"), ("serial", "serial_fps")):
        fps = report[key]
        shown = "n/a" if fps is None else f"{fps:.1f}"
        used = "" if cores[name] is None else f"{cores[name]:.2f}"
        competing = "" if others[name] is None else f"{others[name]:.2f}"
        lines.append(f"{name:<12}{shown:>11}{used:>11}{competing:>9}")
    if report["ratio"] is not None:
        per_round = " ".join(f"{r:.3f}" for r in report.get("round_ratios", []))
        lines.append(f"ratio pipeline/raw {report['ratio']:.3f} (rounds: {per_round}); "
                     f"pipeline/serial {report['pipeline_vs_serial']:.2f}x")
    if report["latency_ms"]:
        lines += ["", f"{'latency ms':<14}{'p50':>9}{'p95':>9}{'p99':>9}"]
        for stage, values in report["latency_ms"].items():
            lines.append(f"  {stage:<12}" + "".join(f"{values[p]:>9.3f}"
                                                    for p in ("p50", "p95", "p99")))
    if cores["pipeline_threads"]:
        shares = ", ".join(f"{g} {c:.2f}" for g, c in cores["pipeline_threads"].items())
        lines.append(f"pipeline threads (cores): {shares}")
    if report["frames"]:
        f = report["frames"]
        lines.append(f"pipeline frames: {f['captured']} captured, {f['inferred']} inferred, "
                     f"{f['dropped_frames']} dropped, {f['decode_errors']} decode errors")
    first = report["first_prediction_s"]
    lines.append(("" if first is None else f"first prediction {first:.2f} s after start; ")
                 + f"peak RSS {report['peak_rss_mb']:.1f} MB")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


# --- the measuring shell ---------------------------------------------------------------------


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, a line per phase
    otherwise (logs and pipes)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._width = 0

    def phase(self, text: str) -> None:
        self._write(text, newline=not self.tty)

    def rate(self, label: str, frames: int, seconds: float) -> None:
        """The running rate of a loop (callers call it every PROGRESS_INTERVAL_S, not per
        frame: formatting costs more than a tiny model's invoke)."""
        if self.tty and seconds > 0:
            self._write(f"{label} {frames / seconds:.1f} frames/s", newline=False)

    def done(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def _write(self, text: str, *, newline: bool) -> None:
        line = f"bench: {text}"
        if newline:
            self.stream.write(line + "\n")
        else:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = max(self._width, len(line))
        self.stream.flush()


@dataclass
class Subject:
    """What is benchmarked: the model, its interpreter and (image and sensor models) its
    stages."""

    app: Config  # the bench's own config: temporary state dir, "-bench" device id
    pipeline: PipelineConfig
    model: ModelFile
    runner: PipelineRunner
    stages: ModelStages | None  # None: an input bench cannot feed, raw loop only
    broker: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Feed:
    """What the pipeline and serial loops are fed: camera-like JPEG frames for image models
    (``fps`` None: unpaced), the synthetic vibration sensor, unpaced, for sensor models."""

    fps: float | None = None
    frame_size: tuple[int, int] = FRAME_SIZE

    def frames(self) -> SyntheticSource:
        width, height = self.frame_size
        return SyntheticSource(type="synthetic", width=width, height=height, encode=True,
                               fps=self.fps)

    def sensor(self, rate_hz: float | None) -> SyntheticSensorSource:
        return SyntheticSensorSource(type="synthetic_sensor", rate_hz=rate_hz or SENSOR_RATE_HZ,
                                     realtime=False)


def is_image_input(spec: TensorSpec) -> bool:
    try:
        input_geometry(spec)
    except ValueError:
        return False
    return True


def sensor_window_samples(spec: TensorSpec) -> int | None:
    """Samples per window of an input shaped [1, samples, 3] (the synthetic sensor's axes)."""
    shape = spec.shape
    if len(shape) == 3 and shape[0] == 1 and shape[2] == SENSOR_CHANNELS and shape[1] >= 2:
        return shape[1]
    return None


def is_classifier(outputs: Sequence[TensorSpec]) -> bool:
    return len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[0] == 1


def bench_config(base: Config, pipeline: PipelineConfig,
                 state_dir: Path) -> tuple[Config, PipelineConfig]:
    """The bench's copy of a config: its own device id (so topics, client id and status never
    collide with a running daemon), a temporary state dir, the default output topic."""
    bench_pipeline = pipeline.model_copy(update={"output": OutputConfig(qos=pipeline.output.qos)})
    mqtt = base.mqtt.model_copy(update={
        "client_id": base.mqtt.client_id + BENCH_SUFFIX if base.mqtt.client_id else None})
    app = base.model_copy(update={"device_id": base.device_id + BENCH_SUFFIX,
                                  "state_dir": state_dir, "mqtt": mqtt,
                                  "pipelines": [bench_pipeline]})
    return app, bench_pipeline


def model_subject(model_path: Path, *, threads: int | None, backend: BackendChoice,
                  feed: Feed, state_dir: Path) -> Subject:
    """A model file alone, with default preprocessing: an image input is fed JPEG frames, a
    [1, samples, 3] input windows of the synthetic vibration sensor (50 % overlap); the task
    is classify for one [1, N] output, else raw."""
    model = read_model(model_path)
    runner = TFLiteRunner(model, backend=backend, threads=resolve_threads(threads or "auto", 1))
    spec = runner.inputs[0] if len(runner.inputs) == 1 else None
    samples = sensor_window_samples(spec) if spec is not None else None
    pipeline: dict[str, Any] = {
        "name": "bench", "source": feed.frames().model_dump(),
        "model": {"path": str(model_path), "backend": backend, "threads": runner.threads},
        "task": {"type": "classify" if is_classifier(runner.outputs) else "raw"}}
    preprocessor: InputPreprocessor | None = None
    notes: list[str] = []
    if spec is not None and is_image_input(spec):
        preprocessor = Preprocessor(spec)
    elif spec is not None and samples is not None:
        pipeline["source"] = feed.sensor(SENSOR_RATE_HZ).model_dump()
        pipeline["window"] = {"samples": samples, "hop": max(1, samples // 2),
                              "rate_hz": SENSOR_RATE_HZ}
        preprocessor = WindowPreprocessor(spec, samples=samples, channels=SENSOR_CHANNELS)
    else:
        shapes = ", ".join(str(list(s.shape)) for s in runner.inputs)
        notes.append(f"input {shapes} is neither an image nor a 3-axis sensor window: raw "
                     "loop only")
    base = Config.model_validate({"device_id": "model", "state_dir": str(state_dir),
                                  "pipelines": [pipeline]})
    app, config = bench_config(base, base.pipelines[0], state_dir)
    stages = None
    if preprocessor is not None:
        postprocessor = build_postprocessor(config.task, runner.outputs, Labels(),
                                            f"model {model_path.name}")
        stages = ModelStages(config, model, runner, preprocessor, postprocessor, Labels())
    return Subject(app, config, model, runner, stages, notes=notes)


def fed_by_bench(pipeline: PipelineConfig, feed: Feed) -> PipelineConfig:
    """A configured pipeline with the bench's source in place of its own."""
    if pipeline.window is None:
        return pipeline.model_copy(update={"source": feed.frames()})
    channels = len(pipeline.sensor_channels())
    if channels != SENSOR_CHANNELS:
        raise UsageError(f"pipeline '{pipeline.name}' reads {channels} sensor channel(s); bench "
                         f"feeds sensor pipelines from the synthetic {SENSOR_CHANNELS}-axis "
                         "vibration sensor")
    return pipeline.model_copy(update={"source": feed.sensor(pipeline.window.rate_hz)})


def config_subject(config: Config, name: str | None, *, threads: int | None,
                   backend: BackendChoice | None, feed: Feed, state_dir: Path) -> Subject:
    """One configured pipeline: its model, preprocessing or windowing, task, threads,
    backend, accelerator and broker; the bench's source instead of its own."""
    by_name = {p.name: p for p in config.pipelines}
    if name is not None and name not in by_name:
        raise UsageError(f"no pipeline named '{name}' in the config (have: {', '.join(by_name)})")
    chosen = by_name[name] if name else config.pipelines[0]
    model_update: dict[str, Any] = {}
    if threads is not None:
        model_update["threads"] = threads
    if backend is not None:
        model_update["backend"] = backend
    chosen = fed_by_bench(chosen.model_copy(update={
        "model": chosen.model.model_copy(update=model_update)}), feed)
    app, pipeline = bench_config(config, chosen, state_dir)
    stages = ModelStages.load(pipeline, resolve_threads(pipeline.model.threads,
                                                         len(config.pipelines)))
    subject = Subject(app, pipeline, stages.model, stages.runner, stages)
    subject.broker = broker_reachable(config.mqtt.host, config.mqtt.port)
    if not subject.broker:
        subject.notes.append(f"broker {config.mqtt.host}:{config.mqtt.port} not reachable: "
                             "publishing to the outbox only")
    if len(config.pipelines) > 1:
        subject.notes.append(f"pipeline '{pipeline.name}' measured alone; its interpreter "
                             f"threads follow the {len(config.pipelines)}-pipeline rule")
    return subject


def broker_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=BROKER_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def thread_cpu_seconds() -> dict[int, float]:
    """CPU seconds per thread of this process (Linux /proc; empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/self/task/{entry.name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                # after "pid (comm)": state is field 3, utime 14, stime 15 (proc(5))
                result[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (Linux /proc/stat:
    user, nice, system, irq, softirq; idle, iowait and steal excluded), None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """This process's CPU time, and everybody else's, over a measured window."""

    def __init__(self) -> None:
        self.own = time.process_time()
        self.machine = machine_cpu_seconds()

    def measure(self, frames: int, seconds: float) -> LoopMeasure:
        own = time.process_time() - self.own
        machine = machine_cpu_seconds()
        others = (None if machine is None or self.machine is None
                  else max(0.0, machine - self.machine - own))
        return LoopMeasure(frames, seconds, own, others)


def thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu_model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model,
            "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__}


def raw_inputs(subject: Subject) -> list[npt.NDArray[Any]]:
    """Image models: a real preprocessed frame; others: zeros."""
    if subject.stages is None:
        return [np.zeros(s.shape, s.dtype) for s in subject.runner.inputs]
    source = build_source(subject.pipeline.source, window=subject.pipeline.window)
    source.open()
    frame = source.read()
    assert frame is not None
    buffer = subject.stages.preprocessor.new_input_buffer()
    subject.stages.preprocessor.fill_frame(frame, buffer)
    return [buffer]


def measure_raw(runner: PipelineRunner, inputs: Sequence[npt.NDArray[Any]], seconds: float,
                progress: Progress, label: str) -> LoopMeasure:
    """Set input, invoke, read outputs, as fast as the interpreter goes."""
    invoke = runner.invoke
    frames = 0
    meter, t0 = CpuMeter(), time.perf_counter()
    deadline, report_at = t0 + seconds, t0 + PROGRESS_INTERVAL_S
    now = t0
    while now < deadline:
        invoke(inputs)
        frames += 1
        now = time.perf_counter()
        if now >= report_at:
            progress.rate(label, frames, now - t0)
            report_at = now + PROGRESS_INTERVAL_S
    return meter.measure(frames, now - t0)


def measure_serial(subject: Subject, stages: ModelStages, sink: OutboxSink, seconds: float,
                   progress: Progress, label: str) -> LoopMeasure:
    """Read, decode, preprocess, invoke, postprocess, publish: one frame at a time."""
    source = build_source(subject.pipeline.source, window=subject.pipeline.window)
    source.open()
    preprocessor, runner, postprocess = stages.preprocessor, stages.runner, stages.postprocessor
    buffer = preprocessor.new_input_buffer()
    frames = 0
    meter, t0 = CpuMeter(), time.perf_counter()
    deadline, report_at = t0 + seconds, t0 + PROGRESS_INTERVAL_S
    now = t0
    while now < deadline:
        frame = source.read()
        if frame is None:
            break
        t_read = time.perf_counter()
        try:
            frame.decode()
        except ValueError:
            continue
        t_decoded = time.perf_counter()
        plan = preprocessor.fill_frame(frame, buffer)
        t_filled = time.perf_counter()
        outputs = runner.invoke((buffer,))
        t_inferred = time.perf_counter()
        predictions, extra = postprocess(outputs, plan)
        now = time.perf_counter()
        times = StageTimes(decode=(t_decoded - t_read) * 1e3,
                           preprocess=(t_filled - t_decoded) * 1e3,
                           inference=(t_inferred - t_filled) * 1e3,
                           postprocess=(now - t_inferred) * 1e3, total=(now - t_read) * 1e3)
        sink.submit(subject.pipeline, stages,
                    Result(frame.number, frame.capture_ts, None, predictions, times, extra))
        frames += 1
        now = time.perf_counter()
        if now >= report_at:
            progress.rate(label, frames, now - t0)
            report_at = now + PROGRESS_INTERVAL_S
    source.close()
    return meter.measure(frames, now - t0)


@dataclass
class PipelineRound:
    measure: LoopMeasure
    samples: dict[str, npt.NDArray[np.float64]]
    threads: dict[int, float]  # CPU seconds per thread id over the measured window
    names: dict[int, str]
    snapshot: dict[str, Any]


def wait_first_result(pipeline: Pipeline) -> float:
    """Monotonic time of the pipeline's first result (raises if it never comes)."""
    deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
    while pipeline.stats.first_result_mono is None:
        if pipeline.state == "failed" or time.monotonic() > deadline:
            pipeline.stop()
            raise RuntimeError(f"the pipeline produced no result ({pipeline.error or 'timeout'})")
        time.sleep(POLL_S)
    return pipeline.stats.first_result_mono


@dataclass
class TimedSink:
    """A ResultSink noting when each result was committed (perf_counter seconds)."""

    sink: ResultSink
    times: list[float] = field(default_factory=list)

    def submit(self, pipeline: PipelineConfig, stages: ModelStages, result: Result) -> None:
        self.sink.submit(pipeline, stages, result)
        self.times.append(time.perf_counter())


@contextlib.contextmanager
def running_pipeline(subject: Subject, stages: ModelStages,
                     sink: ResultSink) -> Iterator[Pipeline]:
    pipeline = Pipeline(subject.pipeline, stages, sink)
    pipeline.open_source()
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()
        pipeline.join(PIPELINE_STOP_TIMEOUT_S)
    if pipeline.state == "failed":
        raise RuntimeError(f"the pipeline failed: {pipeline.error}")


def result_time(pipeline: Pipeline, sink: TimedSink, index: int) -> float:
    """When result number ``index`` (0-based, counted by ``sink``) was committed."""
    deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
    while len(sink.times) <= index:
        if pipeline.done or time.monotonic() > deadline:
            raise RuntimeError(f"the pipeline stopped producing results ({pipeline.state})")
        time.sleep(POLL_S)
    return sink.times[index]


def measure_pipeline(subject: Subject, stages: ModelStages, sink: ResultSink, seconds: float,
                     progress: Progress, label: str) -> PipelineRound:
    """The daemon's pipeline for about ``seconds``, from one committed result to another, so
    the rate has no rounding error even at a few frames per second."""
    timed = TimedSink(sink)
    with running_pipeline(subject, stages, timed) as pipeline:
        first = WARMUP_RESULTS
        start = result_time(pipeline, timed, first)
        meter, threads0 = CpuMeter(), thread_cpu_seconds()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            time.sleep(min(PROGRESS_INTERVAL_S, deadline - now))
            progress.rate(label, len(timed.times) - first - 1, now - start)
        last = len(timed.times)
        end = result_time(pipeline, timed, last)
        measure, threads1 = meter.measure(last - first, end - start), thread_cpu_seconds()
        names = thread_names()
    stats = pipeline.stats
    samples = {stage: window.samples() for stage, window in stats.windows.items()}
    used = {tid: cpu - threads0.get(tid, 0.0) for tid, cpu in threads1.items()}
    return PipelineRound(measure, samples, used, names, pipeline.snapshot())


def cold_start(subject_factory: Callable[[], Subject],
               sink_factory: Callable[[Subject], OutboxSink]
               ) -> tuple[Subject, OutboxSink, float | None]:
    """Build the subject from nothing and run its pipeline to the first result: the time
    from start (model file read) to the first prediction committed to the outbox."""
    started = time.monotonic()
    subject = subject_factory()
    sink = sink_factory(subject)
    if subject.stages is None:
        return subject, sink, None
    with running_pipeline(subject, subject.stages, sink) as pipeline:
        first = wait_first_result(pipeline)
    return subject, sink, first - started


@dataclass
class BenchOptions:
    model: Path | None = None
    config: Config | None = None
    pipeline: str | None = None
    threads: int | None = None
    backend: BackendChoice | None = None
    seconds: float = DEFAULT_SECONDS
    fps: float | None = None
    frame_size: tuple[int, int] = FRAME_SIZE


def run_bench(options: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Measure raw, pipeline and serial loops; return the report (see ``summarise``)."""
    progress = progress or Progress()
    with tempfile.TemporaryDirectory(prefix="edge-runtime-bench-") as tmp:
        state_dir = Path(tmp)
        feed = Feed(options.fps, options.frame_size)

        def make_subject() -> Subject:
            if options.model is not None:
                return model_subject(options.model, threads=options.threads,
                                     backend=options.backend or "auto", feed=feed,
                                     state_dir=state_dir)
            assert options.config is not None
            return config_subject(options.config, options.pipeline, threads=options.threads,
                                  backend=options.backend, feed=feed,
                                  state_dir=state_dir)

        outboxes: list[Outbox] = []
        links: list[MqttLink] = []

        def make_sink(subject: Subject) -> OutboxSink:
            outbox = open_outbox(subject.app)
            outboxes.append(outbox)
            if subject.broker:
                link = MqttLink(subject.app, outbox)
                link.start()
                links.append(link)
            return OutboxSink(subject.app, outbox)

        progress.phase("loading the model and starting the pipeline")
        try:
            subject, sink, first_prediction = cold_start(make_subject, make_sink)
            report = _measure_rounds(subject, sink, first_prediction, options, progress)
        finally:
            for link in links:
                link.stop(LINK_DRAIN_S)
            for outbox in outboxes:
                outbox.close()
            progress.done()
    return report


def _measure_rounds(subject: Subject, sink: OutboxSink, first_prediction: float | None,
                    options: BenchOptions, progress: Progress) -> dict[str, Any]:
    rounds_total = rounds_for(options.seconds)
    per_round = options.seconds / rounds_total
    inputs = raw_inputs(subject)
    raws: list[LoopMeasure] = []
    serials: list[LoopMeasure] = []
    rounds: list[PipelineRound] = []
    stages = subject.stages
    for r in range(1, rounds_total + 1):
        label = f"round {r}/{rounds_total}:"
        if stages is not None:
            progress.phase(f"{label} pipeline")
            rounds.append(measure_pipeline(subject, stages, sink, per_round, progress,
                                           f"{label} pipeline"))
        progress.phase(f"{label} raw interpreter loop")
        raws.append(measure_raw(subject.runner, inputs, per_round, progress, f"{label} raw"))
        if stages is not None:
            progress.phase(f"{label} serial loop")
            serials.append(measure_serial(subject, stages, sink, per_round, progress,
                                          f"{label} serial"))
    rss = peak_rss_mb()  # before the speed-up probe builds a second interpreter
    runner = subject.runner
    fast_path: FastPath | None = None
    speedup: float | None = None
    if isinstance(runner, TFLiteRunner):
        fast_path = runner.fast_path()
        if fast_path is not None and fast_path.xnnpack:
            progress.phase("timing XNNPACK against the builtin kernels")
            speedup = runner.xnnpack_speedup()
    frames: dict[str, int] = {}
    thread_cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    for rnd in rounds:
        add_counts(frames, rnd.snapshot)
        names.update(rnd.names)
        for tid, cpu in rnd.threads.items():
            thread_cpu[tid] = thread_cpu.get(tid, 0.0) + cpu
    samples = {stage: np.concatenate([r.samples[stage] for r in rounds]) for stage in STAGES
               } if rounds else {}
    pipeline_rounds = [r.measure for r in rounds]
    return summarise(
        subject=describe_subject(subject, fast_path, speedup),
        raw_rounds=raws, pipeline_rounds=pipeline_rounds, serial_rounds=serials,
        stage_samples=samples,
        pipeline_threads=thread_cores(thread_cpu, names, subject.pipeline.name,
                                      sum(m.seconds for m in pipeline_rounds)),
        frames=frames, peak_rss_mb=rss, first_prediction_s=first_prediction)


def describe_feed(pipeline: PipelineConfig) -> str:
    source, window = pipeline.source, pipeline.window
    if isinstance(source, SyntheticSensorSource) and window is not None:
        return (f"synthetic vibration sensor, {source.rate_hz:g} Hz unpaced, windows of "
                f"{window.samples} samples every {window.hop or window.samples}")
    if isinstance(source, SyntheticSource):
        pace = f"paced at {source.fps:g} fps" if source.fps else "unpaced"
        return f"synthetic {source.width}x{source.height} jpeg, {pace}"
    return source.type


def describe_subject(subject: Subject, fast_path: FastPath | None,
                     speedup: float | None) -> dict[str, Any]:
    info = subject.runner.info
    warning = (slow_int8_warning(fast_path, info.backend, subject.model.path.name)
               if fast_path is not None else None)
    notes = [*subject.notes, *([warning] if warning else [])]
    if fast_path is None:
        accelerator = subject.runner.accelerator_status()
        notes.append(f"runs on accelerator {accelerator.active}: no XNNPACK check")
    publish = "the outbox (temporary)"
    if subject.broker:
        mqtt = subject.app.mqtt
        publish += (f" and MQTT {mqtt.host}:{mqtt.port} topic "
                    f"{subject.app.predictions_topic(subject.pipeline)}")
    fed = describe_feed(subject.pipeline) if subject.stages else "none (raw loop only)"
    return {
        "model": str(subject.model.path), "model_sha256": subject.model.sha256,
        "backend": info.backend, "threads": info.threads,
        "task": subject.stages.postprocessor.task if subject.stages else None,
        "source": fed,
        "publish": publish,
        "fast_path": {
            "description": fast_path.describe() if fast_path else "accelerator",
            "xnnpack": fast_path.xnnpack if fast_path else None,
            "execution": (fast_path.split.as_dict() if fast_path and fast_path.split
                          else None),
            "xnnpack_speedup": round(speedup, 2) if speedup else None},
        "machine": machine(),
        "notes": notes,
    }
