"""SINGA's Model: a Layer with a training step that compiles into one XLA program.

With graph mode on (the default, as in SINGA), `train_one_batch` is traced once per
input signature by `singax._compile.GraphFunction`: the user's imperative code —
forward, loss, `autograd.backward`, optimizer updates, BatchNorm statistics,
dropout keys — becomes one jitted `step(state, inputs)` with donated buffers.
`use_graph=False` runs the same code eagerly and gives the same numbers.
"""
from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import Sequence

import numpy as np

from . import autograd
from ._messages import MissingFileAssertionError, TypeAssertionError, ValueAssertionError
from ._safe_npz import open_regular, read_npz, write_npz
from ._compile import _VALUE_ERRORS, GraphFunction
from .layer import Layer
from .tensor import Tensor, from_numpy, to_numpy

__all__ = ["Model", "CheckpointExistsError"]

OPT_PREFIX = "__singax_opt__/"
AUX_BYTES_CAP = 64 << 20   # aux states may hold max(model size, this) bytes
ATTRS_BYTES_CAP = 16 << 20


class CheckpointExistsError(FileExistsError, AssertionError):
    """`save_states` refuses to overwrite a file (SINGA asserts the same)."""


def _graph_step(fn):
    """Wrap a subclass's `train_one_batch` so graph mode runs it compiled."""

    @functools.wraps(fn)
    def train_one_batch(self, *args, **kwargs):
        if self.__dict__.get("_in_trace") or not (self.graph_mode and self.training):
            return fn(self, *args, **kwargs)
        if not self.__dict__.get("_ready_for_graph"):
            # Never compiled: this first batch runs eagerly and creates the parameters.
            self._ready_for_graph = True
            return fn(self, *args, **kwargs)
        out = self._train_graph(fn)(*args, **kwargs)
        d = self.__dict__
        calls = d["_graph_calls"] = d.get("_graph_calls", 0) + 1
        if calls % self.label_check_interval == 0:
            self.check_skipped_steps(block=False)
        return out

    train_one_batch._singax_graph = True
    train_one_batch._singax_inner = fn
    return train_one_batch


def _traced(model: "Model", fn, *args, **kwargs):
    model._in_trace = True
    try:
        return fn(model, *args, **kwargs)
    finally:
        model._in_trace = False


def _abstract_forward(model: "Model", inputs: Sequence[Tensor]) -> None:
    """Run `forward` on placeholders without executing it: shapes flow through
    `jax.eval_shape` (no XLA compiles), while layers create their parameters for real
    (their `initialize` runs under `jax.ensure_compile_time_eval`)."""
    import jax
    from ._handle import StateLog, next_serial
    saved = [t.__dict__["_data"] for t in inputs]

    def run(arrays):
        for t, a in zip(inputs, arrays):
            t.__dict__["_data"] = a
        model.forward(*inputs)

    log = StateLog(next_serial())
    try:
        with log:
            jax.eval_shape(run, saved)
    finally:
        log.restore()   # nothing that existed before may keep a tracer
        for t, a in zip(inputs, saved):
            t.__dict__["_data"] = a


class Model(Layer):
    """Base class of user models (SINGA's `model.Model`).

    Subclasses define `forward` and `train_one_batch`; calling the model runs
    `train_one_batch` in training mode and `forward` in evaluation mode.
    """

    TENSOR_DICT_FILENAME = "/tensor_dict.npz"
    STATES_ATTR_FILENAME = "/states_attr.json"
    MODEL_STATE_TYPE = 0
    AUX_STATE_TYPE = 1
    label_check_interval = 32   # graph-mode calls between non-blocking skipped-step checks

    def __init__(self):
        super().__init__()
        self.training = True
        self.graph_mode = True
        self.sequential = False
        self._buffered = False
        self._results = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("train_one_batch")
        if step is not None and not getattr(step, "_singax_graph", False):
            cls.train_one_batch = _graph_step(step)

    # --- SINGA interface ---------------------------------------------------
    def compile(self, inputs: Sequence[Tensor], is_train: bool = True, use_graph: bool = False,
                sequential: bool = False) -> None:
        """Create the parameters by running `forward` on placeholder inputs, then set modes.

        Args:
          inputs: a non-empty list of Tensors shaped like a real batch.
          is_train: training mode (sets the global `autograd.training`).
          use_graph: compile `train_one_batch` (and eval-mode `forward`) into one XLA program.
          sequential: accepted for SINGA scripts; XLA schedules the program itself.

        SINGA: the placeholder forward runs with `autograd.training = False`, so it never
        updates BatchNorm statistics or draws dropout masks.
        """
        if not isinstance(inputs, (list, tuple)) or not inputs or not isinstance(inputs[0], Tensor):
            raise ValueAssertionError("Model.compile: inputs must be a non-empty list of Tensors "
                                      f"(got {type(inputs).__name__})")
        autograd.training = False
        try:
            try:
                _abstract_forward(self, inputs)
            except _VALUE_ERRORS + (RuntimeError,):
                # forward reads values (e.g. to_numpy on its input): run it for real instead
                self.forward(*inputs)
        finally:
            autograd.training = is_train
        self.training = is_train
        self.graph_mode = use_graph
        self.sequential = sequential
        self._ready_for_graph = True

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def train_one_batch(self, *inputs, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define train_one_batch")

    def check_skipped_steps(self, block: bool = True) -> None:
        """Raise ValueError if compiled steps were skipped since the last check.

        A compiled step whose labels fall outside [0, classes) of SoftMaxCrossEntropy
        keeps every parameter and optimizer state as it was (its loss is NaN). Graph mode
        calls this every `label_check_interval` steps without waiting for the device
        (`block=False`: a count still being computed is read at a later check); `eval()`
        and `save_states` call it and wait.

        SINGA: no check; the weights are updated from the NaN loss.
        """
        for o in self._optimizers():
            t = getattr(o, "skipped_steps", None)
            if t is None or not (block or t.data.is_ready()):
                continue
            n, seen = int(np.asarray(t.data)[0]), o.__dict__.get("_skipped_seen", 0)
            if n > seen:
                o._skipped_seen = n
                raise ValueError(f"{type(self).__name__}: {n - seen} compiled training step(s) had labels "
                                 f"outside [0, classes) of SoftMaxCrossEntropy; their updates were skipped "
                                 f"(parameters and optimizer state unchanged, loss NaN)")

    def train(self, mode: bool = True) -> None:
        if not mode:
            self.check_skipped_steps()
        self.training = mode
        autograd.training = mode

    def eval(self) -> None:
        self.train(False)

    def graph(self, mode: bool = True, sequential: bool = False) -> None:
        self.graph_mode = mode
        self.sequential = sequential

    def __call__(self, *inputs, **kwargs):
        if self.training:
            return self.train_one_batch(*inputs, **kwargs)
        if self.graph_mode and self.__dict__.get("_ready_for_graph"):
            graph = self.__dict__.get("_eval_graph")
            if graph is None:
                graph = self._eval_graph = GraphFunction(self.forward, name=f"{type(self).__name__}.forward")
            return graph(*inputs, **kwargs)
        return self.forward(*inputs, **kwargs)

    def train_steps(self, *inputs, **kwargs):
        """Run K training steps in one dispatch (singax extra; `lax.scan` over the steps).

        Every Tensor argument holds K batches stacked on axis 0; returns the outputs of
        `train_one_batch` for all K steps, stacked on axis 0. Same numbers as K calls.
        """
        fn = getattr(type(self).train_one_batch, "_singax_inner", None)
        if fn is None:
            raise TypeError(f"{type(self).__name__}: train_steps needs a train_one_batch method")
        if not self.__dict__.get("_ready_for_graph"):
            raise RuntimeError(f"{type(self).__name__}.train_steps: call compile() first")
        return self._train_graph(fn).scan(*inputs, **kwargs)

    def _train_graph(self, fn) -> GraphFunction:
        graphs = self.__dict__.setdefault("_graphs", {})
        graph = graphs.get(fn)
        if graph is None:
            graph = graphs[fn] = GraphFunction(functools.partial(_traced, self, fn),
                                               name=f"{type(self).__name__}.train_one_batch")
        return graph

    @property
    def compile_count(self) -> int:
        """How many programs graph mode has compiled (one per input signature)."""
        graphs = list(self.__dict__.get("_graphs", {}).values())
        if self.__dict__.get("_eval_graph") is not None:
            graphs.append(self._eval_graph)
        return sum(g.compile_count for g in graphs)

    def __get_name__(self) -> str:
        return type(self).__name__

    # --- checkpoints ---------------------------------------------------------
    def save_states(self, fpath: str, aux_states: dict | None = None) -> None:
        """Write SINGA's checkpoint zip (`tensor_dict.npz` + `states_attr.json`).

        Model states are `get_states()`; `aux_states` (name -> Tensor) are stored with
        state_type 1. singax also stores the optimizer's states (as aux entries under
        `__singax_opt__/`) so training resumes exactly; SINGA ignores them.
        The file is written atomically and never overwritten.
        """
        path = os.fspath(fpath) if isinstance(fpath, (str, os.PathLike)) else ""
        if not path or path.endswith(os.sep):
            raise ValueError(f"save_states: {fpath!r} is not a file path")
        fpath = path
        if os.path.lexists(fpath):
            raise CheckpointExistsError(f"save_states: {fpath} already exists; remove it or choose another path")
        folder = os.path.dirname(os.path.abspath(fpath))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"save_states: the folder {folder} of {fpath} does not exist")
        if aux_states is not None and not isinstance(aux_states, dict):
            raise TypeAssertionError(f"save_states: aux_states must be a dict name -> Tensor, "
                                     f"got {type(aux_states).__name__}")
        self.check_skipped_steps()
        aux_states = dict(aux_states or {})
        states = self.get_states()
        for k, v in aux_states.items():
            if not isinstance(k, str) or not k:
                raise TypeAssertionError(f"save_states: aux state names must be non-empty str, got {k!r}")
            if not isinstance(v, Tensor):
                raise TypeAssertionError(f"save_states: aux state {k!r} must be a Tensor, got {type(v).__name__}")
            if k in states or str(k).startswith(OPT_PREFIX):
                raise ValueError(f"save_states: aux state {k!r} has the name of a model or optimizer "
                                 f"state and would replace it; rename it")
        arrays, attrs = {}, {}
        for kind, states in ((self.MODEL_STATE_TYPE, states), (self.AUX_STATE_TYPE, aux_states),
                             (self.AUX_STATE_TYPE, self._optimizer_states())):
            for name, t in states.items():
                arrays[name] = to_numpy(t)
                attrs[name] = {"state_type": kind, "shape": list(t.shape), "dtype": int(t.dtype)}
        npz = io.BytesIO()
        write_npz(npz, arrays)
        fd, tmp = tempfile.mkstemp(prefix=".singax-ckpt-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(self.TENSOR_DICT_FILENAME.lstrip("/"), npz.getvalue())
                z.writestr(self.STATES_ATTR_FILENAME.lstrip("/"), json.dumps(attrs))
            if os.path.lexists(fpath):
                raise CheckpointExistsError(f"save_states: {fpath} appeared while writing; not overwritten")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; use the usual file mode
            os.replace(tmp, fpath)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load_states(self, fpath: str) -> dict:
        """Read a checkpoint written by `save_states` (singax or SINGA); return the aux states.

        Every name, shape and dtype is validated from the file's headers before any array
        is read or anything changes; on a mismatch the error lists all problems and the
        model and its optimizers are unchanged. Aux states may hold at most
        max(model size, 64 MiB) bytes in all.
        SINGA: reads any archive member and loads the model state by state.
        """
        current = self.get_states()
        arrays, attrs = _read_checkpoint(fpath, functools.partial(self._checkpoint_problems, current))
        model_arrays = {k: v for k, v in arrays.items() if _is_model_state(attrs, k)}
        aux = {k: v for k, v in arrays.items() if k not in model_arrays}
        opt_arrays = {k[len(OPT_PREFIX):]: v for k, v in aux.items() if k.startswith(OPT_PREFIX)}
        self._check_optimizer_states(opt_arrays)
        saved = [(t, t.data) for t in current.values()]
        restores = [o._saved_states() for o in self._optimizers()]
        try:
            self.set_states({k: model_arrays[k] for k in current})
            self._load_optimizer_states(opt_arrays)
        except Exception as err:
            for t, a in saved:
                t.data = a
            for restore in restores:
                restore()
            raise ValueError(f"load_states: {fpath}: {err}; the model and optimizer are unchanged") from err
        return {k: from_numpy(v) for k, v in aux.items() if not k.startswith(OPT_PREFIX)}

    def _checkpoint_problems(self, current: dict, attrs: dict, headers: dict) -> list:
        """Everything wrong with a checkpoint's headers {name: (shape, dtype)} for this model."""
        if not current:
            return [f"{type(self).__name__} has no parameters yet: call compile() (or run a forward pass) "
                    "before load_states, so the checkpoint's states have somewhere to go"]
        problems = []
        model_bytes = sum(int(np.prod(t.shape)) * np.dtype(t.data.dtype).itemsize for t in current.values())
        largest = max([int(np.prod(t.shape)) for t in current.values()] + [1])
        aux_bytes = 0
        for name, (shape, dtype) in headers.items():
            size = int(np.prod(shape, dtype=np.int64))
            if not _is_model_state(attrs, name):
                if name.startswith(OPT_PREFIX) and size > largest:
                    problems.append(f"{name}: optimizer state of shape {shape} is larger than any parameter")
                aux_bytes += size * dtype.itemsize
                continue
            t = current.get(name)
            if t is None:
                problems.append(f"{name}: not a state of this model")
            elif shape != tuple(t.shape):
                problems.append(f"{name}: checkpoint shape {shape}, model shape {t.shape}")
            elif dtype.kind != np.dtype(t.data.dtype).kind:
                problems.append(f"{name}: checkpoint dtype {dtype}, model dtype {t.data.dtype}")
        problems += [f"{name}: missing from the checkpoint" for name in current
                     if name not in headers or not _is_model_state(attrs, name)]
        cap = max(model_bytes, AUX_BYTES_CAP)
        if aux_bytes > cap:
            problems.append(f"aux and optimizer states declare {aux_bytes} bytes, more than the {cap} "
                            f"allowed for {type(self).__name__}")
        return problems

    # --- optimizer states in checkpoints ---------------------------------------
    def _optimizers(self) -> list:
        from .opt import Optimizer
        found = []
        for v in self.__dict__.values():
            inner = getattr(v, "opt", None)
            for o in (v, inner):
                if isinstance(o, Optimizer) and all(o is not f for f in found):
                    found.append(o)
        return found

    def _optimizer_states(self) -> dict:
        out = {}
        for i, o in enumerate(self._optimizers()):
            for k, v in _flatten_states(o.get_states()).items():
                out[f"{OPT_PREFIX}{i}/{k}"] = v
        return out

    def _check_optimizer_states(self, arrays: dict) -> None:
        opts = self._optimizers()
        if not opts:
            return   # e.g. loading a trained model to predict: optimizer entries are skipped
        for k in arrays:
            index, _, rest = k.partition("/")
            if not rest:
                raise ValueError(f"load_states: optimizer state {OPT_PREFIX + k!r} names no state "
                                 f"(expected {OPT_PREFIX}<optimizer>/<state>)")
            if not index.isdigit() or int(index) >= len(opts):
                raise ValueError(f"load_states: checkpoint has optimizer state {k!r} but the model has "
                                 f"{len(opts)} optimizer(s)")

    def _load_optimizer_states(self, arrays: dict) -> None:
        for i, o in enumerate(self._optimizers()):
            mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == str(i)}
            if mine:
                o.set_states(_unflatten_states(mine))


def _flatten_states(states: dict, prefix: str = "") -> dict:
    """Nested optimizer state dicts -> flat {"a/b": Tensor}; numbers become Tensors."""
    out = {}
    for k, v in states.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_states(v, key + "/"))
        elif isinstance(v, Tensor):
            out[key] = v
        else:
            out[key] = from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))
    return out


def _unflatten_states(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        parts = k.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"optimizer state {k!r} nests inside the value {p!r}")
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"optimizer state {k!r} is also a group of states")
        node[parts[-1]] = from_numpy(v)
    return out


def _is_model_state(attrs: dict, name: str) -> bool:
    entry = attrs.get(name)
    return not isinstance(entry, dict) or entry.get("state_type", Model.MODEL_STATE_TYPE) == Model.MODEL_STATE_TYPE


def _read_checkpoint(fpath: str, problems) -> tuple[dict, dict]:
    """(arrays, attrs) of a checkpoint; `problems(attrs, headers)` vets the arrays first."""
    if not os.path.exists(fpath):
        raise MissingFileAssertionError(f"load_states: no checkpoint at {fpath}")
    want = (Model.TENSOR_DICT_FILENAME.lstrip("/"), Model.STATES_ATTR_FILENAME.lstrip("/"))
    try:
        with open_regular(fpath, "load_states") as f, zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            missing = [n for n in want if n not in names]
            if missing:
                raise ValueError(f"load_states: {fpath} is not a SINGA checkpoint (missing {', '.join(missing)}; "
                                 f"found {', '.join(sorted(names)) or 'nothing'})")
            if z.getinfo(want[1]).file_size > ATTRS_BYTES_CAP:
                raise ValueError(f"load_states: {fpath}: {want[1]} is larger than {ATTRS_BYTES_CAP} bytes")
            attrs = json.loads(z.read(want[1]).decode("utf-8"))
            if not isinstance(attrs, dict):
                raise ValueError(f"load_states: {fpath}: {want[1]} is not a JSON object")
            with z.open(want[0]) as npz:
                arrays = read_npz(npz, fpath, "load_states", functools.partial(problems, attrs))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ValueError(f"load_states: {fpath} is truncated or not a checkpoint zip ({err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"load_states: {fpath}: {want[1]} is not valid UTF-8 JSON ({err})") from None
    return arrays, attrs
