"""Reading `.npz` archives from untrusted files: every member's name, shape and dtype
come from its `.npy` header and are checked before any array data is read."""
from __future__ import annotations

import zipfile
import zlib
from typing import IO, Callable

import numpy as np
from numpy.lib import format as npy_format

# {name: (shape, dtype)} of every member -> the problems found (empty to accept)
Check = Callable[[dict], list]


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
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != offset + nbytes:
        raise ValueError(f"{where}: {fpath}: array {name!r} declares shape {shape} ({nbytes} bytes) "
                         f"but its member holds {info.file_size - offset} bytes")
    return name, tuple(shape), dtype, offset


def _array(data: bytes, shape: tuple, dtype: np.dtype, name: str, fpath: str, where: str) -> np.ndarray:
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{where}: {fpath}: array {name!r} is truncated ({len(data)} of {expected} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
