"""The test-side table of the operators: `TESTS[name]` is the `OpTest` of the row
`autograd.OPS[name]`, one module per operator family."""
from . import binary, elementwise, losses, nn, reduce, rnn, shape
from ._spec import DOMAINS, OpTest

TESTS: dict[str, OpTest] = {}
for _family in (elementwise, binary, reduce, shape, nn, rnn, losses):
    assert not TESTS.keys() & _family.TESTS.keys(), f"{_family.__name__}: operator listed twice"
    TESTS.update(_family.TESTS)

__all__ = ["DOMAINS", "OpTest", "TESTS"]
