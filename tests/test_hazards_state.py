"""Hazards around state: donated buffers, all-or-nothing loads, checkpoint and Snapshot files."""
import io
import json
import os
import resource
import struct
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, device, layer, model, opt, snapshot, tensor


class MLP(model.Model):
    def __init__(self):
        super().__init__()
        self.l1 = layer.Linear(4)
        self.l2 = layer.Linear(3)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.l2(autograd.relu(self.l1(x)))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss_fn(out, y)
        self.optimizer(loss)
        return out, loss


def build(use_graph=True):
    device.get_default_device().SetRandSeed(3)
    net = MLP()
    net.optimizer = opt.SGD(lr=0.1, momentum=0.9)
    net.compile([tensor.Tensor((6, 5))], is_train=True, use_graph=use_graph)
    return net


def train(net, steps=2):
    rng = np.random.default_rng(0)
    tx, ty = tensor.Tensor((6, 5)), tensor.Tensor((6,), dtype=tensor.int32)
    for _ in range(steps):
        tx.copy_from_numpy(rng.standard_normal((6, 5)).astype(np.float32))
        ty.copy_from_numpy(rng.integers(0, 3, 6).astype(np.int32))
        _, loss = net(tx, ty)
    return tensor.to_numpy(loss)


def _states(net):
    return {k: tensor.to_numpy(v).copy() for k, v in net.get_states().items()}


def _opt_states(o):
    return {k: tensor.to_numpy(t).copy() for k, t in model._flatten_states(o.get_states()).items()}


# --- donated buffers -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["set_states", "set_params", "set_states_raw", "copy_data", "copy_from",
                                  "load_states", "optimizer_set_states"])
def test_arrays_handed_in_survive_compiled_steps(path, tmp_path):
    net = build()
    train(net, 1)
    rng = np.random.default_rng(5)
    names = sorted(net.get_states())
    users = {f"aux_{k}" if path == "load_states" else k:
             tensor.Tensor(data=rng.standard_normal(net.get_states()[k].shape).astype(np.float32)) for k in names}
    expect = {k: tensor.to_numpy(t).copy() for k, t in users.items()}
    if path == "set_states":
        net.set_states(users)
    elif path == "set_params":
        net.set_params(users)
    elif path == "set_states_raw":
        net.set_states({k: t.data for k, t in users.items()})
    elif path in ("copy_data", "copy_from"):
        for k, t in net.get_states().items():
            getattr(t, path)(users[k])
    elif path == "load_states":
        fpath = str(tmp_path / "c.zip")
        net.save_states(fpath, aux_states=users)
        users = net.load_states(fpath)
        net.set_states({k[4:]: t for k, t in users.items()})
    else:
        slots = {k: v for k, v in net.optimizer.get_states().items() if isinstance(v, dict)}
        users = {f"{attr}/{p}": tensor.Tensor(data=np.full(t.shape, 0.5, np.float32))
                 for attr, d in slots.items() for p, t in d.items()}
        assert users
        expect = {k: tensor.to_numpy(t).copy() for k, t in users.items()}
        states = {"step_counter": 1.0}
        for key, t in users.items():
            attr, p = key.split("/", 1)
            states.setdefault(attr, {})[p] = t
        net.optimizer.set_states(states)
    train(net, 2)
    for k, t in users.items():
        np.testing.assert_array_equal(tensor.to_numpy(t), expect[k])


# --- all or nothing --------------------------------------------------------------------

def test_load_states_with_a_bad_optimizer_slot_changes_nothing(tmp_path):
    net = build()
    train(net, 1)
    path = str(tmp_path / "c.zip")
    net.save_states(path)
    train(net, 1)
    before, opt_before = _states(net), _opt_states(net.optimizer)
    with zipfile.ZipFile(path) as z:
        attrs = json.loads(z.read("states_attr.json"))
        with np.load(io.BytesIO(z.read("tensor_dict.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files}
    slot = next(k for k in arrays if k.startswith(model.OPT_PREFIX) and arrays[k].ndim == 2)
    arrays[slot] = np.zeros((2, 2), np.float32)
    arrays = {k: v + 1 if not k.startswith(model.OPT_PREFIX) else v for k, v in arrays.items()}
    bad = str(tmp_path / "bad.zip")
    _write_zip(bad, arrays, attrs)
    with pytest.raises(ValueError, match="bad.zip"):
        net.load_states(bad)
    for k, v in _states(net).items():
        np.testing.assert_array_equal(v, before[k])
    for k, v in _opt_states(net.optimizer).items():
        np.testing.assert_array_equal(v, opt_before[k])


def test_optimizer_set_states_is_all_or_nothing():
    net = build()
    train(net, 2)
    o = net.optimizer
    before = _opt_states(o)
    states = o.get_states()
    slots = next(v for v in states.values() if isinstance(v, dict))
    names = list(slots)
    good = {names[0]: np.ones(slots[names[0]].shape, np.float32)}
    bad = {names[1]: np.ones((9, 9), np.float32)}
    attr = next(k for k, v in states.items() if isinstance(v, dict))
    with pytest.raises(ValueError, match="shape"):
        o.set_states({"step_counter": 50.0, attr: {**good, **bad}})
    for k, v in _opt_states(o).items():
        np.testing.assert_array_equal(v, before[k])


def test_aux_state_named_like_a_model_state_is_refused_at_save(tmp_path):
    net = build()
    path = str(tmp_path / "c.zip")
    with pytest.raises(ValueError, match="l1.W"):
        net.save_states(path, aux_states={"l1.W": tensor.Tensor(data=np.zeros((2, 2), np.float32))})
    with pytest.raises(ValueError, match="optimizer"):
        net.save_states(path, aux_states={model.OPT_PREFIX + "0/x": tensor.Tensor((1,))})
    assert not os.path.exists(path)


# --- untrusted checkpoints ---------------------------------------------------------------

def _write_zip(path, arrays, attrs, npz_bytes=None):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tensor_dict.npz", buf.getvalue() if npz_bytes is None else npz_bytes)
        z.writestr("states_attr.json", attrs if isinstance(attrs, (str, bytes)) else json.dumps(attrs))


def test_a_compression_bomb_is_refused_from_its_headers(tmp_path):
    net = build()
    arrays = {k: tensor.to_numpy(v) for k, v in net.get_states().items()}
    attrs = {k: {"state_type": 0, "shape": list(v.shape), "dtype": 0} for k, v in arrays.items()}
    arrays["big"] = np.zeros((100, 1000, 1000), np.float32)   # 400 MB of zeros
    attrs["big"] = {"state_type": 1, "shape": [100, 1000, 1000], "dtype": 0}
    path = str(tmp_path / "bomb.zip")
    _write_zip(path, arrays, attrs)
    del arrays["big"]
    assert os.path.getsize(path) < 2 << 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="(?s)bomb.zip.*bytes"):
        net.load_states(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000   # KiB: nothing read


@pytest.mark.parametrize("kind", ["json", "utf8", "pickle", "raw_member", "zlib", "object"])
def test_broken_checkpoints_give_one_clear_error_naming_the_file(kind, tmp_path):
    net = build()
    arrays = {k: tensor.to_numpy(v) for k, v in net.get_states().items()}
    attrs = {k: {"state_type": 0, "shape": list(v.shape), "dtype": 0} for k, v in arrays.items()}
    path = str(tmp_path / f"{kind}.zip")
    if kind == "json":
        _write_zip(path, arrays, "{not json")
    elif kind == "utf8":
        _write_zip(path, arrays, b"\xff\xfe{}")
    elif kind == "pickle":
        _write_zip(path, arrays, attrs, npz_bytes=b"\x80\x04garbage that is not a zip")
    elif kind == "raw_member":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as inner:
            inner.writestr("l1.W", b"raw bytes")
        _write_zip(path, arrays, attrs, npz_bytes=buf.getvalue())
    elif kind == "object":
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, "l1.W": np.array([{"a": 1}], dtype=object)})
        _write_zip(path, arrays, attrs, npz_bytes=buf.getvalue())
    else:
        _write_zip(path, arrays, attrs)
        raw = bytearray(open(path, "rb").read())
        start = raw.index(b"tensor_dict.npz") + len("tensor_dict.npz")
        raw[start + 40:start + 400] = bytes(360)   # damage the deflate stream
        open(path, "wb").write(bytes(raw))
    before = _states(net)
    with pytest.raises(ValueError, match=f"{kind}.zip") as err:
        net.load_states(path)
    assert "pickled" not in str(err.value) and "attribute" not in str(err.value)
    for k, v in _states(net).items():
        np.testing.assert_array_equal(v, before[k])


# --- Snapshot ------------------------------------------------------------------------------

def test_snapshot_writer_keeps_the_old_file_until_close(tmp_path):
    prefix = str(tmp_path / "p")
    with snapshot.Snapshot(prefix, True) as w:
        w.write("a", tensor.Tensor(data=np.arange(3.0, dtype=np.float32)))
    old = open(prefix + ".bin", "rb").read()
    w = snapshot.Snapshot(prefix, True)
    w.write("b", tensor.Tensor(data=np.ones(2, np.float32)))
    assert open(prefix + ".bin", "rb").read() == old
    np.testing.assert_array_equal(tensor.to_numpy(snapshot.Snapshot(prefix, False).read()["a"]), [0, 1, 2])
    w.close()
    assert list(snapshot.Snapshot(prefix, False).read()) == ["b"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".singax")]


def _record(key: bytes, values):
    proto = b"\x0a\x01" + bytes([len(values)]) + b"\x10\x00" + b"\x22" + bytes([4 * len(values)])
    proto += struct.pack(f"<{len(values)}f", *values)
    return b"sg\x01\x00" + struct.pack("=Q", len(key)) + key + struct.pack("=Q", len(proto)) + proto


def test_snapshot_refuses_duplicate_names_and_names_truncated_files(tmp_path):
    (tmp_path / "d.bin").write_bytes(_record(b"w", [1.0]) + _record(b"w", [2.0]))
    with pytest.raises(ValueError, match=r"d\.bin.*'w'"):
        snapshot.Snapshot(str(tmp_path / "d"), False).read()
    good = _record(b"w", [1.0, 2.0])
    for cut in (3, 10, len(good) - 3):
        (tmp_path / "t.bin").write_bytes(good[:cut])
        with pytest.raises(ValueError, match=r"t\.bin is truncated or corrupt"):
            snapshot.Snapshot(str(tmp_path / "t"), False).read()


def test_raw_arrays_handed_to_set_states_are_copied():
    net = build()
    raw = jnp.ones(net.get_states()["l1.b"].shape, jnp.float32)
    net.set_states({"l1.b": raw})
    assert net.get_states()["l1.b"].data is not raw


# --- labels out of range in a compiled step ---------------------------------------------

@pytest.mark.parametrize("make_opt", [lambda: opt.SGD(lr=0.1, momentum=0.9), lambda: opt.Adam(lr=0.01)])
def test_compiled_step_with_labels_out_of_range_skips_the_update_and_raises(make_opt):
    net = build()
    net.optimizer = make_opt()
    net.label_check_interval = 10 ** 9
    train(net, 2)
    before, opt_before = _states(net), _opt_states(net.optimizer)
    tx, ty = tensor.Tensor((6, 5)), tensor.Tensor((6,), dtype=tensor.int32)
    tx.copy_from_numpy(np.ones((6, 5), np.float32))
    ty.copy_from_numpy(np.array([0, 1, 7, 2, 0, 1], np.int32))   # 7 of 3 classes
    net(tx, ty)
    with pytest.raises(ValueError, match="1 compiled training step.*labels outside"):
        net.check_skipped_steps()
    net(tx, ty)
    with pytest.raises(ValueError, match="1 compiled training step"):
        net.eval()
    net.train()
    net.label_check_interval = 1
    with pytest.raises(ValueError, match="compiled training step"):
        for _ in range(200):   # the graph-mode check never waits; it reads a finished count
            tensor.to_numpy(net(tx, ty)[1])
    for k, v in _states(net).items():
        np.testing.assert_array_equal(v, before[k])
    for k, v in _opt_states(net.optimizer).items():
        if "skipped" not in k:
            np.testing.assert_array_equal(v, opt_before[k])
    ty.copy_from_numpy(np.array([0, 1, 2, 2, 0, 1], np.int32))
    assert np.isfinite(tensor.to_numpy(net(tx, ty)[1])).all()   # good labels train again
    assert any(np.any(_states(net)[k] != before[k]) for k in before)
