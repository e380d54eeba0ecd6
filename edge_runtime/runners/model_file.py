"""Reading a .tflite file safely: existence, size, flatbuffer identifier, digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import InputError

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at byte offset 4
IDENTIFIER_OFFSET = 4
MIN_MODEL_BYTES = 16
MAX_MODEL_BYTES = 2 * 1024**3  # flatbuffers cannot address more


class CorruptModelError(InputError):
    """The file exists but is not a TFLite model the interpreter can load."""


@dataclass(frozen=True)
class ModelFile:
    """A model file's bytes and identity."""

    path: Path
    content: bytes
    sha256: str

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def size(self) -> int:
        return len(self.content)


def looks_like_tflite(content: bytes) -> bool:
    """True when the bytes carry the TFLite flatbuffer identifier."""
    return (len(content) >= MIN_MODEL_BYTES
            and content[IDENTIFIER_OFFSET:IDENTIFIER_OFFSET + 4] == TFLITE_IDENTIFIER)


def describe_content(content: bytes) -> str:
    """A short guess at what a non-model file is, for the error message."""
    head = content[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a download that returned a web page?)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (run git lfs pull)"
    if not content:
        return "an empty file"
    if len(content) < MIN_MODEL_BYTES:
        return f"only {len(content)} bytes"
    return "not a TFLite flatbuffer (identifier TFL3 missing)"


def read_model(path: Path) -> ModelFile:
    """Read and sanity-check a model file; raise InputError with a clear line if it is bad."""
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise CorruptModelError(f"model {path} is {size} bytes, larger than a TFLite "
                                    "flatbuffer can be")
        content = path.read_bytes()
    except FileNotFoundError as err:
        raise InputError(f"model file {path} does not exist",
                         hint="fix model.path in the config or copy the model there") from err
    except IsADirectoryError as err:
        raise InputError(f"model path {path} is a directory, not a .tflite file") from err
    except OSError as err:
        raise InputError(f"model file {path} cannot be read: {err.strerror}") from err
    if not looks_like_tflite(content):
        raise CorruptModelError(f"model file {path} is not a TFLite model: "
                                f"{describe_content(content)}",
                                hint="replace it with a valid .tflite file")
    return ModelFile(path, content, hashlib.sha256(content).hexdigest())
