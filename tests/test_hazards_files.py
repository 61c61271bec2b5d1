"""Untrusted files: ONNX external data, idx files, image folders, bad layer arguments."""
import gzip
import os
import struct

import numpy as np
import pytest

from singax import data, layer, tensor


@pytest.mark.parametrize("content", [
    b"\x00\x00\x08\x03" + struct.pack(">I", 2),            # header cut inside the dimensions
    gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc")[:-6],   # gzip stream cut
], ids=["header", "gzip"])
def test_read_idx_on_a_truncated_file_names_it(tmp_path, content):
    path = tmp_path / "cut-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cut-idx.*truncated"):
        data.read_idx(str(path))


@pytest.mark.parametrize("args", [(-3,), (0,), (2.5,), (4, -1), (-4, 2)])
def test_linear_with_a_bad_size_says_so(args):
    with pytest.raises(ValueError, match="Linear: .*_features must be a positive int"):
        layer.Linear(*args)


def test_image_batch_iter_with_mixed_image_sizes_names_the_files(tmp_path):
    for name, shape in (("a.npy", (4, 4, 3)), ("b.npy", (5, 4, 3))):
        np.save(tmp_path / name, np.zeros(shape, np.float32))
    listfile = tmp_path / "list.txt"
    listfile.write_text("a.npy 0\nb.npy 1\n")
    it = data.ImageBatchIter(str(listfile), 2, lambda p: [np.load(p)], shuffle=False,
                             image_folder=str(tmp_path))
    it.start()
    try:
        with pytest.raises(ValueError, match=r"a\.npy.*\(3, 4, 4\).*b\.npy.*\(3, 5, 4\)"):
            next(it)
    finally:
        it.end()


try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from singax import sonnx
except ImportError:
    onnx = None
needs_onnx = pytest.mark.skipif(onnx is None, reason="onnx is not installed")


def _external_model(location: str, values=np.arange(4, dtype=np.float32)):
    """y = x + w, with w's 4 floats stored at `location`."""
    w = numpy_helper.from_array(values, "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(values.nbytes))):
        e = w.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(rep):
    return tensor.to_numpy(rep.run([tensor.Tensor(data=np.zeros(4, np.float32))])[0])


@needs_onnx
@pytest.mark.parametrize("as_bytes", [True, False])
def test_external_data_without_a_model_folder_is_refused(tmp_path, monkeypatch, as_bytes):
    monkeypatch.chdir(tmp_path)
    np.arange(10, 14, dtype=np.float32).tofile("secret.bin")
    m = _external_model("secret.bin")
    with pytest.raises(ValueError, match="'w'.*external"):
        sonnx.prepare(m.SerializeToString() if as_bytes else m)


@needs_onnx
@pytest.mark.parametrize("location", ["../secret.bin", "ABS", "link.bin", "sub/../../secret.bin"])
def test_external_data_must_stay_inside_the_model_folder(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    np.arange(10, 14, dtype=np.float32).tofile(secret)
    os.symlink(secret, folder / "link.bin")
    m = _external_model(str(secret) if location == "ABS" else location)
    path = folder / "m.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ValueError, match="not a file inside the model folder"):
        sonnx.prepare(str(path))


@needs_onnx
def test_external_data_inside_the_model_folder_is_read(tmp_path):
    np.arange(10, 14, dtype=np.float32).tofile(tmp_path / "w.bin")
    path = tmp_path / "m.onnx"
    onnx.save(_external_model("w.bin"), str(path))
    np.testing.assert_array_equal(_run(sonnx.prepare(str(path))), [10, 11, 12, 13])
