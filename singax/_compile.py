"""Turn an imperative singax function into one compiled XLA program.

`GraphFunction(fn)` calls `fn` (e.g. a model's `train_one_batch`) with its Tensor
arguments holding tracers, so the whole step — forward, tape, backward,
optimizer updates, BatchNorm statistics, random keys — is traced into one
`step(state, inputs) -> (new_state, outputs)`. The state is discovered, not
declared: every handle that existed before the trace and is read or written
during it (see `_handle.StateLog`). The step is compiled with the state buffers
donated. The state handles are bound to the step's `StateCells`: they read and write
their arrays in one list, which a call passes to the program and replaces with the
program's new state, so a call's host work does not grow with the number of state
tensors, and values the user writes between steps are what the next step reads.
A new trace happens only when the Tensor arguments' shapes/dtypes or the
non-Tensor arguments change.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from ._handle import PRETRACE, Handle, StateCells, StateLog, next_serial
from ._messages import MSG_VALUE_IN_TRACE
from .tensor._tensor import Tensor, _wrap

log = logging.getLogger("singax.compile")

# a trace that meets state it did not know is redone with that state, at most this often
MAX_TRACES = 4

_VALUE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                 jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _is_tensor(x: Any) -> bool:
    return isinstance(x, Tensor)


def _strong(x):
    """Drop JAX's weak type so a state array keeps one signature across steps."""
    return lax.convert_element_type(x, x.dtype) if getattr(x, "weak_type", False) else x


def _input_key(x: Tensor) -> tuple:
    """What a Tensor argument contributes to a step's input signature."""
    a = x.__dict__["_data"]
    return ("T", a.shape, a.dtype, x.requires_grad, x.stores_grad)


def _flat_signature(args: tuple) -> tuple[list, tuple] | None:
    """(Tensor arguments, input signature) of positional arguments that hold no
    containers; None when one does (the caller then walks the pytree)."""
    inputs, signature = [], []
    for x in args:
        if isinstance(x, Tensor):
            inputs.append(x)
            signature.append(_input_key(x))
        elif isinstance(x, (list, tuple, dict)):
            return None
        else:
            signature.append(_static_key(x))
    return inputs, tuple(signature)


def _static_key(leaf: Any) -> Any:
    try:
        hash(leaf)
        return leaf
    except TypeError:
        return ("unhashable", type(leaf).__name__, repr(leaf))


class _Entry:
    """One compiled step for one input signature."""

    def __init__(self, state: list[Handle], compiled: Any, out_tree: Any, out_static: list, mesh: Any,
                 scan: bool):
        self.state, self.compiled, self.out_tree, self.out_static = state, compiled, out_tree, out_static
        self.mesh, self.scan = mesh, scan   # data-parallel mesh (singax.dist) or None; K-step mode
        self.cells = StateCells(state)
        self.all_tensors = all(s is _TENSOR for s in out_static)


class GraphFunction:
    """Compile `fn(*args, **kwargs)` into one XLA program per input signature.

    Args:
      fn: an imperative function over singax Tensors (its Python runs only while tracing).
      donate: donate the state buffers to the step (they are replaced by the new state).
      name: used in logs and error messages.
    """

    def __init__(self, fn: Callable, donate: bool = True, name: str | None = None):
        self.fn, self.donate = fn, donate
        self.name = name or getattr(fn, "__name__", "step")
        self.cache: dict[Any, _Entry] = {}
        self.compile_count = 0     # traces that produced a compiled program
        self.trace_count = 0       # Python traces of fn (discovery traces included)
        self._known_state: list[Handle] = []

    # --- public ------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self._call(args, kwargs, scan=False)

    def scan(self, *args, **kwargs):
        """Run K steps in one dispatch: every Tensor argument carries K batches on axis 0.

        Returns the outputs of all K steps stacked on axis 0 (via `lax.scan`).
        """
        return self._call(args, kwargs, scan=True)

    def _call(self, args, kwargs, scan: bool):
        flat = _flat_signature(args) if not kwargs else None
        if flat is None:
            leaves, tree = jax.tree_util.tree_flatten((args, kwargs), is_leaf=_is_tensor)
            inputs = [x for x in leaves if _is_tensor(x)]
            signature = tuple(_input_key(x) if _is_tensor(x) else _static_key(x) for x in leaves)
        else:   # flat positional arguments (the usual `model(tx, ty, ...)`): no pytree walk
            tree, (inputs, signature) = len(args), flat
        if scan and (not inputs or len({x.shape[0] if x.shape else None for x in inputs}) != 1
                     or not inputs[0].shape):
            raise ValueError(f"{self.name}: K-step mode needs Tensor arguments with the same "
                             f"leading (step) axis; got shapes {[x.shape for x in inputs]}")
        key = (scan, tree, signature, sys.modules["singax.autograd"].training)
        entry = self.cache.get(key)
        if entry is None:
            if self.cache:
                log.info("%s: re-tracing for a new input signature %s", self.name,
                         [(x.shape, str(x.data.dtype)) for x in inputs])
            entry = self.cache[key] = self._build(args, kwargs, inputs, scan)
        return self._run(entry, inputs)

    # --- internals -----------------------------------------------------------
    def _run(self, entry: _Entry, inputs: list[Tensor]):
        cells = entry.cells
        if not cells.bound:
            cells.bind()
        input_arrays = [x.__dict__["_data"] for x in inputs]
        if entry.mesh is not None:
            from ._mesh import process_local
            state_arrays, input_arrays = _place(entry.mesh, _unique_buffers(cells.arrays, input_arrays),
                                                input_arrays, inputs, entry.scan)
            new_state, out_arrays = entry.compiled(state_arrays, input_arrays)
            out_arrays = [process_local(a) for a in out_arrays]
        else:
            try:
                new_state, out_arrays = entry.compiled(cells.arrays, input_arrays)
            except jax.errors.JaxRuntimeError as err:
                # one buffer passed twice (the user aliased two tensors): XLA refused before
                # running, nothing was donated; copy the duplicates and run again
                if "donat" not in str(err):
                    raise
                cells.arrays = _unique_buffers(cells.arrays, input_arrays)
                new_state, out_arrays = entry.compiled(cells.arrays, input_arrays)
        cells.arrays = new_state
        return self._outputs(entry, out_arrays, inputs[0].device if inputs else None)

    def _outputs(self, entry: _Entry, out_arrays: list, dev):
        if entry.all_tensors:
            leaves = [_leaf(a, dev) for a in out_arrays]
        else:
            arrays = iter(out_arrays)
            leaves = [_leaf(next(arrays), dev) if s is _TENSOR else s for s in entry.out_static]
        return jax.tree_util.tree_unflatten(entry.out_tree, leaves)

    def _step_fn(self, state: list[Handle], args, kwargs, inputs: list[Tensor], record: dict,
                 batch_groups: int = 1, platform: str | None = None):
        """The pure function that jax traces: state and inputs in, new state and outputs out."""

        def step(state_arrays, input_arrays):
            self.trace_count += 1
            saved = [(h, h.__dict__["_data"]) for h in state + inputs]
            PRETRACE.update((id(h), a) for h, a in saved)
            for h, a in zip(state, state_arrays):
                h.__dict__["_data"] = a
            for x, a in zip(inputs, input_arrays):
                x.__dict__["_data"] = a
            state_log = StateLog(next_serial(), batch_groups, platform)
            try:
                with state_log:
                    try:
                        out = self.fn(*args, **kwargs)
                    except _VALUE_ERRORS as err:
                        raise RuntimeError(MSG_VALUE_IN_TRACE.format(what=self.name)
                                           + f"\n(JAX said: {str(err).splitlines()[0]})") from None
                new_state = [_strong(h.__dict__["_data"]) for h in state]
                out_leaves, out_tree = jax.tree_util.tree_flatten(out, is_leaf=_is_tensor)
                record["out_tree"] = out_tree
                record["out_static"] = [_TENSOR if _is_tensor(x) else x for x in out_leaves]
                out_arrays = [x.__dict__["_data"] for x in out_leaves if _is_tensor(x)]
                known = {id(h) for h in state} | {id(x) for x in inputs}
                record["missed"] = [h for h in {**state_log.read, **state_log.written}.values()
                                    if id(h) not in known]
            finally:
                state_log.restore()
                for h, a in saved:
                    h.__dict__["_data"] = a
                    PRETRACE.pop(id(h), None)
            return new_state, out_arrays
        return step

    def _build(self, args, kwargs, inputs: list[Tensor], scan: bool) -> _Entry:
        from ._mesh import active_mesh
        mesh = active_mesh()
        input_ids = {id(x) for x in inputs}
        state = [h for h in self._known_state if id(h) not in input_ids]
        for _ in range(MAX_TRACES):
            if mesh is None and inputs:
                _follow_inputs(state, inputs[0].device)
            record: dict = {}
            step = self._step_fn(state, args, kwargs, inputs, record,
                                 mesh.devices.size if mesh is not None else 1, _platform(mesh, inputs))
            if scan:
                step = _scanned(step)
            state_arrays = [_strong(h.data) for h in state]
            input_arrays = [x.data for x in inputs]
            kw = {}
            if mesh is not None:
                state_arrays, input_arrays = _place(mesh, state_arrays, input_arrays, inputs, scan)
                kw = dict(in_shardings=([a.sharding for a in state_arrays], [a.sharding for a in input_arrays]))
            for h, a in zip(state, state_arrays):
                h.__dict__["_data"] = a
            jitted = jax.jit(step, donate_argnums=(0,) if self.donate else (), **kw)
            traced = jitted.trace(state_arrays, input_arrays)
            if not record["missed"]:
                break
            # state that this trace met for the first time: add it and trace again
            state = state + record["missed"]
        else:
            raise RuntimeError(f"{self.name}: the set of state tensors kept changing between traces")
        self._known_state = _merge(self._known_state, state)
        compiled = traced.lower().compile()
        self.compile_count += 1
        return _Entry(state, compiled, record["out_tree"], record["out_static"], mesh, scan)


_TENSOR = object()


def _scanned(step: Callable) -> Callable:
    """K steps of `step` in one program; inputs and outputs gain a leading K axis."""

    def many(state_arrays, stacked_inputs):
        return lax.scan(lambda carry, inputs: step(carry, inputs), state_arrays, stacked_inputs)
    return many


def _follow_inputs(state: list, dev) -> None:
    """Move state kept on another device (an optimizer's counter made on the default
    device, for a model on a GPU) to the inputs' device, as an eager step does."""
    jdev = dev.jax_device
    for h in state:
        a = h.__dict__["_data"]
        if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer) and a.devices() != {jdev}:
            h.__dict__["_data"] = jax.device_put(a, jdev)
            if isinstance(h, Tensor):
                h.device = dev


def _platform(mesh, inputs: list) -> str | None:
    """The platform the step will run on: its mesh's, else its inputs' device's."""
    if mesh is not None:
        return mesh.devices.flat[0].platform
    return inputs[0].device.jax_device.platform if inputs else None


def _merge(old: list, new: list) -> list:
    seen = {id(h) for h in old}
    return old + [h for h in new if id(h) not in seen]


def _place(mesh, state_arrays: list, input_arrays: list, inputs: list, scan: bool = False):
    """Replicate the state and shard each input's batch axis over the data-parallel mesh."""
    from ._mesh import replicate, shard_batch
    state_arrays = [replicate(a, mesh) for a in state_arrays]
    if scan:  # axis 0 counts steps; the batch is axis 1
        from ._mesh import batch_sharded_axis
        return state_arrays, [batch_sharded_axis(a, mesh, 1, x.name) for a, x in zip(input_arrays, inputs)]
    return state_arrays, [shard_batch(a, mesh, x.name) for a, x in zip(input_arrays, inputs)]


def _leaf(array, dev) -> Tensor:
    """A step output: a fresh leaf Tensor (the constructor minus its device lookup)."""
    if dev is None:
        return Tensor(data=array, requires_grad=False)
    return _wrap(array, dev, requires_grad=False)


def _unique_buffers(state_arrays: list, input_arrays: list) -> list:
    """Copy arrays that appear twice, since a donated buffer may be passed only once."""
    if len({id(a) for a in state_arrays} | {id(a) for a in input_arrays}) == len(state_arrays) + len(input_arrays):
        return state_arrays
    seen = {id(a) for a in input_arrays}
    out = []
    for a in state_arrays:
        if id(a) in seen:
            a = jnp.copy(a)
        seen.add(id(a))
        out.append(a)
    return out
