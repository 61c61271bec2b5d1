"""Run SINGA scripts unchanged: register singax under the module name `singa`.

After `install_as_singa()`, `import singa`, `from singa import tensor`,
`import singa.autograd as autograd` and `from singa.tensor import Tensor` all give
singax's own module objects, `singa.singa_wrap` included (singax.singa_wrap, the
stand-in for SINGA's compiled module). Installing also gives jax arrays SINGA's
read-only raw-tensor queries (`GetFloatValue(n)`, `Size()`...), which SINGA code
calls on `Tensor.data`.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

from .snapshot import Snapshot  # noqa: E402,F401  (kept importable from here)

__all__ = ["install_as_singa", "Snapshot", "SUBMODULES"]

ALIAS = "singa"
# singax modules importable as `singa.<name>`; others (sonnx, ...) resolve lazily on import
SUBMODULES = ("tensor", "autograd", "layer", "model", "opt", "device", "initializer", "utils", "data",
              "snapshot", "image_tool", "singa_wrap")
MSG_OTHER_SINGA = ("install_as_singa: a different module named 'singa' is already imported "
                   "(from {where}); call install_as_singa() (or use `singax run`) before anything "
                   "imports SINGA")


# --- the alias -------------------------------------------------------------------

class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `singa.<x>[.<y>]` to the already-importable `singax.<x>[.<y>]`."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(ALIAS + "."):
            return None
        real = "singax" + fullname[len(ALIAS):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=real)

    def create_module(self, spec):
        # hand back singax's own module object, so `singa.x is singax.x`
        return importlib.import_module(spec.origin)

    def exec_module(self, module):
        pass


def _facade() -> types.ModuleType:
    singax = importlib.import_module("singax")  # by name, like the submodules below: the package imports this module
    facade = types.ModuleType(ALIAS, "singax registered under SINGA's name (see singax.compat).")
    facade.__path__ = []  # a package, so `import singa.x` goes through the finder
    facade.__spec__ = importlib.machinery.ModuleSpec(ALIAS, None, is_package=True)
    facade.__version__ = singax.__version__
    facade.__singax__ = singax

    def __getattr__(name: str):  # noqa: N807 - anything else singax exports
        try:
            return getattr(singax, name)
        except AttributeError:
            raise AttributeError(f"module 'singa' (singax) has no attribute {name!r}") from None

    facade.__getattr__ = __getattr__
    return facade


def install_as_singa() -> types.ModuleType:
    """Register singax as `singa` (with its submodules) in `sys.modules`; idempotent.

    Returns:
      the `singa` module.

    Raises:
      RuntimeError: a different `singa` (e.g. the real SINGA) is already imported.
    """
    current = sys.modules.get(ALIAS)
    if current is not None and getattr(current, "__singax__", None) is not None:
        return current
    if current is not None:
        raise RuntimeError(MSG_OTHER_SINGA.format(where=getattr(current, "__file__", None) or "unknown"))
    facade = _facade()
    from ._ctensor import attach_to_jax_arrays
    attach_to_jax_arrays()
    for name in SUBMODULES:
        module = importlib.import_module(f"singax.{name}")
        setattr(facade, name, module)
        sys.modules[f"{ALIAS}.{name}"] = module
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
    sys.modules[ALIAS] = facade
    return facade
