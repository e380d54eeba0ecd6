"""Configuration: schema (pydantic) and loader (YAML with line numbers)."""

from edge_runtime.config.loader import load_config
from edge_runtime.config.schema import Config, PipelineConfig

__all__ = ["Config", "PipelineConfig", "load_config"]
