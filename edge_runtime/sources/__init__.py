"""Where frames enter: cameras, network streams (RTSP, HTTP MJPEG), video files, image
folders, MJPEG pipes, synthetic patterns, and sensor sources whose samples are cut into
windows (serial, IIO, files, MQTT, synthetic)."""

from __future__ import annotations

from edge_runtime.config.schema import (
    SENSOR_SOURCES,
    Buffered,
    CameraSource,
    FileSensorSource,
    HttpMjpegSource,
    IioSource,
    ImagesSource,
    MqttSensorSource,
    PipeSource,
    RtspSource,
    SensorSourceConfig,
    SerialSource,
    SourceConfig,
    SyntheticSource,
    VideoSource,
    WindowConfig,
)
from edge_runtime.errors import SourceError
from edge_runtime.processing.windowing import Windower
from edge_runtime.sources.base import FrameSource, Pacer, WindowedSource
from edge_runtime.sources.follow import FileReader
from edge_runtime.sources.http_mjpeg import HttpMjpegStream
from edge_runtime.sources.iio import IioReader
from edge_runtime.sources.images import ImageFolderSource
from edge_runtime.sources.mqtt_topic import MqttReader, Subscriber
from edge_runtime.sources.opencv import CaptureSource
from edge_runtime.sources.pipe import MjpegPipeSource
from edge_runtime.sources.rtsp import RtspStream
from edge_runtime.sources.sensor import SampleReader, SensorSource
from edge_runtime.sources.serial_port import SerialReader
from edge_runtime.sources.synthetic import SyntheticSource as SyntheticFrames
from edge_runtime.sources.synthetic_sensor import SyntheticSensorReader


def build_source(config: SourceConfig, *, window: WindowConfig | None = None,
                 inbound: Subscriber | None = None) -> FrameSource:
    """The FrameSource for one validated source config.

    Sensor sources need the pipeline's ``window`` section, and MQTT sources the daemon's
    broker link (``inbound``) to subscribe through.
    """
    if isinstance(config, SENSOR_SOURCES):
        if window is None:
            raise TypeError("sensor sources need the pipeline's window config")
        return build_sensor_source(config, window, inbound)
    if isinstance(config, CameraSource):
        return CaptureSource(config.device, is_file=False, fps=config.fps, width=config.width,
                             height=config.height, fourcc=config.fourcc)
    if isinstance(config, VideoSource):
        return CaptureSource(config.path, is_file=True, loop=config.loop, fps=config.fps)
    if isinstance(config, ImagesSource):
        return ImageFolderSource(config.path, loop=config.loop, fps=config.fps)
    if isinstance(config, SyntheticSource):
        return SyntheticFrames(config.width, config.height, encode=config.encode,
                               fps=config.fps, count=config.count)
    if isinstance(config, PipeSource):
        return MjpegPipeSource(config.path, fps=config.fps,
                               stall_timeout_s=config.stall_timeout_s)
    if isinstance(config, RtspSource):
        return RtspStream(config.stream_url(), transport=config.transport, fps=config.fps,
                          open_timeout_s=config.open_timeout_s,
                          stall_timeout_s=config.stall_timeout_s)
    if isinstance(config, HttpMjpegSource):
        return HttpMjpegStream(config.stream_url(), fps=config.fps,
                               open_timeout_s=config.open_timeout_s,
                               stall_timeout_s=config.stall_timeout_s)
    raise TypeError(f"no source for {type(config).__name__}")


def build_sensor_source(config: SensorSourceConfig, window: WindowConfig,
                        inbound: Subscriber | None = None) -> SensorSource:
    """A sensor source's reader, wrapped with the windowing of its pipeline."""
    reader: SampleReader
    if isinstance(config, SerialSource):
        reader = SerialReader(config)
    elif isinstance(config, FileSensorSource):
        reader = FileReader(config)
    elif isinstance(config, MqttSensorSource):
        if inbound is None:
            raise SourceError(f"MQTT topic {config.topic} can only be read by the daemon "
                              "(through its broker connection)")
        reader = MqttReader(config, inbound)
    elif isinstance(config, IioSource):
        reader = IioReader(config)
    else:
        reader = SyntheticSensorReader(config)
    windower = Windower(window.samples, len(config.channel_names()), hop=window.hop,
                        rate_hz=window.rate_hz, rate_tolerance=window.rate_tolerance,
                        max_gap_s=window.max_gap_s)
    if isinstance(config, Buffered):  # the readers that need a buffer have the setting
        return SensorSource(reader, windower, buffer_samples=config.buffer_samples)
    return SensorSource(reader, windower)


__all__ = ["FrameSource", "Pacer", "WindowedSource", "build_sensor_source", "build_source"]
