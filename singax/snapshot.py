"""SINGA's deprecated `Snapshot` checkpoint files (`<f>.bin` records + `<f>.desc`),
readable and writable. New code should use `Model.save_states`."""
from __future__ import annotations

import os
import struct
import tempfile
from typing import Any

import numpy as np

from ._safe_npz import open_regular

__all__ = ["Snapshot"]


# --- singa.snapshot ------------------------------------------------------------
# Record file `<prefix>.bin`: per record b"sg" + has_key byte + b"\0", then a native
# size_t key length, the key, a size_t value length and the value, a serialized
# `singa.TensorProto` (shape=1 uint32, data_type=2 enum, stride=3 int32, float_data=4,
# double_data=5, int_data=6 packed; bytes_data=7).

_PROTO_FIELD = {0: 4, 4: 5, 2: 6}  # SINGA dtype code -> TensorProto data field


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32 are encoded as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _encode_tensor(array: np.ndarray, code: int) -> bytes:
    out = bytearray()
    for dim in array.shape:
        out += _varint(1 << 3) + _varint(dim)
    out += _varint(2 << 3) + _varint(code)
    stride = 1
    strides = []
    for dim in reversed(array.shape):
        strides.append(stride)
        stride *= dim
    for s in reversed(strides):
        out += _varint(3 << 3) + _varint(s)
    field = _PROTO_FIELD.get(code)
    if field is None:  # float16 and others: raw bytes, SINGA writes them the same way
        payload = np.ascontiguousarray(array).tobytes()
        out += _varint(7 << 3 | 2) + _varint(len(payload)) + payload
    elif field == 6:  # int32 as packed varints
        payload = b"".join(_varint(int(v)) for v in array.reshape(-1))
        out += _varint(6 << 3 | 2) + _varint(len(payload)) + payload
    else:
        payload = np.ascontiguousarray(array, dtype="<f4" if field == 4 else "<f8").tobytes()
        out += _varint(field << 3 | 2) + _varint(len(payload)) + payload
    return bytes(out)


def _decode_tensor(buf: bytes) -> tuple[np.ndarray, int]:
    shape, code, values, pos = [], 0, {4: [], 5: [], 6: [], 7: []}, 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if field == 1:
                shape.append(value)
            elif field == 2:
                code = value
            elif field == 6:
                values[6].append(value)
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            chunk, pos = buf[pos:pos + length], pos + length
            if field in (1, 3, 6):  # packed varints
                inner, ints = 0, []
                while inner < len(chunk):
                    v, inner = _read_varint(chunk, inner)
                    ints.append(v)
                if field == 1:
                    shape += ints
                elif field == 6:
                    values[6] += ints
            elif field in (4, 5):
                values[field].append(np.frombuffer(chunk, "<f4" if field == 4 else "<f8"))
            elif field == 7:
                values[7].append(chunk)
        elif wire == 5:  # unpacked float
            values[4].append(np.frombuffer(buf[pos:pos + 4], "<f4"))
            pos += 4
        elif wire == 1:  # unpacked double
            values[5].append(np.frombuffer(buf[pos:pos + 8], "<f8"))
            pos += 8
        else:
            raise ValueError(f"Snapshot: unsupported protobuf wire type {wire} in a TensorProto")
    from .tensor import to_np_dtype
    dtype = to_np_dtype(code)
    if values[4] or values[5]:
        flat = np.concatenate(values[4] or values[5]).astype(dtype)
    elif values[6]:
        flat = np.array([v - (1 << 64) if v >= 1 << 63 else v for v in values[6]], dtype=np.int64).astype(dtype)
    else:
        flat = np.frombuffer(b"".join(values[7]), dtype=dtype)
    return flat.reshape(shape), code


class Snapshot:
    """SINGA's deprecated parameter file: `<f>.bin` records plus a text `<f>.desc`.

    Args:
      f: path prefix.
      mode: True to write, False to read.
      buffer_size: kept for SINGA compatibility (MB); records are written at once.

    A writer fills temporary files next to `<f>.bin` and `<f>.desc` and moves them into
    place on `close()` (also called on `with` exit and when the writer is collected), so
    an existing snapshot stays whole until the new one is complete.
    SINGA: opening for writing truncates `<f>.bin` at once; reading a file with a
    repeated name keeps the last record, singax refuses the file.
    """

    def __init__(self, f: str, mode: bool, buffer_size: int = 10):
        self.prefix = os.fspath(f)
        self.mode = bool(mode)
        self.buffer_size = buffer_size
        self._names: set = set()
        self._tmp: dict[str, str] = {}
        self._failed = False
        if self.mode:
            folder = os.path.dirname(os.path.abspath(self.prefix))
            for ext in (".bin", ".desc"):
                fd, self._tmp[ext] = tempfile.mkstemp(prefix=".singax-snapshot-", suffix=ext, dir=folder)
                os.close(fd)
            with open(self._tmp[".desc"], "w") as desc:
                from ._version import __version__
                desc.write(f"singax {__version__} snapshot (SINGA record format)\n")
        else:
            path = self.prefix + ".bin"
            if not os.path.exists(path) and os.path.exists(self.prefix + ".model"):
                path = self.prefix + ".model"  # SINGA 1.0 name
            if not os.path.exists(path):
                raise FileNotFoundError(f"Snapshot: no {self.prefix}.bin (or .model) to read")
            self._path = path

    def write(self, param_name: str, param_val: Any) -> None:
        """Append one named Tensor."""
        if not self.mode:
            raise ValueError("Snapshot.write: this snapshot was opened for reading (mode=False)")
        if not self._tmp:
            raise ValueError(f"Snapshot.write: {self.prefix}.bin is already closed")
        if not isinstance(param_name, str) or not param_name or "\n" in param_name:
            raise TypeError(f"Snapshot.write: the name must be a non-empty one-line str, got {param_name!r}")
        if param_name in self._names:
            raise ValueError(f"Snapshot.write: duplicate parameter name {param_name!r}")
        from .tensor import Tensor, to_numpy
        if not isinstance(param_val, Tensor):
            raise TypeError(f"Snapshot.write: {param_name!r} must be a Tensor, got {type(param_val).__name__}")
        array = to_numpy(param_val)
        code = param_val.dtype
        key, value = param_name.encode(), _encode_tensor(array, code)
        record = (b"sg\x01\x00" + struct.pack("=Q", len(key)) + key
                  + struct.pack("=Q", len(value)) + value)
        try:
            with open(self._tmp[".bin"], "ab") as f:
                f.write(record)
            with open(self._tmp[".desc"], "a") as desc:
                desc.write(f"{param_name}: dtype {code}, shape {tuple(array.shape)}\n")
        except BaseException:
            self._failed = True   # a half-written record: close() must not publish it
            raise
        self._names.add(param_name)

    def close(self) -> None:
        """Move the written records into `<f>.bin` and `<f>.desc` (a no-op for readers).

        Nothing is published when a write failed half-way or a target is a folder."""
        if not self._tmp:
            return
        blocked = [self.prefix + ext for ext in self._tmp if os.path.isdir(self.prefix + ext)]
        if self._failed or blocked:
            self._discard()
            why = f"{blocked[0]} is a folder" if blocked else "an earlier write failed"
            raise ValueError(f"Snapshot.close: {why}; nothing was written")
        tmp, self._tmp = self._tmp, {}
        umask = os.umask(0)
        os.umask(umask)
        for ext, path in tmp.items():
            os.chmod(path, 0o666 & ~umask)
            os.replace(path, self.prefix + ext)

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()

    def __del__(self) -> None:
        if getattr(self, "_tmp", None):
            if self._failed:
                self._discard()
            else:
                self.close()

    def _discard(self) -> None:
        tmp, self._tmp = self._tmp, {}
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)

    def read(self) -> dict:
        """All records as `{name: Tensor}` on the host device.

        A truncated or corrupt file, or one that repeats a name, raises ValueError naming it.
        """
        if self.mode:
            raise ValueError("Snapshot.read: this snapshot was opened for writing (mode=True)")
        from .tensor import Tensor
        with open_regular(self._path, "Snapshot.read") as f:
            buf = f.read()
        arrays, pos = {}, 0
        while pos < len(buf):
            start = pos
            try:
                key, value, pos = _read_record(buf, pos)
                name = key.decode()
                array, code = _decode_tensor(value)
            except (struct.error, IndexError, UnicodeDecodeError, ValueError, TypeError) as err:
                raise ValueError(f"Snapshot.read: {self._path} is truncated or corrupt in the record at "
                                 f"byte {start} ({err})") from None
            if name in arrays:
                raise ValueError(f"Snapshot.read: {self._path} holds two records named {name!r}")
            arrays[name] = (array, code)
        return {name: Tensor(data=a, dtype=code, requires_grad=False) for name, (a, code) in arrays.items()}


def _read_record(buf: bytes, pos: int) -> tuple[bytes, bytes, int]:
    """One record at `pos`: (key, value, position after it)."""
    if buf[pos:pos + 2] != b"sg":
        raise ValueError("no 'sg' magic")
    if pos + 4 > len(buf):
        raise ValueError("the record header is cut off")
    has_key = buf[pos + 2]
    pos += 4
    key = b""
    if has_key:
        key, pos = _sized(buf, pos, "key")
    value, pos = _sized(buf, pos, "value")
    return key, value, pos


def _sized(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("=Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise ValueError(f"the {what} needs {n} bytes, {len(buf) - pos - 8} are left")
    return buf[pos + 8:end], end
