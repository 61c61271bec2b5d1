"""Reading `.npz` archives from untrusted files: every member's name, shape and dtype
come from its `.npy` header and are checked before any array data is read."""
from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from typing import IO, Callable

import numpy as np
from numpy.lib import format as npy_format

# {name: (shape, dtype)} of every member -> the problems found (empty to accept)
Check = Callable[[dict], list]


def open_regular(path: str | os.PathLike, where: str) -> IO[bytes]:
    """`path` opened for binary reading, refused (ValueError naming it) unless it is a regular
    file: a device (/dev/zero), a FIFO or a directory would never end or never open."""
    nonblock = getattr(os, "O_NONBLOCK", 0)   # opening a FIFO must not wait for a writer
    try:
        fd = os.open(path, os.O_RDONLY | nonblock)
    except IsADirectoryError:
        raise ValueError(f"{where}: {os.fspath(path)} is a directory, not a file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{where}: {os.fspath(path)} is not a regular file")
    if nonblock:
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def element_count(shape: tuple, what: str) -> int:
    """The number of elements of `shape` in Python ints (no int64 wrap-around); negative
    dimensions raise ValueError naming `what`."""
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"{what} has a negative dimension in shape {tuple(shape)}")
    return math.prod(int(d) for d in shape)


def write_npz(target: IO[bytes], arrays: dict) -> None:
    """An uncompressed npz of `arrays` (name -> numeric array) written to `target`; any name
    works (`np.savez(**arrays)` would take "file" or "allow_pickle" as its own arguments)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                npy_format.write_array(member, np.asarray(array), allow_pickle=False)


def read_npz(source: IO[bytes], fpath: str, where: str, check: Check) -> dict[str, np.ndarray]:
    """The arrays of the npz in `source`, by name without `.npy`.

    Raises ValueError naming `fpath` for a member that is not a plain `.npy` array, whose
    declared size disagrees with the archive, or when `check` reports problems (all are
    listed); no array data is read before every header has passed.
    """
    try:
        with zipfile.ZipFile(source) as z:
            members = [(info, *_header(z, info, fpath, where)) for info in z.infolist()]
            problems = check({name: (shape, dtype) for _, name, shape, dtype, _ in members})
            if problems:
                raise ValueError(f"{where}: {fpath} does not match:\n  " + "\n  ".join(problems))
            out = {}
            for info, name, shape, dtype, offset in members:
                with z.open(info) as f:
                    f.read(offset)
                    out[name] = _array(f.read(), shape, dtype, name, fpath, where)
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise ValueError(f"{where}: {fpath} holds a broken npz archive ({err})") from None
    except (UnicodeDecodeError, RuntimeError) as err:
        raise ValueError(f"{where}: {fpath} holds an unreadable npz archive ({err})") from None


def _header(z: zipfile.ZipFile, info: zipfile.ZipInfo, fpath: str, where: str):
    if not info.filename.endswith(".npy"):
        raise ValueError(f"{where}: {fpath}: npz member {info.filename!r} is not a .npy array")
    name = info.filename[:-4]
    with z.open(info) as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        except ValueError as err:
            raise ValueError(f"{where}: {fpath}: npz member {info.filename!r} has no valid .npy "
                             f"header ({err})") from None
        offset = f.tell()
    if dtype.hasobject or not (dtype.kind in "biuf" or (dtype.kind == "V" and dtype.itemsize == 2)):
        raise ValueError(f"{where}: {fpath}: array {name!r} has dtype {dtype}; only numeric arrays "
                         f"are read")
    if fortran:
        raise ValueError(f"{where}: {fpath}: array {name!r} is stored in Fortran order")
    nbytes = element_count(shape, f"{where}: {fpath}: array {name!r}") * dtype.itemsize
    if info.file_size != offset + nbytes:
        raise ValueError(f"{where}: {fpath}: array {name!r} declares shape {shape} ({nbytes} bytes) "
                         f"but its member holds {info.file_size - offset} bytes")
    return name, tuple(shape), dtype, offset


def _array(data: bytes, shape: tuple, dtype: np.dtype, name: str, fpath: str, where: str) -> np.ndarray:
    expected = element_count(shape, f"{where}: {fpath}: array {name!r}") * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{where}: {fpath}: array {name!r} is truncated ({len(data)} of {expected} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
