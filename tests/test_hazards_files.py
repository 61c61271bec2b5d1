"""Untrusted files: ONNX external data, idx files, image folders, bad layer arguments."""
import os

import numpy as np
import pytest

from singax import layer, tensor

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from singax import sonnx  # noqa: E402


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


@pytest.mark.parametrize("as_bytes", [True, False])
def test_external_data_without_a_model_folder_is_refused(tmp_path, monkeypatch, as_bytes):
    monkeypatch.chdir(tmp_path)
    np.arange(10, 14, dtype=np.float32).tofile("secret.bin")
    m = _external_model("secret.bin")
    with pytest.raises(ValueError, match="'w'.*external"):
        sonnx.prepare(m.SerializeToString() if as_bytes else m)


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


def test_external_data_inside_the_model_folder_is_read(tmp_path):
    np.arange(10, 14, dtype=np.float32).tofile(tmp_path / "w.bin")
    path = tmp_path / "m.onnx"
    onnx.save(_external_model("w.bin"), str(path))
    np.testing.assert_array_equal(_run(sonnx.prepare(str(path))), [10, 11, 12, 13])
