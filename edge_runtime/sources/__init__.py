"""Where frames enter: cameras, video files, image folders, MJPEG pipes, synthetic patterns."""

from __future__ import annotations

from edge_runtime.config.schema import (
    CameraSource,
    ImagesSource,
    PipeSource,
    SourceConfig,
    SyntheticSource,
    VideoSource,
)
from edge_runtime.sources.base import FrameSource, Pacer
from edge_runtime.sources.images import ImageFolderSource
from edge_runtime.sources.opencv import CaptureSource
from edge_runtime.sources.pipe import MjpegPipeSource
from edge_runtime.sources.synthetic import SyntheticSource as SyntheticFrames


def build_source(config: SourceConfig) -> FrameSource:
    """The FrameSource for one validated source config."""
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
    raise TypeError(f"no source for {type(config).__name__}")


__all__ = ["FrameSource", "Pacer", "build_source"]
