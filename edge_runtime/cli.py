"""The ``edge-runtime`` command: subcommands and exit codes.

Exit codes: 0 ok, 64 usage, 66 input missing/unreadable, 69 backend unavailable,
78 configuration error, 1 unexpected. User errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from edge_runtime import __version__
from edge_runtime.errors import ConfigError, EdgeRuntimeError, ExitCode, InputError, UsageError

if TYPE_CHECKING:
    from edge_runtime.types import Image, Prediction

PROG = "edge-runtime"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 64 instead of 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Inference daemon for edge devices: frames and "
                     "sensor readings -> int8 TFLite models -> MQTT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the daemon (the bundled demo without --config)")
    run.add_argument("--config", type=Path, help="config file (YAML)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set mqtt.port=1884 (repeatable)")

    check = sub.add_parser("check-config", help="validate a config exactly as start-up does")
    check.add_argument("config", type=Path)
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    inspect = sub.add_parser("inspect", help="describe a .tflite model")
    inspect.add_argument("model", type=Path)
    inspect.add_argument("--backend", choices=["auto", "litert", "tflite-runtime"],
                         default="auto")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--accelerator", metavar="SPEC",
                         help="cpu, edgetpu[:usb|usb:N|pci|pci:N] or delegate:LIBRARY (default: "
                         "edgetpu for a model compiled for it, else cpu)")
    inspect.add_argument("--delegate-option", action="append", default=[], metavar="KEY=VALUE",
                         help="option for delegate:LIBRARY (repeatable)")

    stats = sub.add_parser("outbox-stats", help="messages waiting in the outbox, seq and drop "
                           "counters per pipeline (works while the daemon runs)")
    stats.add_argument("--config", type=Path, help="config file (YAML); default the demo")
    stats.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    stats.add_argument("--json", action="store_true", help="machine-readable output")

    predict = sub.add_parser("predict", help="run one image through a configured pipeline")
    predict.add_argument("--config", type=Path, required=True)
    predict.add_argument("--input", type=Path, required=True, help="image file")
    predict.add_argument("--pipeline", help="pipeline name (default: the first)")
    predict.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument("--annotate", type=Path, metavar="OUT.jpg",
                         help="also write the image with boxes, labels and scores drawn on it")

    health = sub.add_parser("health", help="ask the running daemon how it is: exit 0 healthy, "
                            "1 degraded, 2 unhealthy or not reachable")
    health.add_argument("--url", help="its /healthz URL (default: from the health section of "
                        "the config)")
    health.add_argument("--config", type=Path, help="the config the daemon runs with "
                        "(default: the bundled demo, like 'run')")
    health.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    health.add_argument("--json", action="store_true", help="print the daemon's JSON answer")

    doctor = sub.add_parser("doctor", help="check this device and the configured backend, "
                            "models, sources and broker without starting the daemon: exit 0 "
                            "all passed, 1 warnings, 2 failures")
    doctor.add_argument("--config", type=Path, help="config file (default: the bundled demo)")
    doctor.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    bench = sub.add_parser("bench", help="raw interpreter loop, full pipeline and serial loop "
                           "side by side (docs/performance.md)")
    bench.add_argument("model", nargs="?", type=Path, help="a .tflite model (or --config)")
    bench.add_argument("--config", type=Path, help="benchmark a configured pipeline instead")
    bench.add_argument("--pipeline", help="pipeline name with --config (default: the first)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--threads", type=int, help="interpreter threads (default: the config, "
                       "or auto)")
    bench.add_argument("--backend", choices=["auto", "litert", "tflite-runtime"])
    bench.add_argument("--seconds", type=float, default=6.0,
                       help="measuring time of each loop, interleaved in rounds of about a "
                       "second (default 6)")
    bench.add_argument("--fps", type=float, help="pace the synthetic source (default unpaced)")
    bench.add_argument("--frame", default="640x480", metavar="WxH",
                       help="size of the synthetic JPEG frames (default 640x480)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return int(_dispatch(args))
    except EdgeRuntimeError as err:
        _print_error(err)
        return int(err.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)


def _print_error(err: EdgeRuntimeError) -> None:
    if isinstance(err, ConfigError) and err.problems:
        for line in err.problems:
            print(f"{PROG}: error: {line}", file=sys.stderr)
        if err.hint:
            print(f"{PROG}: hint: {err.hint}", file=sys.stderr)
    else:
        print(f"{PROG}: error: {err}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "run":
        return _run(args)
    if command == "check-config":
        return _check_config(args)
    if command == "inspect":
        return _inspect(args)
    if command == "predict":
        return _predict(args)
    if command == "health":
        return _health(args)
    if command == "doctor":
        return _doctor(args)
    if command == "outbox-stats":
        return _outbox_stats(args)
    if command == "bench":
        return _bench(args)
    raise UsageError(f"unknown command {command}")


def _load(path: Path | None, overrides: list[str]) -> Any:
    from edge_runtime.config import load_config

    return load_config(path, overrides)


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.allocator import retain_freed_memory
    from edge_runtime.bundled import demo_config
    from edge_runtime.logs import setup_logging
    from edge_runtime.supervisor import Daemon

    path: Path = args.config or demo_config()
    config = _load(path, args.set)
    setup_logging(config.log_level)
    retain_freed_memory()
    return Daemon(config, path, args.set).run()


def _check_config(args: argparse.Namespace) -> int:
    from edge_runtime.pipeline import load_all_stages

    config = _load(args.config, args.set)
    load_all_stages(config)
    names = ", ".join(p.name for p in config.pipelines)
    print(f"{args.config}: ok ({len(config.pipelines)} pipeline(s): {names})")
    return int(ExitCode.OK)


def _inspect(args: argparse.Namespace) -> int:
    from edge_runtime.runners import read_model
    from edge_runtime.runners.accelerators import EDGETPU_CUSTOM_OP, parse_accelerator
    from edge_runtime.runners.model_file import custom_operator_codes
    from edge_runtime.runners.placement import placement_report

    model = read_model(args.model)
    compiled = EDGETPU_CUSTOM_OP in (custom_operator_codes(model.content) or ())
    default = "edgetpu" if compiled else "cpu"
    try:
        accelerator = parse_accelerator(args.accelerator or default, args.delegate_option)
    except ValueError as err:
        raise UsageError(str(err)) from err
    runner, placement = placement_report(model, accelerator, args.backend)
    info = runner.info
    report: dict[str, Any] = {
        "path": str(model.path), "size_bytes": model.size, "sha256": model.sha256,
        "backend": info.backend, "xnnpack": info.xnnpack,
        "inputs": [s.describe() for s in runner.inputs],
        "outputs": [s.describe() for s in runner.outputs],
        "operators": runner.operator_counts(),
        "accelerator": placement,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return int(ExitCode.OK)
    xnnpack = {True: "on", False: "off", None: "not known"}[info.xnnpack]
    print(f"model     {model.path}")
    print(f"size      {model.size} bytes")
    print(f"sha256    {model.sha256}")
    print(f"backend   {info.backend} (XNNPACK {xnnpack})")
    for kind in ("inputs", "outputs"):
        for spec in report[kind]:
            quant = (f"scale {spec['scale']:.6g} zero_point {spec['zero_point']}"
                     if spec["scale"] else "not quantized")
            print(f"{kind[:-1]:<9} {spec['name']}: {spec['shape']} {spec['dtype']} ({quant})")
    ops = ", ".join(f"{name} x{count}" for name, count in report["operators"].items())
    print(f"operators {ops}")
    for line in _placement_lines(placement):
        print(line)
    return int(ExitCode.OK)


def _placement_lines(placement: dict[str, Any]) -> list[str]:
    """The accelerator part of ``inspect``: what the accelerator took, what the CPU runs."""
    def split(data: dict[str, Any]) -> str:
        cpu = ", ".join(f"{n} x{c}" for n, c in data["cpu_operators"].items()) or "nothing"
        return (f"{data['delegated']} of {data['operators']} operators in "
                f"{data['delegate_kernels']} delegate kernel(s); CPU kernels run {cpu}")

    lines = [f"runs on   {placement['requested']}"]
    if placement["custom_operators"]:
        lines.append(f"custom    {', '.join(placement['custom_operators'])}")
    share = placement["accelerator_share"]
    if share is not None:
        lines.append(f"accel     {split(share)}")
        if share["delegated"] == 0:
            lines.append("          the accelerator took no operator: everything runs on the CPU")
    if placement["execution"] is not None:
        lines.append(f"execution {split(placement['execution'])} (as the daemon runs it)")
    return lines


def _outbox_stats(args: argparse.Namespace) -> int:
    """The outbox as stored: readable while the daemon runs and after it stopped (the
    running daemon's broker link: ``edge-runtime health``)."""
    import sqlite3

    from edge_runtime.bundled import demo_config
    from edge_runtime.publishing.outbox import read_outbox

    config = _load(args.config or demo_config(), args.set)
    try:
        outbox = read_outbox(config.state_dir)
    except sqlite3.Error as err:
        raise InputError(f"cannot read the outbox in {config.state_dir}: {err}") from err
    if outbox is None:
        raise InputError(f"no outbox in {config.state_dir} (the daemon never ran with this "
                         "state_dir)")
    if args.json:
        print(json.dumps(outbox, indent=2))
        return int(ExitCode.OK)
    print(f"outbox    {outbox['path']}: {outbox['depth']} message(s) waiting, "
          f"{outbox['bytes']} bytes")
    for name, counters in outbox["pipelines"].items():
        print(f"pipeline  {name}: next seq {counters['next_seq']}, waiting "
              f"{counters['waiting']}, dropped {counters['dropped']}")
    return int(ExitCode.OK)


def _predict(args: argparse.Namespace) -> int:
    import time

    import cv2

    from edge_runtime.pipeline import ModelStages, resolve_threads
    from edge_runtime.publishing.payload import payload_body

    config = _load(args.config, args.set)
    pipelines = {p.name: p for p in config.pipelines}
    if args.pipeline is not None and args.pipeline not in pipelines:
        raise UsageError(f"no pipeline named '{args.pipeline}' in {args.config} "
                         f"(have: {', '.join(pipelines)})")
    pipeline = pipelines[args.pipeline] if args.pipeline else config.pipelines[0]
    if pipeline.window is not None:
        raise UsageError(f"pipeline '{pipeline.name}' reads sensor windows; predict takes an "
                         "image for a frame pipeline")
    if args.annotate is not None and not cv2.haveImageWriter(str(args.annotate)):
        raise UsageError(f"--annotate {args.annotate}: OpenCV cannot write "
                         f"'{args.annotate.suffix}' images (use .jpg or .png)")
    if not args.input.is_file():
        raise InputError(f"input image {args.input} does not exist")
    image = cast("Image", cv2.imread(str(args.input), cv2.IMREAD_COLOR))
    if image is None:
        raise InputError(f"input image {args.input} cannot be decoded (not an image OpenCV "
                         "reads?)")
    stages = ModelStages.load(pipeline, resolve_threads(pipeline.model.threads, 1))
    result = stages.process(image)
    result = type(result)(0, time.time(), args.input.name, result.predictions, result.times,
                          result.extra)
    body = payload_body(device=config.device_id, pipeline=pipeline.name,
                        task=stages.postprocessor.task, model_name=stages.model.name,
                        model_sha256=stages.model.sha256, result=result)
    if args.annotate is not None:
        _write_annotated(args.annotate, image, result.predictions)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        found = ", ".join(_describe(p) for p in result.predictions) or "nothing"
        print(f"{args.input.name}: {found} ({result.times.inference:.2f} ms inference)")
    return int(ExitCode.OK)


def _describe(prediction: Prediction) -> str:
    """One prediction in a few words, for predict's text output."""
    from edge_runtime.types import Detection, OutputValue

    if isinstance(prediction, Detection):
        box = ",".join(f"{v:.0f}" for v in prediction.box_px)
        return f"{prediction.label} {prediction.score:.3f} at [{box}]"
    if isinstance(prediction, OutputValue):
        return f"{prediction.label} {prediction.value:.4g}" + (" (above)" if prediction.above
                                                               else "")
    return f"{prediction.label} {prediction.score:.3f}"


def _write_annotated(path: Path, image: Image, predictions: Sequence[Prediction]) -> None:
    import cv2

    from edge_runtime.processing.annotate import annotate

    if not cv2.imwrite(str(path), annotate(image, predictions)):
        raise InputError(f"--annotate {path}: cannot write the annotated image there")


def _health(args: argparse.Namespace) -> int:
    from edge_runtime.bundled import demo_config
    from edge_runtime.health.client import EXIT_UNREACHABLE, default_url, query, unreachable
    from edge_runtime.health.evaluate import one_line

    url: str | None = args.url
    if url is None:
        path: Path = args.config or demo_config()  # the same default as `run`
        section = _load(path, args.set).health
        url = default_url(section)
        if not section.enabled:
            answer = unreachable(f"the health endpoint is off (health.enabled: false in "
                                 f"{path})")
            print(json.dumps(answer.body) if args.json else one_line(answer.body))
            return EXIT_UNREACHABLE
    answer = query(url)
    print(json.dumps(answer.body, indent=2) if args.json else one_line(answer.body))
    return answer.exit_code


def _doctor(args: argparse.Namespace) -> int:
    from edge_runtime.bundled import demo_config
    from edge_runtime.doctor import run_doctor
    from edge_runtime.doctor.registry import exit_code, format_result, summary

    results = run_doctor(args.config or demo_config(), args.set)
    code = exit_code(results)
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results], "exit_code": code},
                         indent=2))
    else:
        for result in results:
            print(format_result(result))
        print(f"doctor: {summary(results)}")
    return code
def _bench(args: argparse.Namespace) -> int:
    from edge_runtime.allocator import retain_freed_memory
    from edge_runtime.bench import BenchOptions, format_report, run_bench

    if (args.model is None) == (args.config is None):
        raise UsageError("bench needs a MODEL.tflite or --config FILE (one of them)")
    if args.model is not None and (args.pipeline or args.set):
        raise UsageError("--pipeline and --set go with --config")
    if args.seconds <= 0 or (args.fps is not None and args.fps <= 0):
        raise UsageError("--seconds and --fps must be positive")
    if args.threads is not None and not 1 <= args.threads <= 64:
        raise UsageError("--threads must be between 1 and 64")
    if args.model is not None and not args.model.is_file():
        raise InputError(f"model file {args.model} does not exist")
    width, _, height = args.frame.partition("x")
    if not (width.isdigit() and height.isdigit() and 0 < int(width) <= 8192
            and 0 < int(height) <= 8192):
        raise UsageError(f"--frame must look like 640x480, not '{args.frame}'")
    config = _load(args.config, args.set) if args.config is not None else None
    options = BenchOptions(model=args.model, config=config, pipeline=args.pipeline,
                           threads=args.threads, backend=args.backend, seconds=args.seconds,
                           fps=args.fps, frame_size=(int(width), int(height)))
    retain_freed_memory()  # as the daemon does
    report = run_bench(options)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())

