"""Record files: atomic appends, truncated tails, --force rewrites, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.records import (
    append_record,
    finished_ids,
    latest_by_id,
    locked,
    read_records,
    remove_records,
)


def _rec(rid: str, status: str = "ok") -> dict:
    return {"run_id": rid, "status": status, "metrics": {"test_acc": 0.5}}


def test_append_and_read(tmp_path: Path) -> None:
    p = tmp_path / "s" / "p" / "runs.jsonl"
    append_record(p, _rec("a"))
    append_record(p, _rec("b", "failed"))
    assert [r["run_id"] for r in read_records(p)] == ["a", "b"]
    assert finished_ids(p) == {"a"}  # a failed run is retried


def test_truncated_last_line_is_skipped_then_repaired(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    append_record(p, _rec("a"))
    with open(p, "a") as f:
        f.write(json.dumps(_rec("b"))[:25])  # a crash mid-write
    warnings: list[str] = []
    assert [r["run_id"] for r in read_records(p, warn=warnings.append)] == ["a"]
    assert warnings and "truncated" in warnings[0]
    append_record(p, _rec("c"))  # the next append cuts the partial line first
    assert [r["run_id"] for r in read_records(p)] == ["a", "c"]
    assert p.read_text().count("\n") == 2


def test_complete_json_without_newline_is_not_trusted(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    p.write_text(json.dumps(_rec("a")) + "\n" + json.dumps(_rec("b")))
    warnings: list[str] = []
    assert [r["run_id"] for r in read_records(p, warn=warnings.append)] == ["a"]
    assert warnings


def test_garbage_line_in_the_middle_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    p.write_text(json.dumps(_rec("a")) + "\n{not json\n" + json.dumps(_rec("b")) + "\n")
    warnings: list[str] = []
    assert [r["run_id"] for r in read_records(p, warn=warnings.append)] == ["a", "b"]
    assert "line 2" in warnings[0]


def test_remove_records_and_latest(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    for rid in "abc":
        append_record(p, _rec(rid))
    remove_records(p, {"b"})
    assert [r["run_id"] for r in read_records(p)] == ["a", "c"]
    append_record(p, {**_rec("a"), "metrics": {"test_acc": 0.9}})
    assert latest_by_id(read_records(p))["a"]["metrics"]["test_acc"] == 0.9


def test_nan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        append_record(tmp_path / "r.jsonl", {"run_id": "x", "v": float("nan")})
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


def test_second_writer_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    with locked(p), pytest.raises(UsageError, match="locked by another"):
        with locked(p, timeout=0.1):
            pass


def test_atomic_write_checks_before_replacing(tmp_path: Path) -> None:
    """A write that fails its check never replaces the old file, and leaves no temp file;
    a good one is readable by others (0644, not mkstemp's 0600)."""
    from bench.fsio import atomic_write

    target = tmp_path / "thresholds.toml"
    target.write_text("old")

    def reject(tmp: Path) -> None:
        assert tmp.read_text() == "new"
        raise ValueError("bad file")

    with pytest.raises(ValueError, match="bad file"):
        atomic_write(target, "new", check=reject)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]
    atomic_write(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o644


def test_claim_todo_rereads_under_the_lock(tmp_path: Path) -> None:
    """`run` and `check` both claim their runs this way: a run another process finished since
    the plan was made is not trained twice; a fresh claim drops the old records instead."""
    from bench.runner import claim_todo
    from bench.suites import expand, get_profile, load_suite

    plan = expand(load_suite("variants"), get_profile("smoke"), variants="mlp", seeds=2)
    path = tmp_path / "runs.jsonl"
    append_record(path, _rec(plan[0].run_id))
    assert claim_todo(plan, path, fresh=False) == plan[1:]
    assert claim_todo(plan, path, fresh=True) == plan
    assert read_records(path) == []
