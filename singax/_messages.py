"""Error texts and error types shared by several layers of the package (kept here, below all of them)."""


class ValueAssertionError(ValueError, AssertionError):
    """A ValueError where SINGA asserts, so `except AssertionError` catches it too."""


class TypeAssertionError(TypeError, AssertionError):
    """A TypeError where SINGA asserts, so `except AssertionError` catches it too."""


class MissingFileAssertionError(FileNotFoundError, AssertionError):
    """A missing file where SINGA asserts that it exists."""

MSG_VALUE_IN_TRACE = (
    "{what}: a tensor's value was read inside a compiled step (graph mode). The step is "
    "traced once and run as one XLA program, so values do not exist while it is built. "
    "Read values after the call (e.g. `out, loss = model(x, y); tensor.to_numpy(loss)`), "
    "replace Python `if` on tensor values with tensor ops, or compile with use_graph=False.")
