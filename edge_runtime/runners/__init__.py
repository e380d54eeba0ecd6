"""Model runners: interpreter backends behind the ``ModelRunner`` seam."""

from edge_runtime.runners.backends import Backend, load_backend
from edge_runtime.runners.interpreter import ModelRunner, TFLiteRunner
from edge_runtime.runners.model_file import CorruptModelError, ModelFile, read_model

__all__ = ["Backend", "CorruptModelError", "ModelFile", "ModelRunner", "TFLiteRunner",
           "load_backend", "read_model"]
