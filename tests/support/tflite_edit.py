"""Edit .tflite models for tests: embed a labels file, reorder the outputs.

Labels go in the way the TFLite Support metadata writers put them: a ``ModelMetadata``
flatbuffer (tensorflow_lite_support/metadata/metadata_schema.fbs, file identifier M001) in a
new model buffer referenced by a metadata entry named TFLITE_METADATA; the labels file
itself zipped onto the end of the model. Built with the flatbuffers library and the TFLite
schema module of ai-edge-litert, independently of the runtime's reader.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any, Literal

# AssociatedFileType
DESCRIPTIONS = 1
TENSOR_AXIS_LABELS = 2
TENSOR_VALUE_LABELS = 3
# field counts of the tables written here (metadata_schema.fbs)
ASSOCIATED_FILE_FIELDS = 4  # name, description, type, locale
TENSOR_METADATA_FIELDS = 7  # name, description, dimension_names, content, process_units,
#                             stats, associated_files
SUBGRAPH_METADATA_FIELDS = 9
MODEL_METADATA_FIELDS = 8

Place = Literal["output", "subgraph", "model"]


def _associated_files(builder: Any, name: str, file_type: int) -> int:
    name_offset = builder.CreateString(name)
    description = builder.CreateString("labels, one per line")
    builder.StartObject(ASSOCIATED_FILE_FIELDS)
    builder.PrependUOffsetTRelativeSlot(0, name_offset, 0)
    builder.PrependUOffsetTRelativeSlot(1, description, 0)
    builder.PrependInt8Slot(2, file_type, 0)
    file_offset = builder.EndObject()
    builder.StartVector(4, 1, 4)
    builder.PrependUOffsetTRelative(file_offset)
    return int(builder.EndVector())


def _vector(builder: Any, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def model_metadata(outputs: int, file_name: str, file_type: int, place: Place,
                   output_index: int = 0) -> bytes:
    """A ModelMetadata flatbuffer naming ``file_name`` as an associated file at ``place``."""
    import flatbuffers  # type: ignore[import-untyped]  # lazily: not in the tflite-runtime env

    builder = flatbuffers.Builder(1024)
    tensors = []
    for i in range(outputs):
        files = (_associated_files(builder, file_name, file_type)
                 if place == "output" and i == output_index else None)
        tensor_name = builder.CreateString(f"output_{i}")
        builder.StartObject(TENSOR_METADATA_FIELDS)
        builder.PrependUOffsetTRelativeSlot(0, tensor_name, 0)
        if files is not None:
            builder.PrependUOffsetTRelativeSlot(6, files, 0)
        tensors.append(builder.EndObject())
    output_vector = _vector(builder, tensors)
    subgraph_files = (_associated_files(builder, file_name, file_type)
                      if place == "subgraph" else None)
    builder.StartObject(SUBGRAPH_METADATA_FIELDS)
    builder.PrependUOffsetTRelativeSlot(3, output_vector, 0)
    if subgraph_files is not None:
        builder.PrependUOffsetTRelativeSlot(4, subgraph_files, 0)
    subgraph = builder.EndObject()
    subgraphs = _vector(builder, [subgraph])
    model_files = _associated_files(builder, file_name, file_type) if place == "model" else None
    name = builder.CreateString("test model")
    builder.StartObject(MODEL_METADATA_FIELDS)
    builder.PrependUOffsetTRelativeSlot(0, name, 0)
    builder.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    if model_files is not None:
        builder.PrependUOffsetTRelativeSlot(6, model_files, 0)
    root = builder.EndObject()
    builder.Finish(root, file_identifier=b"M001")
    return bytes(builder.Output())


def with_embedded_labels(model: bytes, labels: list[str], *, file_name: str = "labels.txt",
                         file_type: int = TENSOR_AXIS_LABELS, place: Place = "output",
                         output_index: int = 0) -> bytes:
    """``model`` with TFLite metadata naming a labels file, and that file zipped on."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    outputs = len(tree.subgraphs[0].outputs)
    buffer = schema.BufferT()
    buffer.data = list(model_metadata(outputs, file_name, file_type, place, output_index))
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = b"TFLITE_METADATA"
    entry.buffer = len(tree.buffers) - 1
    tree.metadata = [*(tree.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    packed = io.BytesIO(bytes(builder.Output()))
    with zipfile.ZipFile(packed, "a") as archive:  # appended after the flatbuffer
        archive.writestr(file_name, "\n".join(labels) + "\n")
    return packed.getvalue()


def reorder_outputs(model: bytes, order: Sequence[int]) -> bytes:
    """``model`` listing its outputs in ``order`` (positions in the current list), renamed
    ``StatefulPartitionedCall:N`` as TF2 exports name them (so names tell nothing)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    subgraph = tree.subgraphs[0]
    outputs = [int(subgraph.outputs[i]) for i in order]
    subgraph.outputs = outputs
    for position, tensor in enumerate(outputs):
        subgraph.tensors[tensor].name = f"StatefulPartitionedCall:{position}".encode()
    for signature in tree.signatureDefs or []:
        by_tensor = {entry.tensorIndex: entry for entry in signature.outputs}
        signature.outputs = [by_tensor[tensor] for tensor in outputs]
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
