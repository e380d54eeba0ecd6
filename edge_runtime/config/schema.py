"""The configuration schema: pydantic v2 models, validated once at start-up.

Every model forbids unknown keys; variants (source, task) are selected by ``type``.
Relative paths are resolved against the directory of the config file (passed in the
validation context as ``base_dir``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe inside an MQTT topic level
DEFAULT_STATE_DIR = Path("/var/lib/edge-runtime")
DEFAULT_HEALTH_PORT = 9473  # /healthz and /metrics on 127.0.0.1


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


SourceConfig = Annotated[
    CameraSource | VideoSource | ImagesSource | SyntheticSource | PipeSource,
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


TaskConfig = Annotated[ClassifyTask, Field(discriminator="type")]


class OutputConfig(Strict):
    topic: str | None = Field(
        None, description="Predictions topic; default {topic_prefix}/{device_id}/{pipeline}/"
        "predictions.")
    qos: Literal[0, 1, 2] | None = Field(None, description="Overrides mqtt.qos for this pipeline.")


class PipelineConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    source: SourceConfig
    model: ModelConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    task: TaskConfig = Field(default_factory=lambda: ClassifyTask(type="classify"))
    output: OutputConfig = Field(default_factory=OutputConfig)


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
                              description="Unacknowledged publishes allowed at once.")


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
    pipelines: list[PipelineConfig] = Field(min_length=1)

    @field_validator("pipelines")
    @classmethod
    def _unique_names(cls, value: list[PipelineConfig]) -> list[PipelineConfig]:
        names = [p.name for p in value]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"pipeline names must be unique: {', '.join(duplicated)}")
        return value

    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-runtime-{self.device_id}"

    def predictions_topic(self, pipeline: PipelineConfig) -> str:
        return pipeline.output.topic or (
            f"{self.mqtt.topic_prefix}/{self.device_id}/{pipeline.name}/predictions")

    def status_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}/status"

    def stats_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}/stats"


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
