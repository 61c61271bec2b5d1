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

    def __init__(self, first_serial: int, batch_groups: int = 1, platform: str | None = None):
        self.first_serial = first_serial
        # data-parallel workers the traced step's batch is split over (each normalises its own part)
        self.batch_groups = batch_groups
        self.platform = platform   # the traced step's device platform ("cpu", "gpu"...), if known
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


class StateCells:
    """The current arrays of one compiled step's state handles.

    While bound, each handle's `_data` lives at its index in `arrays` (see `BoundDict`),
    so a step replaces the whole state by swapping `arrays` for the step's output list.
    """

    __slots__ = ("handles", "arrays", "bound")

    def __init__(self, handles: list):
        self.handles = handles
        self.arrays = [None] * len(handles)
        self.bound = False

    def bind(self) -> None:
        """Make every handle read and write its `_data` here (taking it over from any other
        StateCells that held it)."""
        for i, h in enumerate(self.handles):
            d = h.__dict__
            if type(d) is BoundDict:
                value = d["_data"]
                if d.cells is not self:
                    d.cells.bound = False
                d.cells, d.index = self, i
            else:
                value = d.pop("_data")
                bound = BoundDict(d)
                bound.cells, bound.index = self, i
                h.__dict__ = bound
            self.arrays[i] = value
        self.bound = True


class BoundDict(dict):
    """The `__dict__` of a handle bound to a `StateCells`: `_data` is read from and written
    to the cells' array list; every other attribute is an ordinary entry."""

    __slots__ = ("cells", "index")

    def __missing__(self, key):
        if key == "_data":
            return self.cells.arrays[self.index]
        raise KeyError(key)

    def __setitem__(self, key, value) -> None:
        if key == "_data":
            self.cells.arrays[self.index] = value
        else:
            dict.__setitem__(self, key, value)

    def get(self, key, default=None):
        if key == "_data":
            return self.cells.arrays[self.index]
        return dict.get(self, key, default)

    def __contains__(self, key) -> bool:
        return key == "_data" or dict.__contains__(self, key)

    def keys(self):
        return [*dict.keys(self), "_data"]

    def __iter__(self):
        return iter(self.keys())

    def plain(self) -> dict:
        """An ordinary dict holding the current `_data` (what copies and pickles see)."""
        out = dict(dict.items(self))
        out["_data"] = self["_data"]
        return out

    def copy(self) -> dict:
        return self.plain()

    __copy__ = copy

    def __deepcopy__(self, memo) -> dict:
        import copy
        return copy.deepcopy(self.plain(), memo)

    def __reduce_ex__(self, protocol):
        return dict, (self.plain(),)


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
