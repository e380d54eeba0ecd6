"""Reading a .tflite file safely: existence, size, flatbuffer identifier, digest; and the
few things read straight from its flatbuffer (custom operators, embedded labels)."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
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
MODEL_BUFFERS_FIELD = 4  # Model.buffers: [Buffer]
MODEL_METADATA_FIELD = 6  # Model.metadata: [Metadata]
METADATA_NAME_FIELD = 0  # Metadata.name: string
METADATA_BUFFER_FIELD = 1  # Metadata.buffer: uint (index into Model.buffers)
BUFFER_DATA_FIELD = 0  # Buffer.data: [ubyte]
BUFFER_OFFSET_FIELD = 1  # Buffer.offset: ulong (models > 2 GB keep data after the flatbuffer)
BUFFER_SIZE_FIELD = 2  # Buffer.size: ulong
# The TFLite Support metadata (tensorflow_lite_support/metadata/metadata_schema.fbs): a
# ModelMetadata flatbuffer in the buffer of the metadata entry named TFLITE_METADATA; the
# files it names (labels...) are zipped onto the end of the .tflite file.
TFLITE_METADATA_NAME = "TFLITE_METADATA"
MODEL_METADATA_SUBGRAPHS_FIELD = 3  # ModelMetadata.subgraph_metadata: [SubGraphMetadata]
MODEL_METADATA_FILES_FIELD = 6  # ModelMetadata.associated_files: [AssociatedFile]
SUBGRAPH_OUTPUTS_FIELD = 3  # SubGraphMetadata.output_tensor_metadata: [TensorMetadata]
SUBGRAPH_FILES_FIELD = 4  # SubGraphMetadata.associated_files: [AssociatedFile]
TENSOR_FILES_FIELD = 6  # TensorMetadata.associated_files: [AssociatedFile]
FILE_NAME_FIELD = 0  # AssociatedFile.name: string
FILE_TYPE_FIELD = 2  # AssociatedFile.type: AssociatedFileType (byte)
LABEL_FILE_TYPES = (2, 3)  # TENSOR_AXIS_LABELS (classifiers), TENSOR_VALUE_LABELS (detectors)


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


def embedded_labels(content: bytes) -> tuple[str, str] | None:
    """(file name, text) of the labels file a model carries in its TFLite metadata.

    The first associated file of a label type, looked for on the output tensors, then on the
    subgraph, then on the model; its content is the zip member of that name appended to the
    model. None when there is no metadata, no labels file, or it cannot be read.
    """
    try:
        metadata = _tflite_metadata(content)
        if metadata is None:
            return None
        name = _label_file_name(metadata)
        if name is None:
            return None
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return name, archive.read(name).decode("utf-8")
    except (struct.error, IndexError, UnicodeDecodeError, KeyError, zipfile.BadZipFile):
        return None


def _tflite_metadata(content: bytes) -> bytes | None:
    """The bytes of the buffer holding the TFLITE_METADATA flatbuffer, if the model has one."""
    model = _table(content, _u32(content, 0))
    for position in _field_vector(content, model, MODEL_METADATA_FIELD):
        entry = _table(content, position)
        if _field_string(content, entry, METADATA_NAME_FIELD) != TFLITE_METADATA_NAME:
            continue
        index = _field_scalar(content, entry, METADATA_BUFFER_FIELD, "<I")
        buffers = _field_vector(content, model, MODEL_BUFFERS_FIELD)
        if index is None or index >= len(buffers):
            return None
        buffer = _table(content, buffers[index])
        data = _field_bytes(content, buffer, BUFFER_DATA_FIELD)
        if data is not None:
            return data
        offset = _field_scalar(content, buffer, BUFFER_OFFSET_FIELD, "<Q")
        size = _field_scalar(content, buffer, BUFFER_SIZE_FIELD, "<Q")
        if offset is None or size is None or offset + size > len(content):
            return None
        return content[offset:offset + size]
    return None


def _label_file_name(metadata: bytes) -> str | None:
    root = _table(metadata, _u32(metadata, 0))
    holders: list[tuple[int, int]] = []
    for subgraph_at in _field_vector(metadata, root, MODEL_METADATA_SUBGRAPHS_FIELD)[:1]:
        subgraph = _table(metadata, subgraph_at)
        holders += [(at, TENSOR_FILES_FIELD)
                    for at in _field_vector(metadata, subgraph, SUBGRAPH_OUTPUTS_FIELD)]
        holders.append((subgraph_at, SUBGRAPH_FILES_FIELD))
    holders.append((root[0], MODEL_METADATA_FILES_FIELD))
    for at, field in holders:
        for file_at in _field_vector(metadata, _table(metadata, at), field):
            associated = _table(metadata, file_at)
            if _field_scalar(metadata, associated, FILE_TYPE_FIELD, "<b") in LABEL_FILE_TYPES:
                return _field_string(metadata, associated, FILE_NAME_FIELD)
    return None


# --- the few flatbuffer reads this module needs -----------------------------------------
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


def _field_scalar(content: bytes, table: tuple[int, int], field: int,
                  fmt: str) -> int | None:
    """An integer field (``fmt`` a struct format); None when absent (the schema default)."""
    where = _field_position(content, table, field)
    if where is None:
        return None
    return int(struct.unpack_from(fmt, content, where)[0])


def _field_bytes(content: bytes, table: tuple[int, int], field: int) -> bytes | None:
    """A [ubyte] vector field; None when absent or empty."""
    where = _field_position(content, table, field)
    if where is None:
        return None
    start = where + _u32(content, where)
    length = _u32(content, start)
    if start + 4 + length > len(content):
        raise IndexError("vector runs past the end of the file")
    return content[start + 4:start + 4 + length] or None


def _field_string(content: bytes, table: tuple[int, int], field: int) -> str | None:
    """A string field (stored like a [ubyte] vector); None when absent or empty."""
    data = _field_bytes(content, table, field)
    return data.decode("utf-8") if data is not None else None
