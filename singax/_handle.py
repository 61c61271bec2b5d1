"""Mutable handles on immutable jax arrays, and the log that Model.compile reads.

Every Tensor (and every device's random key) is a `Handle`: `.data` is a
jax.Array that in-place methods rebind. While a `StateLog` is active (during
Model.compile's traces) every read and write of a handle that existed before
the trace began is recorded, so the compiled step knows exactly which arrays
are its state without the user declaring them.
"""
from __future__ import annotations

import itertools
from typing import Any

import jax

_serial = itertools.count()


class StateLog:
    """Records the handles a traced step touches, and restores them afterwards."""

    active: "StateLog | None" = None

    def __init__(self, first_serial: int):
        self.first_serial = first_serial
        self.read: dict[int, Handle] = {}      # pre-existing handles read
        self.written: dict[int, Handle] = {}   # pre-existing or concretely-created handles written
        self.original: dict[int, Any] = {}    # id(handle) -> value before the first write
        self.guards: list = []   # traced bools: this step's updates apply only where all are true

    def on_read(self, handle: "Handle") -> None:
        if handle._serial < self.first_serial:
            self.read.setdefault(id(handle), handle)

    def on_write(self, handle: "Handle", value: Any) -> None:
        key = id(handle)
        if key in self.original:
            return
        old = handle.__dict__.get("_data")
        # a pre-existing handle; or a handle created during the trace with a concrete value
        # (an optimizer slot, a lazily created parameter) that the trace now updates. Concrete
        # writes to new handles (creating and initialising them) are real and stay.
        if handle._serial < self.first_serial or (
                is_tracer(value) and old is not None and not is_tracer(old)):
            self.original[key] = old
            self.written[key] = handle

    def restore(self) -> None:
        for key, handle in self.written.items():
            handle.__dict__["_data"] = self.original[key]

    def __enter__(self) -> "StateLog":
        self._outer = StateLog.active
        StateLog.active = self
        return self

    def __exit__(self, *exc) -> None:
        StateLog.active = self._outer


def is_tracer(x: Any) -> bool:
    """True for a value being traced (inside jit, grad or a compiled step)."""
    return isinstance(x, jax.core.Tracer)


# id(handle) -> its value before the running compiled-step trace replaced it with a tracer
PRETRACE: dict[int, Any] = {}


def concrete(handle: "Handle"):
    """The handle's concrete array, also while a compiled step is being traced (state
    made from a parameter's value, e.g. float32 master weights, needs it)."""
    data = handle.__dict__["_data"]
    if not is_tracer(data):
        return data
    if id(handle) in PRETRACE:
        return PRETRACE[id(handle)]
    raise RuntimeError("singax: a value needed to create new state is only known inside the "
                       "compiled step; run one eager step (or Model.compile) first")


def next_serial() -> int:
    return next(_serial)


class Handle:
    """A mutable reference to a jax.Array (`.data`)."""

    def __init__(self, data: Any = None):
        self._serial = next(_serial)
        self.__dict__["_data"] = data

    @property
    def data(self):
        log = StateLog.active
        if log is not None:
            log.on_read(self)
        return self.__dict__["_data"]

    @data.setter
    def data(self, value) -> None:
        log = StateLog.active
        if log is not None:
            log.on_write(self, value)
        self.__dict__["_data"] = value
