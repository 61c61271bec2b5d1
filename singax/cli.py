"""The `singax` console command.

    singax run SCRIPT.py [ARGS...]   run a SINGA script on singax, like `python SCRIPT.py`
    singax --version                 print the singax and jax versions

`singax run` registers singax as `singa` (see `singax.compat`), then runs the
script as `__main__` with its folder first on `sys.path` and `sys.argv` set to
`[SCRIPT.py, ARGS...]`. The script's own exit code and traceback come through,
followed by a one-line hint when the failure comes from the environment (numpy
>= 2.4 refusing `'%f' % np.zeros([1])`, which SINGA's scripts do).
"""
from __future__ import annotations

import os
import runpy
import sys
import traceback
import warnings

USAGE = """usage: singax run SCRIPT.py [ARGS...]
       singax --version

Run a SINGA script unchanged on singax (JAX): `import singa` resolves to singax."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `singax` command; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if command in ("-V", "--version", "version"):
        import jax
        from ._version import __version__
        print(f"singax {__version__} (jax {jax.__version__})")
        return 0
    if command == "run":
        if not rest or rest[0] in ("-h", "--help"):
            print(USAGE, file=sys.stderr if not rest else sys.stdout)
            return 2 if not rest else 0
        return run_script(rest[0], rest[1:])
    print(f"singax: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def run_script(path: str, args: list[str]) -> int:
    """Run `path` as `__main__` with `singa` aliased to singax, as `python path args...` would.

    Returns 0 when the script finishes, 1 (after printing its traceback) when it raises,
    2 when it cannot be opened; `SystemExit` raised by the script propagates unchanged.
    """
    if not os.path.exists(path):
        print(f"singax run: can't open file {os.path.abspath(path)!r}: "
              f"[Errno 2] No such file or directory", file=sys.stderr)
        return 2
    from .compat import install_as_singa
    install_as_singa()
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):  # a folder with __main__.py, as `python folder` accepts
        folder = os.path.abspath(path)
    # SINGA scripts print 1-element loss arrays with '%f'; numpy 2.x warns about it every time
    warnings.filterwarnings("ignore", message="Conversion of an array with ndim > 0 to a scalar",
                            category=DeprecationWarning)
    sys.argv = [path, *args]
    sys.path.insert(0, folder)
    sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_as_singa"))
    try:
        # an absolute __file__, as Python (3.9+) gives the main script
        runpy.run_path(os.path.abspath(path), run_name="__main__")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _print_script_traceback()
        return 130
    except BaseException as err:  # noqa: BLE001 - report any failure as Python would
        _print_script_traceback()
        hint = _environment_hint(err)
        if hint:
            print(hint, file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
    return 0


NUMPY_SCALAR_HINT = ("singax run: numpy >= 2.4 no longer converts a 1-element array to a Python "
                     "scalar (float(a), '%f' % a, int(a)); SINGA scripts written for older numpy do. "
                     "Fix: pip install 'numpy<2.4', or index the element (a[0]).")


def _environment_hint(err: BaseException) -> str | None:
    """One line explaining a failure caused by the environment rather than the script."""
    if isinstance(err, TypeError) and "only 0-dimensional arrays can be converted to Python scalars" in str(err):
        return NUMPY_SCALAR_HINT
    return None


def _print_script_traceback() -> None:
    """Print the current exception through sys.excepthook, minus singax/runpy frames."""
    etype, value, tb = sys.exc_info()
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
    while tb is not None and (tb.tb_frame.f_code.co_filename in ours
                              or os.path.abspath(tb.tb_frame.f_code.co_filename) in ours):
        tb = tb.tb_next
    if tb is not None:
        value = value.with_traceback(tb)
    try:
        sys.excepthook(etype, value, tb)
    except Exception:  # a broken user hook must not hide the error
        traceback.print_exception(etype, value, tb)
