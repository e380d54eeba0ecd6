"""The configuration schema: pydantic v2 models, validated once at start-up.

Every model forbids unknown keys; variants (source, task) are selected by ``type``.
Relative paths are resolved against the directory of the config file (passed in the
validation context as ``base_dir``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_runtime.stream_url import StreamUrl

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe inside an MQTT topic level
DEFAULT_STATE_DIR = Path("/var/lib/edge-runtime")
DEFAULT_HEALTH_PORT = 9473  # /healthz and /metrics on 127.0.0.1
# The systemd watchdog treats a source retry loop as hung after 60 s without an attempt:
# 30 s for the longest backoff delay plus 30 s for an open (docs/streams.md).
STREAM_OPEN_TIMEOUT_MAX_S = 30.0
STREAM_RECONNECT_MAX_S = 30.0


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the config file's directory."""
    value = value.expanduser()
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir")
    return (Path(base) / value) if base else value.absolute()


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources ---------------------------------------------------------------------------


class SourceBase(Strict):
    fps: float | None = Field(
        None, gt=0, description="Cap on frames per second delivered (None: as fast as the "
        "source delivers; files and synthetic sources are then unpaced).")


class CameraSource(SourceBase):
    type: Literal["camera"]
    device: int | str = Field(0, description="Camera index or device path such as /dev/video0.")
    width: int | None = Field(None, gt=0, description="Requested capture width in pixels.")
    height: int | None = Field(None, gt=0, description="Requested capture height in pixels.")
    fourcc: str | None = Field(None, min_length=4, max_length=4,
                               description="Requested pixel format, e.g. MJPG.")


class VideoSource(SourceBase):
    type: Literal["video"]
    path: ConfigPath = Field(description="Video file readable by OpenCV (FFmpeg), or a named "
                             "pipe (FIFO) a writer streams a video into (ends when it closes).")
    loop: bool = Field(False, description="Start again at the end instead of stopping.")


class ImagesSource(SourceBase):
    type: Literal["images"]
    path: str = Field(description="A folder (all images in it) or a glob pattern; sorted by name.")
    loop: bool = Field(False, description="Start again after the last image.")

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        return str(_resolve_path(Path(value), info))


class SyntheticSource(SourceBase):
    type: Literal["synthetic"]
    width: int = Field(640, gt=0, le=8192)
    height: int = Field(480, gt=0, le=8192)
    encode: bool = Field(False, description="Deliver JPEG bytes like an MJPEG camera; decoded "
                         "only for frames that are inferred.")
    count: int | None = Field(None, gt=0, description="Stop after this many frames.")


class PipeSource(SourceBase):
    type: Literal["pipe"]
    path: ConfigPath = Field(description="Named pipe (FIFO) carrying concatenated JPEG frames "
                             "(MJPEG), e.g. written by `rpicam-vid -t 0 --codec mjpeg -o PATH`.")
    stall_timeout_s: float = Field(5.0, gt=0, description="No complete frame for this long: "
                                   "the source is reported offline and reopened.")


class StreamSourceBase(SourceBase):
    """A network camera: connect and stall timeouts, reconnect backoff, credentials."""

    schemes: ClassVar[tuple[str, ...]] = ()
    url: str = Field(repr=False, description="Stream URL; credentials may be inside it "
                     "(percent-encoded) or in username/password, not both.")
    username: str | None = Field(None, repr=False, description="Use ${ENV_VAR}.")
    password: str | None = Field(None, repr=False, description="Use ${ENV_VAR}; never "
                                 "logged.")
    open_timeout_s: float = Field(
        10.0, gt=0, le=STREAM_OPEN_TIMEOUT_MAX_S, description="Longest wait for the "
        "connection and the camera's answer (RTSP handshake, HTTP headers).")
    stall_timeout_s: float = Field(
        5.0, gt=0, description="No frame for this long, even on an open connection: the "
        "source is offline and reconnected. Must be below health.stall_after_s.")
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        STREAM_RECONNECT_MAX_S, gt=0, le=STREAM_RECONNECT_MAX_S,
        description="Longest reconnect delay (exponential backoff with jitter).")

    @model_validator(mode="after")
    def _check_stream(self) -> StreamSourceBase:
        self.stream_url()  # ValueError with the URL masked
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def stream_url(self) -> StreamUrl:
        return StreamUrl.parse(self.url, self.schemes, username=self.username,
                               password=self.password)


class RtspSource(StreamSourceBase):
    schemes: ClassVar[tuple[str, ...]] = ("rtsp",)
    type: Literal["rtsp"]
    transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTP over the RTSP TCP connection (robust through Wi-Fi, NAT and "
        "firewalls) or over UDP (less latency on a clean LAN, loses packets elsewhere).")


class HttpMjpegSource(StreamSourceBase):
    schemes: ClassVar[tuple[str, ...]] = ("http",)
    type: Literal["http_mjpeg"]


# --- sensor sources (docs/sensors.md) -----------------------------------------------------

CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VIBRATION_CHANNELS = ("ax", "ay", "az")  # what synthetic_sensor produces, in g
VibrationState = Literal["off", "normal", "imbalance", "bearing_fault"]
VIBRATION_STATES: tuple[VibrationState, ...] = ("off", "normal", "imbalance", "bearing_fault")
SERIAL_STOPBITS = (1.0, 1.5, 2.0)


class ChannelConfig(Strict):
    """One channel of a line-based sensor source: where its number is, and its units."""

    name: str = Field(pattern=CHANNEL_PATTERN, max_length=64,
                      description="Channel name; channels feed the model in the listed order.")
    field: str | None = Field(None, min_length=1, description="JSON: key of the value, dotted "
                              "for nested objects (accel.x); default: the channel name.")
    column: int | str | None = Field(None, description="CSV: 0-based column index, or a header "
                                     "name (needs header: true); default with a header: the "
                                     "channel name.")
    scale: float = Field(1.0, description="value = raw * scale + offset (unit conversion).")
    offset: float = 0.0

    @field_validator("column")
    @classmethod
    def _column(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("column indexes start at 0")
        return value


class TimeConfig(Strict):
    """Where a reading's timestamp is; without it readings are stamped on arrival."""

    field: str | None = Field(None, min_length=1, description="JSON key (dotted for nested).")
    column: int | str | None = Field(None, description="CSV column index or header name.")
    unit: Literal["s", "ms", "us", "ns"] = Field("s", description="Unit of the timestamp.")

    @model_validator(mode="after")
    def _one_place(self) -> TimeConfig:
        if (self.field is None) == (self.column is None):
            raise ValueError("give the timestamp's field (JSON) or column (CSV)")
        if isinstance(self.column, int) and self.column < 0:
            raise ValueError("column indexes start at 0")
        return self


class LineSource(Strict):
    """Readings as text lines, one reading per line: CSV or JSON (a JSON line may also be an
    array of reading objects). Malformed lines are counted and skipped."""

    format: Literal["csv", "json"] = Field("csv", description="How each line is written.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV separator.")
    header: bool = Field(False, description="CSV: the first line names the columns (columns "
                         "may then be given by name).")
    channels: list[ChannelConfig] = Field(min_length=1, max_length=64)
    time: TimeConfig | None = Field(None, description="Where the timestamp is; default: the "
                                    "host clock when the line arrives.")

    @model_validator(mode="after")
    def _fields_fit_format(self) -> LineSource:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel names must be unique")
        places: list[tuple[str, str | None, int | str | None]] = [
            (f"channel '{c.name}'", c.field, c.column) for c in self.channels]
        if self.time is not None:
            places.append(("time", self.time.field, self.time.column))
        for what, field_name, column in places:
            if self.format == "json" and column is not None:
                raise ValueError(f"{what}: JSON readings are selected by field, not column")
            if self.format == "csv" and field_name is not None:
                raise ValueError(f"{what}: CSV readings are selected by column, not field")
            if self.format == "csv" and not self.header and not isinstance(column, int):
                raise ValueError(f"{what}: give a column index (or set header: true to select "
                                 "columns by name)")
        if self.format == "json" and self.header:
            raise ValueError("header applies to CSV only")
        return self

    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]


class Buffered(Strict):
    buffer_samples: int = Field(
        65_536, ge=16, le=10_000_000, description="Samples held while the pipeline is busy; "
        "when full the oldest are dropped and counted (overflow).")


class SerialSource(LineSource, Buffered):
    type: Literal["serial"]
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0 or "
                      "/dev/serial/by-id/...")
    baud: int = Field(115_200, gt=0, le=20_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = Field(1.0, description="1, 1.5 or 2.")
    rtscts: bool = Field(False, description="RTS/CTS hardware flow control.")
    xonxoff: bool = Field(False, description="XON/XOFF software flow control.")

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in SERIAL_STOPBITS:
            raise ValueError("stopbits must be 1, 1.5 or 2")
        return value


class FileSensorSource(LineSource):
    type: Literal["file"]
    path: str = Field(min_length=1, description="A file or FIFO of readings, or '-' for "
                      "standard input.")
    follow: bool = Field(False, description="At the end wait for more lines, like tail -F "
                         "(reopens a rotated or truncated file); false: the source ends.")
    start: Literal["beginning", "end"] = Field(
        "beginning", description="Where to start reading a regular file (end: only new lines).")
    pace: float | Literal["timestamps"] | None = Field(
        None, description="Replay speed: samples per second, or 'timestamps' (at the pace "
        "of the time field); default as fast as the pipeline takes them.")

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        return value if value == "-" else str(_resolve_path(Path(value), info))

    @model_validator(mode="after")
    def _check(self) -> FileSensorSource:
        if isinstance(self.pace, float) and self.pace <= 0:
            raise ValueError("pace must be a positive rate or 'timestamps'")
        if self.pace == "timestamps" and self.time is None:
            raise ValueError("pace: timestamps needs a time field or column")
        if self.path == "-" and (self.follow or self.start == "end"):
            raise ValueError("standard input cannot be followed or started at its end")
        return self


class MqttSensorSource(LineSource, Buffered):
    type: Literal["mqtt"]
    topic: str = Field(min_length=1, description="Topic filter (wildcards allowed) with "
                       "readings from other devices; one or more lines per message.")
    qos: Literal[0, 1, 2] = 1

    @model_validator(mode="after")
    def _no_header(self) -> MqttSensorSource:
        if self.header:
            raise ValueError("MQTT readings have no header line: select CSV columns by index")
        return self


class IioChannelConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=64, description="The sysfs channel: "
                      "accel_x reads in_accel_x_raw (with in_accel_x_scale/_offset or the "
                      "shared in_accel_scale/_offset).")
    scale: float = Field(1.0, description="Applied after the device's own scale and offset: "
                         "value = (raw + dev_offset) * dev_scale * scale + offset.")
    offset: float = 0.0


class IioSource(Buffered):
    type: Literal["iio"]
    device: str = Field(min_length=1, description="iio:deviceN, or the device's name (its "
                        "'name' file).")
    base_path: ConfigPath = Field(Path("/sys/bus/iio/devices"),
                                  description="Where IIO devices are listed.")
    channels: list[IioChannelConfig] = Field(min_length=1, max_length=64)
    rate_hz: float = Field(gt=0, le=10_000, description="Polling rate (readings per second).")

    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]


class SyntheticSensorSource(Buffered):
    type: Literal["synthetic_sensor"]
    rate_hz: float = Field(1000.0, gt=0, le=1_000_000)
    realtime: bool = Field(True, description="Produce samples at rate_hz like a device (lost "
                           "and counted when the pipeline lags); false: as fast as the "
                           "pipeline takes them (benchmarks).")
    states: list[VibrationState] = Field(
        default_factory=lambda: list(VIBRATION_STATES), min_length=1,
        description="Machine states played in turn, cycling.")
    state_s: float = Field(8.0, gt=0, description="Seconds per state.")
    seed: int = 0
    duration_s: float | None = Field(None, gt=0, description="Stop after this much signal.")

    def channel_names(self) -> list[str]:
        return list(VIBRATION_CHANNELS)


SensorSourceConfig = (SerialSource | FileSensorSource | MqttSensorSource | IioSource
                      | SyntheticSensorSource)
SENSOR_SOURCES = (SerialSource, FileSensorSource, MqttSensorSource, IioSource,
                  SyntheticSensorSource)

SourceConfig = Annotated[
    CameraSource | VideoSource | ImagesSource | SyntheticSource | PipeSource | RtspSource
    | HttpMjpegSource | SerialSource | FileSensorSource | MqttSensorSource | IioSource
    | SyntheticSensorSource,
    Field(discriminator="type"),
]


# --- model, preprocessing, task --------------------------------------------------------


class CpuAccelerator(Strict):
    """The interpreter's own CPU kernels (XNNPACK where it applies); threads: model.threads."""

    type: Literal["cpu"]


class DelegateAcceleratorBase(Strict):
    fallback: Literal["fail", "cpu"] = Field(
        "fail", description="When the accelerator cannot be used: fail (exit 69 with the "
        "reason), or cpu (run on the CPU, report the pipeline degraded, retry every retry_s).")
    retry_s: float = Field(60.0, gt=0, le=86400,
                           description="Seconds between attempts to get the accelerator back "
                           "while running on the CPU fallback.")


EDGETPU_DEVICE_PATTERN = r"^(usb|pci)(:[0-9]+)?$"


class EdgeTpuAccelerator(DelegateAcceleratorBase):
    """A Coral Edge TPU through libedgetpu.so.1; model.path must be an *_edgetpu.tflite."""

    type: Literal["edgetpu"]
    device: str | None = Field(
        None, pattern=EDGETPU_DEVICE_PATTERN, description="usb, usb:N, pci or pci:N "
        "(N counts devices of that kind from 0); None: the first Edge TPU found.")


class DelegateAccelerator(DelegateAcceleratorBase):
    """Any TFLite external delegate library (NPU, GPU...), loaded with key/value options."""

    type: Literal["delegate"]
    library: str = Field(min_length=1, description="Shared library: a path (relative to the "
                         "config file) or a name the dynamic loader finds.")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Options passed to tflite_plugin_create_delegate "
        "as strings (true/false for booleans).")

    @field_validator("library")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        return str(_resolve_path(Path(value), info)) if "/" in value else value


AcceleratorConfig = Annotated[
    CpuAccelerator | EdgeTpuAccelerator | DelegateAccelerator, Field(discriminator="type")
]


class ModelConfig(Strict):
    path: ConfigPath = Field(description="The .tflite model file.")
    cpu_path: ConfigPath | None = Field(
        None, description="The CPU variant of the model, used by the cpu fallback of an "
        "accelerator (required for edgetpu: *_edgetpu.tflite files cannot run on the CPU).")
    accelerator: AcceleratorConfig = Field(
        default_factory=lambda: CpuAccelerator(type="cpu"),
        description="Where the model runs: cpu (default), edgetpu or an external delegate.")
    labels: ConfigPath | None = Field(None, description="Labels file, one label per line.")
    backend: Literal["auto", "litert", "tflite-runtime"] = Field(
        "auto", description="Interpreter backend; auto prefers ai-edge-litert.")
    threads: int | Literal["auto"] = Field(
        "auto", description="Interpreter threads; auto = cores left after capture/decode, "
        "shared between pipelines (at least 1).")

    @field_validator("threads")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("threads must be between 1 and 64, or 'auto'")
        return value

    @model_validator(mode="after")
    def _fallback_model(self) -> ModelConfig:
        accelerator = self.accelerator
        if isinstance(accelerator, CpuAccelerator):
            if self.cpu_path is not None:
                raise ValueError("cpu_path is the CPU variant for an accelerator's fallback; "
                                 "with accelerator type cpu use path alone")
        elif (isinstance(accelerator, EdgeTpuAccelerator) and accelerator.fallback == "cpu"
              and self.cpu_path is None):
            raise ValueError("accelerator edgetpu with fallback cpu needs cpu_path, the CPU "
                             "variant of the model (*_edgetpu.tflite files cannot run on the "
                             "CPU)")
        return self


class PreprocessConfig(Strict):
    resize: Literal["stretch", "letterbox", "crop"] = Field(
        "stretch", description="How the frame is fitted to the model input.")
    interpolation: Literal["linear", "area", "nearest"] = "linear"
    color: Literal["rgb", "bgr", "gray"] | None = Field(
        None, description="Channel order fed to the model; default rgb (gray for 1 channel).")
    mean: list[float] | None = Field(None, description="Per-channel mean, in pixel units (0-255).")
    std: list[float] | None = Field(None, description="Per-channel std, in pixel units (0-255).")
    pad_value: int = Field(0, ge=0, le=255, description="Letterbox border value.")

    @model_validator(mode="after")
    def _mean_std_together(self) -> PreprocessConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")
        return self


class ClassifyTask(Strict):
    type: Literal["classify"]
    top_k: int = Field(3, ge=1, le=1000, description="How many classes to report.")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Drop classes scoring less.")


UnitInterval = Annotated[float, Field(ge=0.0, le=1.0)]


class DetectTask(Strict):
    """Object detection: SSD (TFLite_Detection_PostProcess) or YOLO raw outputs."""

    type: Literal["detect"]
    layout: Literal["auto", "ssd", "yolo_v8", "yolo_v5"] = Field(
        "auto", description="Output layout; auto detects it from the output shapes and fails "
        "at start-up when they are ambiguous.")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Drop detections scoring less.")
    max_detections: int = Field(20, ge=1, le=1000,
                                description="Report at most this many, best first.")
    classes: list[int | str] | None = Field(
        None, min_length=1, description="Allow-list: class indices or labels; others are "
        "dropped. None: every class.")
    region: list[tuple[UnitInterval, UnitInterval]] | None = Field(
        None, min_length=3, description="Region of interest: a polygon of [x, y] points in "
        "normalised frame coordinates; a detection is kept when its box centre is inside.")
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0, description="YOLO: non-maximum "
                                 "suppression overlap (SSD models suppress inside the model).")
    class_agnostic_nms: bool = Field(False, description="YOLO: suppress overlapping boxes of "
                                     "different classes too (default: per class).")
    box_units: Literal["auto", "pixels", "normalised"] = Field(
        "auto", description="YOLO: cx, cy, w, h in model-input pixels or normalised to 0..1; "
        "auto tells them apart from the output's range.")
    label_offset: int = Field(0, ge=-1000, le=1000, description="Class i is named by label "
                              "i + label_offset (e.g. 1 for label maps starting with '???').")


class ValuesTaskBase(Strict):
    names: list[str] | None = Field(
        None, min_length=1, description="Names of the output values in order; default the "
        "labels, else the value's index.")
    threshold: float | dict[str, float] | None = Field(
        None, description="A value at or above it is 'above' (one number for every value, or "
        "per name); crossing it is what change events report.")


class RegressTask(ValuesTaskBase):
    """Named, dequantized output values (e.g. a temperature, a count, a pose angle)."""

    type: Literal["regress"]


class AnomalyTask(ValuesTaskBase):
    """Anomaly scores: named values plus ``anomalous`` when any reached its threshold."""

    type: Literal["anomaly"]


class RawTask(Strict):
    """Every output tensor, dequantized, as nested lists (for anything else)."""

    type: Literal["raw"]
    decimals: int = Field(6, ge=0, le=9, description="Rounding of the published values.")


TaskConfig = Annotated[ClassifyTask | DetectTask | RegressTask | AnomalyTask | RawTask,
                       Field(discriminator="type")]


class EventsConfig(Strict):
    """Publish every result, or only changes of the pipeline's state (docs/detection.md)."""

    mode: Literal["every", "change"] = Field(
        "every", description="every: each result on the predictions topic; change: a result "
        "on the events topic when the state changes (top class, objects present, values "
        "above their threshold).")
    debounce_frames: int = Field(1, ge=1, le=100_000, description="A new state counts once "
                                 "this many consecutive results show it...")
    debounce_s: float = Field(0.0, ge=0.0, le=86_400, description="...and it lasted this "
                              "long (capture time of its first to its latest result).")
    keep_predictions: bool = Field(False, description="change mode: also publish every "
                                   "result on the predictions topic.")
    topic: str | None = Field(None, description="Default {topic_prefix}/{device_id}/"
                              "{pipeline}/events.")


class SnapshotConfig(Strict):
    """Annotated JPEG of the frame, published retained outside the outbox."""

    min_interval_s: float = Field(10.0, ge=0.0, description="At most one snapshot this often.")
    max_bytes: int = Field(256 * 1024, ge=4096, le=16 * 1024 * 1024, description="Re-encoded "
                           "at lower quality, then smaller, until it fits.")
    quality: int = Field(85, ge=10, le=100, description="JPEG quality to start from.")
    max_width: int | None = Field(None, ge=32, le=8192, description="Scale wider frames down.")
    topic: str | None = Field(None, description="Default {topic_prefix}/{device_id}/"
                              "{pipeline}/snapshot.")


class NormalizeConfig(Strict):
    """Per-channel normalisation: (value - mean) / std, or min..max mapped to 0..1."""

    mean: list[float] | None = None
    std: list[float] | None = None
    min: list[float] | None = None
    max: list[float] | None = None

    @model_validator(mode="after")
    def _one_pair(self) -> NormalizeConfig:
        standard = self.mean is not None or self.std is not None
        span = self.min is not None or self.max is not None
        if standard == span:
            raise ValueError("give mean and std, or min and max")
        low, width = self.mean_std()
        if len(low) != len(width):
            raise ValueError("the two lists need the same length")
        if any(w == 0 for w in width):
            raise ValueError("std must be non-zero and max must differ from min")
        return self

    def mean_std(self) -> tuple[list[float], list[float]]:
        """(mean, std) such that (value - mean) / std is the normalised value."""
        if self.min is not None or self.max is not None:
            low, high = self.min or [], self.max or []
            return low, [h - lo for lo, h in zip(low, high, strict=False)]
        return self.mean or [], self.std or []


class WindowConfig(Strict):
    """Sensor pipelines: how samples become model inputs (docs/sensors.md)."""

    samples: int = Field(ge=2, le=1_000_000, description="Samples per window: the model "
                         "input's length.")
    hop: int | None = Field(None, ge=1, description="Samples from one window's start to the "
                            "next; default: samples (no overlap). samples/2 = 50 % overlap.")
    rate_hz: float | None = Field(None, gt=0, description="Nominal sample rate; a window whose "
                                  "measured rate is off by more than rate_tolerance is "
                                  "rejected and counted.")
    rate_tolerance: float = Field(0.05, gt=0, lt=1, description="Relative rate error allowed.")
    max_gap_s: float | None = Field(
        None, gt=0, description="Largest time step between samples; a larger step, or time "
        "going backwards, drops the partial window (counted). Default: 10 sample periods when "
        "rate_hz is set, else no check.")
    normalize: NormalizeConfig | None = Field(None, description="Default: values as they are.")


class OutputConfig(Strict):
    topic: str | None = Field(
        None, description="Predictions topic; default {topic_prefix}/{device_id}/{pipeline}/"
        "predictions.")
    qos: Literal[0, 1, 2] | None = Field(None, description="Overrides mqtt.qos for this pipeline.")
    aggregate: int = Field(1, ge=1, le=10_000, description="Publish one message per this many "
                           "results, each result under 'results' (for high window rates).")


class PipelineConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    source: SourceConfig
    model: ModelConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    window: WindowConfig | None = Field(None, description="Sensor sources only: windowing and "
                                        "normalisation.")
    task: TaskConfig = Field(default_factory=lambda: ClassifyTask(type="classify"))
    output: OutputConfig = Field(default_factory=OutputConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    snapshot: SnapshotConfig | None = Field(
        None, description="Publish an annotated JPEG on events (every result in mode every), "
        "rate-limited; absent: no snapshots.")

    @model_validator(mode="after")
    def _events_and_snapshot_fit(self) -> PipelineConfig:
        if isinstance(self.source, SENSOR_SOURCES) and (
                self.snapshot is not None or isinstance(self.task, DetectTask)):
            what = "snapshot" if self.snapshot is not None else "task detect"
            raise ValueError(f"{what} needs image frames; source '{self.source.type}' "
                             "delivers sensor windows")
        if self.events.mode != "change":
            return self
        task = self.task
        if isinstance(task, RawTask):
            raise ValueError("events.mode change needs a task with a state to compare "
                             "(classify, detect, regress, anomaly); raw has none")
        if isinstance(task, ValuesTaskBase) and task.threshold is None:
            raise ValueError(f"events.mode change on task {task.type} needs task.threshold "
                             "(the events report values crossing it)")
        return self

    @model_validator(mode="after")
    def _window_fits_source(self) -> PipelineConfig:
        source = self.source
        if not isinstance(source, SENSOR_SOURCES):
            if self.window is not None:
                raise ValueError(f"window applies to sensor sources; source '{source.type}' "
                                 "delivers frames")
            return self
        if self.window is None:
            raise ValueError(f"sensor source '{source.type}' needs a window section "
                             "(samples, hop, ...)")
        if "preprocess" in self.model_fields_set:
            raise ValueError("preprocess applies to frames; sensor pipelines normalise in "
                             "window.normalize")
        channels = len(source.channel_names())
        if self.window.normalize is not None:
            mean, _ = self.window.normalize.mean_std()
            if len(mean) not in (1, channels):
                raise ValueError(f"window.normalize has {len(mean)} values per list; the "
                                 f"source has {channels} channel(s): give 1 value, or one "
                                 "per channel")
        return self

    def sensor_channels(self) -> list[str]:
        """Channel names of a sensor source, in model order (empty for frame sources)."""
        source = self.source
        return source.channel_names() if isinstance(source, SENSOR_SOURCES) else []

    def fps_limit(self) -> float | None:
        """Frames (or windows) per second the source delivers at most, when known: a frame
        source's fps cap; a sensor pipeline's window rate, sample rate / hop (health and
        the watchdog judge stalls against it)."""
        source, window = self.source, self.window
        if not isinstance(source, SENSOR_SOURCES):
            return source.fps
        rate = window.rate_hz if window is not None else None
        if rate is None and isinstance(source, IioSource | SyntheticSensorSource):
            rate = source.rate_hz
        if rate is None or window is None:
            return None
        return rate / (window.hop or window.samples)


# --- MQTT, outbox, daemon ---------------------------------------------------------------


class TlsConfig(Strict):
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    version: Literal["tlsv1.2", "tlsv1.3"] | None = None
    insecure: bool = Field(False, description="Skip host name verification (testing only).")


class MqttConfig(Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, description="Default: edge-runtime-{device_id}.")
    keepalive_s: int = Field(30, ge=5, le=3600)
    qos: Literal[0, 1, 2] = Field(1, description="QoS 0 may lose messages; 1 and 2 do not.")
    username: str | None = None
    password: str | None = Field(None, description="Use ${ENV_VAR}, or password_file.")
    password_file: ConfigPath | None = None
    topic_prefix: str = Field("edge", min_length=1)
    tls: TlsConfig | None = None
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if any(c in self.topic_prefix for c in "#+"):
            raise ValueError("topic_prefix must not contain MQTT wildcards")
        return self


class OutboxConfig(Strict):
    max_messages: int = Field(1_000_000, ge=10)
    max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024)
    drop_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    max_inflight: int = Field(100, ge=1, le=65535,
                              description="Unacknowledged publishes allowed at once (never "
                              "more than the broker's Receive Maximum).")
    sync: Literal["normal", "full"] = Field(
        "normal", description="SQLite synchronous mode: normal survives crashes of the "
        "process; full also survives power loss, at the cost of an fsync per message.")


class HealthConfig(Strict):
    enabled: bool = Field(True, description="Serve /healthz and /metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Address the health endpoint binds to; "
                      "0.0.0.0 exposes it to the network.")
    port: int = Field(DEFAULT_HEALTH_PORT, ge=1, le=65535)
    stats_interval_s: float = Field(
        30.0, ge=0, description="Publish the health summary retained on "
        "{topic_prefix}/{device_id}/stats this often; 0 turns it off.")
    stall_after_s: float = Field(
        30.0, gt=0, description="A pipeline whose source is online but that produced no "
        "prediction for this long (or 3 frame periods of a slower source) is unhealthy.")
    source_offline_grace_s: float = Field(
        60.0, ge=0, description="A source offline this long makes its pipeline unhealthy "
        "(degraded before).")


class Config(Strict):
    device_id: str = Field(default_factory=socket.gethostname, pattern=NAME_PATTERN,
                           description="Device name used in topics; default the host name.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: ConfigPath = Field(DEFAULT_STATE_DIR,
                                  description="Where the outbox and sequence numbers live.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    stop_timeout_s: float = Field(
        10.0, ge=1.0, le=600.0, description="On SIGTERM: time for pipelines to finish and "
        "for unacknowledged messages to be acknowledged before exiting (keep it below "
        "systemd's TimeoutStopSec).")
    pipelines: list[PipelineConfig] = Field(min_length=1)

    @field_validator("pipelines")
    @classmethod
    def _unique_names(cls, value: list[PipelineConfig]) -> list[PipelineConfig]:
        names = [p.name for p in value]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"pipeline names must be unique: {', '.join(duplicated)}")
        return value

    @model_validator(mode="after")
    def _stall_below_health(self) -> Config:
        for i, pipeline in enumerate(self.pipelines):
            source = pipeline.source
            if (isinstance(source, StreamSourceBase)
                    and source.stall_timeout_s >= self.health.stall_after_s):
                raise ValueError(
                    f"pipelines.{i}.source.stall_timeout_s ({source.stall_timeout_s:g} s) must "
                    f"be below health.stall_after_s ({self.health.stall_after_s:g} s), or a "
                    "stalled stream is reported as a stuck pipeline instead of an offline "
                    "source")
        return self

    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-runtime-{self.device_id}"

    def predictions_topic(self, pipeline: PipelineConfig) -> str:
        return pipeline.output.topic or (
            f"{self.mqtt.topic_prefix}/{self.device_id}/{pipeline.name}/predictions")

    def events_topic(self, pipeline: PipelineConfig) -> str:
        return pipeline.events.topic or (
            f"{self.mqtt.topic_prefix}/{self.device_id}/{pipeline.name}/events")

    def snapshot_topic(self, pipeline: PipelineConfig) -> str:
        topic = pipeline.snapshot.topic if pipeline.snapshot is not None else None
        return topic or f"{self.mqtt.topic_prefix}/{self.device_id}/{pipeline.name}/snapshot"

    def status_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}/status"

    def stats_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}/stats"

    def source_topic(self, pipeline: str) -> str:
        """Retained online/offline state of a pipeline's source (docs/streams.md)."""
        return f"{self.mqtt.topic_prefix}/{self.device_id}/{pipeline}/source"


def variant_tags() -> tuple[frozenset[str], frozenset[str]]:
    """(every ``type`` value of a discriminated union, the keys holding such unions).

    pydantic puts the selected variant's tag into error locations; the loader drops it so
    errors name the YAML path.
    """
    tags: set[str] = set()
    parents: set[str] = set()

    def walk(model: type[BaseModel]) -> None:
        for name, info in model.model_fields.items():
            for arg in get_args(info.annotation) or (info.annotation,):
                members = get_args(arg) if get_origin(arg) is Union or isinstance(
                    arg, UnionType) else (arg,)
                for member in members:
                    if isinstance(member, type) and issubclass(member, BaseModel):
                        type_field = member.model_fields.get("type")
                        if type_field is not None:
                            tags.update(str(v) for v in get_args(type_field.annotation))
                            parents.add(name)
                        if member is not model:
                            walk(member)

    walk(Config)
    return frozenset(tags), frozenset(parents)


def schema_defaults() -> dict[str, Any]:
    """The JSON schema, for documentation."""
    return Config.model_json_schema()
