"""SINGA's `sonnx`: ONNX export (`to_onnx`) and import (`prepare`, `SONNXModel`).

Needs the optional `onnx` package (`pip install 'singax[onnx]'`); singax itself never
imports this module. Export writes opset 11; import reads opsets 11-28, and newer
ones whose operators keep a definition from those (others go through onnx's version
converter). See docs/onnx.md for the operator tables.
"""
from ._common import onnx
from .export import EXPORTERS, SingaFrontend, to_onnx
from ._importers import IMPORTERS, Imported, UnsupportedNode
from . import _import_cast, _import_nn, _import_sequence, _import_values  # noqa: F401  (fill IMPORTERS)
from .backend import (OnnxAttributes, OnnxNode, SONNXModel, SingaBackend, SingaRep, get_op, prepare,
                      run_node, supported_ops)

save = onnx.save
load = onnx.load

__all__ = ["to_onnx", "SingaFrontend", "prepare", "SingaBackend", "SingaRep", "SONNXModel", "run_node",
           "get_op", "OnnxNode", "OnnxAttributes", "Imported", "UnsupportedNode", "supported_ops",
           "save", "load", "EXPORTERS", "IMPORTERS"]
