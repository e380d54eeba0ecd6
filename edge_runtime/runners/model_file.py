"""Reading a .tflite file safely: existence, size, flatbuffer identifier, digest."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import InputError

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at byte offset 4
IDENTIFIER_OFFSET = 4
MIN_MODEL_BYTES = 16
MAX_MODEL_BYTES = 2 * 1024**3  # flatbuffers cannot address more
# Field numbers in the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs)
MODEL_OPERATOR_CODES_FIELD = 1  # Model.operator_codes: [OperatorCode]
OPERATOR_CODE_CUSTOM_FIELD = 1  # OperatorCode.custom_code: string


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


def custom_operator_codes(content: bytes) -> tuple[str, ...] | None:
    """The custom operator names a model declares (e.g. ``edgetpu-custom-op``), in order.

    Read straight from the flatbuffer so it works for models the CPU interpreter cannot
    load and without the schema module (tflite-runtime does not ship it). None when the
    tables point outside the file: loading it then fails with the interpreter's own error.
    """
    try:
        model = _table(content, _u32(content, 0))
        names = []
        for position in _field_vector(content, model, MODEL_OPERATOR_CODES_FIELD):
            custom = _field_string(content, _table(content, position), OPERATOR_CODE_CUSTOM_FIELD)
            if custom is not None:
                names.append(custom)
        return tuple(names)
    except (struct.error, IndexError, UnicodeDecodeError):
        return None


# --- the few flatbuffer reads custom_operator_codes needs ---------------------------------
# A table starts with an int32 offset back to its vtable; the vtable lists uint16 field
# offsets after two uint16 sizes; vectors and strings are reached through a uint32 offset
# relative to where that offset is stored and start with a uint32 length.


def _u32(content: bytes, position: int) -> int:
    return int(struct.unpack_from("<I", content, position)[0])


def _table(content: bytes, position: int) -> tuple[int, int]:
    """(table position, vtable position)."""
    vtable = position - int(struct.unpack_from("<i", content, position)[0])
    return position, vtable


def _field_position(content: bytes, table: tuple[int, int], field: int) -> int | None:
    position, vtable = table
    vtable_size = int(struct.unpack_from("<H", content, vtable)[0])
    slot = 4 + 2 * field
    if slot + 2 > vtable_size:
        return None
    offset = int(struct.unpack_from("<H", content, vtable + slot)[0])
    return position + offset if offset else None


def _field_vector(content: bytes, table: tuple[int, int], field: int) -> list[int]:
    """Positions of the tables in a vector-of-tables field (empty when absent)."""
    where = _field_position(content, table, field)
    if where is None:
        return []
    start = where + _u32(content, where)
    count = _u32(content, start)
    slots = (start + 4 + 4 * i for i in range(count))
    return [slot + _u32(content, slot) for slot in slots]


def _field_string(content: bytes, table: tuple[int, int], field: int) -> str | None:
    where = _field_position(content, table, field)
    if where is None:
        return None
    start = where + _u32(content, where)
    length = _u32(content, start)
    if start + 4 + length > len(content):
        raise IndexError("string runs past the end of the file")
    return content[start + 4:start + 4 + length].decode("utf-8")
