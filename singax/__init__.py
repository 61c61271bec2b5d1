"""singax: Apache SINGA's Python deep-learning API on JAX.

The package is layered; a module imports only from its own layer or below
(tests/test_layering.py keeps it so):

    6  singax (this file), compat, singa_wrap, _as_singa, cli
                                         SINGA's names wired where SINGA has them
    5  dist, _launch, sonnx, snapshot, data, image_tool, utils
    4  model, _compile                   one compiled step per model
    3  layer/, opt/, initializer, _mixed
    2  autograd/                         the tape (_tape) and the operators
    1  tensor/, _ctensor                 _engine < _tensor < _functions, under the face
    0  _handle, device, _mesh (the data-parallel mesh), _fork, _safe_npz, _messages, _version

One edge points up, and it is the only import cycle: a Tensor's `creator` is the
tape's leaf operator, `autograd._tape.Dummy`, looked up by `tensor._tensor` on
first use (`_dummy_class`).
"""
from ._version import __version__
from . import device, tensor, autograd, initializer, layer, opt, model, utils, data, snapshot, dist  # noqa: F401
from .compat import install_as_singa  # noqa: F401

# SINGA-2 layer names that SINGA also exports from `autograd`, and SINGA's `opt.DistOpt`:
# singax keeps them in the layer above (layer, dist) and wires them here, outside `__all__`.
SINGA_AUTOGRAD_LAYERS = ("Layer", "Linear", "Conv2d", "SeparableConv2d", "BatchNorm2d", "Pooling2d",
                         "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM")
for _name in SINGA_AUTOGRAD_LAYERS:
    setattr(autograd, _name, getattr(layer, _name))
opt.DistOpt = dist.DistOpt
del _name
