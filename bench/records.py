"""Run records: one JSON object per line in results/<suite>/<profile>/runs.jsonl.

Appends are whole lines written with one `write` under a file lock and fsync'd, so a crash
leaves at most one truncated last line; readers skip it with a warning and the run is redone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bench.errors import UsageError, warn
from bench.fsio import atomic_write

DONE_STATUSES = ("ok", "diverged")  # a failed run is retried on the next invocation
LOCK_TIMEOUT_S = 10.0


def suite_dir(results: Path, suite: str, profile: str) -> Path:
    return results / suite / profile


def runs_path(results: Path, suite: str, profile: str) -> Path:
    return suite_dir(results, suite, profile) / "runs.jsonl"


def weights_path(results: Path, suite: str, profile: str, run_id: str) -> Path:
    return suite_dir(results, suite, profile) / "weights" / f"{run_id}.safetensors"



def read_records(path: Path, *, warn: Callable[[str], None] = warn) -> list[dict[str, Any]]:
    """All complete records, in file order; a broken line is skipped with a warning."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records = []
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: a write cut short
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict) or "run_id" not in rec:
                raise ValueError("not a run record")
        except ValueError:
            where = "truncated last line" if last else f"line {i + 1}"
            warn(f"{path}: skipping {where} (not a complete record); that run will be redone")
            continue
        if last:
            warn(f"{path}: last line has no newline; treating it as incomplete")
            continue
        records.append(rec)
    return records


def latest_by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record per run id (a --force re-run supersedes the earlier one)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out[r["run_id"]] = r
    return out


@contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the results file's lock; another writer waits up to `timeout` then is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    try:
        with lock.acquire(timeout=timeout):
            yield
    except Timeout:
        raise UsageError(
            f"{path} is locked by another lenet-bench process; wait for it or use --results"
        ) from None


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so the next append starts on a fresh line."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        warn(f"{path}: removing a partial last line ({size - keep} bytes) left by a crash")
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, durably. Call under `locked(path)`."""
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_records(path: Path, run_ids: set[str]) -> None:
    """Rewrite the file without these run ids (for --force), atomically. Call under the lock."""
    if not path.exists():
        return
    keep = [r for r in read_records(path) if r["run_id"] not in run_ids]
    atomic_write(path, "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n"
                               for r in keep))


def finished_ids(path: Path) -> set[str]:
    return {rid for rid, r in latest_by_id(read_records(path)).items()
            if r.get("status") in DONE_STATUSES}


def all_runs_files(results: Path) -> list[Path]:
    return sorted(results.glob("*/*/runs.jsonl"))
