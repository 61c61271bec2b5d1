"""Untrusted paths and values: special files, odd checkpoint names and paths, dtypes that
cannot be held, crafted headers, Snapshot writer arguments and targets."""
import gzip
import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from singax import data, opt, snapshot, tensor
from test_hazards_state import _opt_states, _states, build, train


@pytest.mark.parametrize("special", ["devzero", "fifo", "folder"])
def test_readers_refuse_what_is_not_a_regular_file(special, tmp_path):
    path = tmp_path / "x.zip"
    if special == "devzero":
        os.symlink("/dev/zero", path)   # would never end
    elif special == "fifo":
        os.mkfifo(path)                 # would block forever
    else:
        path.mkdir()
    net = build()
    before = _states(net)
    with pytest.raises(ValueError, match=f"load_states: {path} is (not a regular file|a directory)"):
        net.load_states(str(path))
    assert all(np.array_equal(before[k], v) for k, v in _states(net).items())
    with pytest.raises(ValueError, match="read_idx: .*x.zip"):
        data.read_idx(str(path))
    (tmp_path / "s.bin").symlink_to(path) if special != "folder" else (tmp_path / "s.bin").mkdir()
    with pytest.raises(ValueError, match="Snapshot.read: .*s.bin"):
        snapshot.Snapshot(str(tmp_path / "s"), False).read()


def test_save_states_takes_any_aux_name_and_refuses_bad_paths(tmp_path):
    net = build()
    train(net, 1)
    path = str(tmp_path / "a.zip")
    aux = {"allow_pickle": tensor.from_numpy(np.arange(2, dtype=np.float32)),
           "file": tensor.from_numpy(np.arange(3, dtype=np.float32))}   # np.savez's own argument names
    net.save_states(path, aux_states=aux)
    got = build().load_states(path)
    assert sorted(got) == ["allow_pickle", "file"]
    np.testing.assert_array_equal(tensor.to_numpy(got["file"]), [0, 1, 2])
    with pytest.raises(FileNotFoundError, match="save_states: the folder .*nodir of .* does not exist"):
        net.save_states(str(tmp_path / "nodir" / "x.zip"))
    for bad in ("", str(tmp_path) + os.sep):
        with pytest.raises(ValueError, match="is not a file path"):
            net.save_states(bad)
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.zip")
    with pytest.raises(FileExistsError, match="dangling.zip already exists"):
        net.save_states(str(tmp_path / "dangling.zip"))
    assert os.path.islink(tmp_path / "dangling.zip")
    with pytest.raises(TypeError, match="aux state names must be non-empty str, got 1"):
        net.save_states(str(tmp_path / "b.zip"), aux_states={1: aux["file"]})
    with pytest.raises(TypeError, match="aux_states must be a dict"):
        net.save_states(str(tmp_path / "b.zip"), aux_states=[aux["file"]])
    assert sorted(os.listdir(tmp_path)) == ["a.zip", "dangling.zip"]   # no temporary file left


def test_values_of_an_unsupported_dtype_change_nothing():
    net = build()
    train(net, 1)
    before, opt_before = _states(net), _opt_states(net.optimizer)
    with pytest.raises(TypeError, match="MLP.set_params 'l1.W': unsupported numpy dtype complex64"):
        net.set_params({"l1.b": np.full(4, 7, np.float32), "l1.W": np.zeros((5, 4), np.complex64)})
    states = net.optimizer.get_states()
    slot = next(iter(states["moments"]))
    bad = {**states, "step_counter": 5,
           "moments": {**states["moments"], slot: np.zeros(np.shape(states["moments"][slot]), np.complex64)}}
    with pytest.raises(TypeError, match=f"SGD.set_states: state 'moments' of '{slot}' has dtype complex64"):
        net.optimizer.set_states(bad)
    assert all(np.array_equal(before[k], v) for k, v in _states(net).items())
    assert all(np.array_equal(opt_before[k], v) for k, v in _opt_states(net.optimizer).items())


def _checkpoint_with_header(path, net, shape):
    """A checkpoint whose aux member's .npy header declares `shape` over 0 bytes of data."""
    arrays = {k: tensor.to_numpy(v) for k, v in net.get_states().items()}
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        for k, a in arrays.items():
            with z.open(f"{k}.npy", "w") as m:
                npy_format.write_array(m, a)
        header = io.BytesIO()
        npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
        z.writestr("big.npy", header.getvalue())
    attrs = {k: {"state_type": 0, "shape": list(a.shape), "dtype": 0} for k, a in arrays.items()}
    attrs["big"] = {"state_type": 1, "shape": [1], "dtype": 0}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tensor_dict.npz", npz.getvalue())
        z.writestr("states_attr.json", json.dumps(attrs))


@pytest.mark.parametrize("shape", [(4294967296, 4294967296), (-2, -3), (-1, 0)])
def test_crafted_npy_headers_are_refused_naming_the_file(shape, tmp_path):
    net = build()
    path = str(tmp_path / "crafted.zip")
    _checkpoint_with_header(path, net, shape)
    before = _states(net)
    with pytest.raises(ValueError, match="load_states: .*crafted.zip.*'big'"):
        net.load_states(path)
    assert all(np.array_equal(before[k], v) for k, v in _states(net).items())


def test_deeply_nested_attributes_json_is_a_clear_error(tmp_path):
    net = build()
    path = str(tmp_path / "deep.zip")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tensor_dict.npz", b"")
        z.writestr("states_attr.json", "[" * 200000 + "]" * 200000)
    with pytest.raises(ValueError, match="deep.zip: states_attr.json is not valid UTF-8 JSON"):
        net.load_states(path)


def test_idx_sizes_are_python_ints_and_the_body_is_read_only_as_far_as_declared(tmp_path):
    huge = tmp_path / "huge-idx.gz"   # 65536**4 bytes declared: int64 would wrap to 0
    huge.write_bytes(gzip.compress(b"\x00\x00\x08\x04" + struct.pack(">4I", *[65536] * 4)))
    with pytest.raises(ValueError, match=r"huge-idx.gz' declares shape \(65536, 65536, 65536, 65536\)"):
        data.read_idx(str(huge))
    long = tmp_path / "long-idx.gz"   # declares 3 bytes, decompresses to 10 MB more
    long.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes(10_000_000)))
    with pytest.raises(ValueError, match=r"declares shape \(3,\) \(3 bytes\) but holds more than that"):
        data.read_idx(str(long))


def test_snapshot_writer_checks_its_arguments_and_refuses_a_folder_target(tmp_path):
    prefix = str(tmp_path / "p")
    with snapshot.Snapshot(prefix, True) as w:
        w.write("a", tensor.from_numpy(np.ones(2, np.float32)))
    w = snapshot.Snapshot(prefix, True)
    w.write("a", tensor.from_numpy(np.zeros(2, np.float32)))
    with pytest.raises(TypeError, match="Snapshot.write: 'b' must be a Tensor, got ndarray"):
        w.write("b", np.ones(3))
    with pytest.raises(TypeError, match="one-line str"):
        w.write("x\ny", tensor.from_numpy(np.ones(1, np.float32)))
    os.remove(prefix + ".bin")
    os.mkdir(prefix + ".bin")      # the target became a folder
    with pytest.raises(ValueError, match=r"Snapshot.close: .*p.bin is a folder; nothing was written"):
        w.close()
    assert sorted(os.listdir(tmp_path)) == ["p.bin", "p.desc"]   # temporary files removed
    assert open(prefix + ".desc").read().count("a: dtype") == 1     # the old description stays


def test_loading_into_a_model_without_parameters_says_to_compile_first(tmp_path):
    net = build()
    path = str(tmp_path / "a.zip")
    net.save_states(path)
    fresh = type(net)()
    with pytest.raises(ValueError, match=r"MLP has no parameters yet: call compile\(\)"):
        fresh.load_states(path)


@pytest.mark.parametrize("names, match", [
    (["__singax_opt__/0"], r"optimizer state '__singax_opt__/0' names no state"),
    (["__singax_opt__/0/step_counter", "__singax_opt__/0/moments/l1.W", "__singax_opt__/0/moments/l1.W/x"],
     r"optimizer state 'moments/l1.W(/x)?' (is also a group of states|nests inside the value 'l1.W')"),
])
def test_malformed_optimizer_entries_in_a_checkpoint_are_named(names, match, tmp_path):
    net = build()
    train(net, 1)
    arrays = {k: tensor.to_numpy(v) for k, v in net.get_states().items()}
    attrs = {k: {"state_type": 0, "shape": list(v.shape), "dtype": 0} for k, v in arrays.items()}
    for n in names:
        arrays[n] = np.zeros((5, 4) if n.endswith("l1.W") else 1, np.float32)
        attrs[n] = {"state_type": 1, "shape": list(arrays[n].shape), "dtype": 0}
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    path = str(tmp_path / "opt.zip")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tensor_dict.npz", npz.getvalue())
        z.writestr("states_attr.json", json.dumps(attrs))
    before, opt_before = _states(net), _opt_states(net.optimizer)
    with pytest.raises(ValueError, match=match):
        net.load_states(path)
    assert all(np.array_equal(before[k], v) for k, v in _states(net).items())
    assert all(np.array_equal(opt_before[k], v) for k, v in _opt_states(net.optimizer).items())
