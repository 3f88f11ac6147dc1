"""Run records: one JSON object per line in results/<suite>/<profile>/runs.jsonl.

`RunRecord` is the one schema (versioned: `record_version`) that the runner writes and the
report, the gate and the d2l analyses read; `read_records` hands back every record in it, an
older version brought up to date, so no reader patches missing keys of its own.

Appends are whole lines written with one `write` under a file lock and fsync'd, so a crash
leaves at most one truncated last line; readers skip it with a warning and the run is redone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from filelock import FileLock, Timeout

from bench.errors import UsageError, warn
from bench.fsio import atomic_write

RECORD_VERSION = 2  # 2: `code`, the behavioural fingerprint of the code that trained it
STATUSES = ("ok", "diverged", "failed")
DONE_STATUSES = ("ok", "diverged")  # a failed run is retried on the next invocation


class RunRecord(TypedDict):
    """One run: identity, what it answers, its resolved config, the code, outcome, numbers."""

    record_version: int
    run_id: str  # hash of the resolved config (bench.config.RunConfig.run_id)
    suite: str
    profile: str
    group: str
    question: str
    factor: str | None
    factor_value: Any
    memberships: list[dict[str, Any]]  # every (group, question, factor, level) it answers
    overrides: dict[str, Any]
    variant: str
    dataset: str
    seed: int
    config: dict[str, Any]  # RunConfig.to_dict()
    code: dict[str, Any]  # {fingerprint, kernels, probe} (bench.fingerprint); {} before v2
    status: str  # one of STATUSES
    error: str | None
    diverged_epoch: int | None
    metrics: dict[str, Any]  # test_acc, test_loss, topK_error, per_class_acc, confusion, …
    history: list[dict[str, Any]]  # per epoch: epoch, lr, train/test loss and accuracy
    timing: dict[str, Any]  # train/inference examples/s, per_epoch, wall_seconds, …
    env: dict[str, Any]  # bench.env.environment() plus started / ended
    traceback: NotRequired[str]  # failed runs
    packed_seeds: NotRequired[list[int]]  # trained packed with these seeds
    reused_from: NotRequired[dict[str, Any]]  # copied from another suite (d2l reuse)
    # {"train"|"test": {"n", "labels_md5"}}: the data it trained on and scored (bench.loop);
    # checked by the gate's data contract; absent in records made before it existed
    data: NotRequired[dict[str, Any]]


Record = RunRecord

_DEFAULTS: dict[str, Any] = {
    "group": "", "question": "", "factor": None, "factor_value": None, "memberships": [],
    "overrides": {}, "variant": "?", "dataset": "?", "seed": -1, "config": {}, "code": {},
    "status": "failed", "error": None, "diverged_epoch": None, "metrics": {}, "history": [],
    "timing": {}, "env": {},
}


def parse_record(raw: Any, suite: str, profile: str) -> RunRecord:
    """A JSON object as a RunRecord: checked, and an older version brought up to date.

    Version 1 (no `code`) reads as made by unknown code (so it is stale for reuse). A field a
    cut-short record lacks, or holds with the wrong type, gets its empty value; `suite` and
    `profile` default to where the file lies. A newer version or no run id: ValueError.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("run_id"), str):
        raise ValueError("not a run record")
    version = raw.get("record_version", 1)
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise ValueError(f"record version {version!r} is newer than this lenet-bench's "
                         f"{RECORD_VERSION}")
    rec = dict(raw)
    rec["record_version"] = RECORD_VERSION
    rec.setdefault("suite", suite)
    rec.setdefault("profile", profile)
    for key, empty in _DEFAULTS.items():
        value = rec.get(key, empty)
        if isinstance(empty, (dict, list)) and not isinstance(value, type(empty)):
            value = type(empty)()
        rec[key] = value
    if not isinstance(rec["seed"], int):
        rec["seed"] = -1
    if rec["status"] not in STATUSES:
        rec["status"] = "failed"
    return cast(RunRecord, rec)  # checked above, key by key
LOCK_TIMEOUT_S = 10.0


def suite_dir(results: Path, suite: str, profile: str) -> Path:
    return results / suite / profile


def runs_path(results: Path, suite: str, profile: str) -> Path:
    return suite_dir(results, suite, profile) / "runs.jsonl"


def weights_path(results: Path, suite: str, profile: str, run_id: str) -> Path:
    return suite_dir(results, suite, profile) / "weights" / f"{run_id}.safetensors"



def read_records(path: Path, *, warn: Callable[[str], None] = warn) -> list[RunRecord]:
    """All complete records, in file order, in the current schema; a broken line (or a record
    of a newer version) is skipped with a warning."""
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
            rec = parse_record(json.loads(raw), path.parent.parent.name, path.parent.name)
        except ValueError as e:
            where = "truncated last line" if last else f"line {i + 1}"
            warn(f"{path}: skipping {where} ({e}); that run will be redone")
            continue
        if last:
            warn(f"{path}: last line has no newline; treating it as incomplete")
            continue
        records.append(rec)
    return records


def latest_by_id(records: list[RunRecord]) -> dict[str, RunRecord]:
    """The last record per run id (a --force re-run supersedes the earlier one)."""
    out: dict[str, RunRecord] = {}
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


def append_record(path: Path, record: RunRecord) -> None:
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


def finished_records(path: Path) -> dict[str, Record]:
    """The latest record per run id whose run finished (ok or diverged, not failed)."""
    return {rid: r for rid, r in latest_by_id(read_records(path)).items()
            if r.get("status") in DONE_STATUSES}


def finished_ids(path: Path) -> set[str]:
    return set(finished_records(path))


def all_runs_files(results: Path) -> list[Path]:
    return sorted(results.glob("*/*/runs.jsonl"))
