"""The IDX file format (parse, read, write) and file digests."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import DataError
from bench.fsio import atomic_write


def md5_file(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of a file, read in chunks so a 47 MB file does not sit in memory twice."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_bytes(data: bytes) -> str:
    """md5 hex digest of bytes already in memory."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file (downloaded .deb and .whl files are pinned by sha256)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# IDX type codes (third byte of the magic number); data are big-endian.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt: c for c, dt in _IDX_DTYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialize an array as IDX (magic 0x0000TTDD, big-endian dims, then big-endian data)."""
    arr = np.asarray(array)
    big = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    if big not in _IDX_CODES:
        raise ValueError(f"dtype {arr.dtype} has no IDX type code")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {arr.ndim}")
    header = struct.pack(">BBBB", 0, 0, _IDX_CODES[big], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=big).tobytes()


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes, checking the magic number and that the sizes agree (DataError if not)."""
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file (only {len(data)} bytes)")
    zero1, zero2, code, ndim = struct.unpack_from(">BBBB", data, 0)
    if zero1 or zero2 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{source}: bad IDX magic number 0x{data[:4].hex()}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    dtype = _IDX_DTYPES[code]
    expected = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{source}: IDX file {what} ({len(data)} bytes, header says {expected})")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else arr


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a numpy array (DataError on a bad magic number or wrong size)."""
    return parse_idx(Path(path).read_bytes(), source=str(path))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file, atomically."""
    atomic_write(Path(path), idx_bytes(array))
