"""`import singa` in a worker process that a `singax run` script started with the
spawn or forkserver method: registers singax under SINGA's name, as `singax run`
did in the parent (its folder is on the `sys.path` the workers inherit)."""
import sys

del sys.modules[__name__]
from singax.compat import install_as_singa  # noqa: E402

install_as_singa()
