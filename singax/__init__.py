"""singax: Apache SINGA's Python deep-learning API on JAX."""
__version__ = "0.1.0"

from . import device, tensor, autograd, initializer, layer, opt, model, utils, data, snapshot, dist  # noqa: E402,F401
from .compat import install_as_singa  # noqa: E402,F401
