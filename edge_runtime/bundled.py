"""Locating the bundled demo (models, media, configs) in a wheel or a source checkout."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.errors import InputError

DEMO_CONFIG = "demo.yaml"


def models_dir() -> Path:
    """``models/`` of a source checkout, or the copy packed into the wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_bundled" / "models", package.parent / "models"):
        if (candidate / DEMO_CONFIG).is_file():
            return candidate
    raise InputError("the bundled demo (models/demo.yaml) is not installed",
                     hint="reinstall edge-runtime, or pass --config FILE")


def demo_config() -> Path:
    return models_dir() / DEMO_CONFIG
