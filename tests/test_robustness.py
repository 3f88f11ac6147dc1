"""Faults injected on purpose: kill -9, two writers, garbage input, failing runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.config import parse_assignments, resolve_config
from bench.errors import UsageError
from bench.suites import PROFILES, expand, parse_suite
from tests.conftest import REPO, read_jsonl, run_cli

TINY = ["--set", "train_subset=1024", "--set", "test_subset=256"]


def _popen(results: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--suite", "variants", "--profile", "smoke",
         "--quiet", "--results", str(results), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_records(path: Path, n: int, proc: subprocess.Popen[str], limit: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} records after {limit}s")


def test_kill_9_mid_suite_then_resume(tmp_path: Path, data_root: Path) -> None:
    args = ("--variants", "mlp,cnn2_fidle,cnn_fidle", "--seeds", "2", *TINY)
    path = tmp_path / "variants/smoke/runs.jsonl"
    proc = _popen(tmp_path, *args)
    _wait_for_records(path, 2, proc, limit=300)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = read_jsonl(path)  # every line written is a whole record
    assert 2 <= len(survivors) < 6 and all(r["status"] == "ok" for r in survivors)
    again = run_cli("run", "--suite", "variants", "--profile", "smoke", "--quiet",
                    "--results", str(tmp_path), *args)
    assert again.returncode == 0, again.stderr
    assert f"{6 - len(survivors)} to train, {len(survivors)} already done" in again.stdout
    final = read_jsonl(path)
    ids = [r["run_id"] for r in final]
    assert len(ids) == len(set(ids)) == 6
    assert final[: len(survivors)] == survivors  # finished records untouched


def test_second_writer_is_refused_while_the_lock_is_held(tmp_path: Path,
                                                         data_root: Path) -> None:
    from bench.records import locked, runs_path

    path = runs_path(tmp_path, "variants", "smoke")
    with locked(path):  # as a running `lenet-bench run` holds it
        p = run_cli("run", "--suite", "variants", "--profile", "smoke", "--quiet",
                    "--results", str(tmp_path), "--variants", "mlp", *TINY)
    assert p.returncode == 2, p.stdout
    assert "locked by another lenet-bench process" in p.stderr
    assert "Traceback" not in p.stderr
    assert not path.exists() or path.read_text() == ""


def test_two_processes_at_once_never_duplicate(tmp_path: Path, data_root: Path) -> None:
    path = tmp_path / "variants/smoke/runs.jsonl"
    args = ("--variants", "mlp,cnn2_fidle,cnn_fidle", "--seeds", "2", *TINY)
    procs = [_popen(tmp_path, *args) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    # Either the second is refused while the first trains, or it starts after and finds
    # everything done: never both training, never an interleaved or duplicated record.
    assert codes in ([0, 0], [0, 2]), outs
    for (_out, err), p in zip(outs, procs, strict=True):
        if p.returncode == 2:
            assert "locked by another lenet-bench process" in err and "Traceback" not in err
    ids = [r["run_id"] for r in read_jsonl(path)]
    assert len(ids) == len(set(ids)) == 6


def test_a_failing_run_is_recorded_and_the_suite_goes_on(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import bench.runner as runner
    from bench.cli import main

    real = runner.run_training

    def flaky(cfg, *a, **k):  # type: ignore[no-untyped-def]
        if cfg.variant == "cnn2_fidle":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        if cfg.variant == "cnn_fidle":
            raise RuntimeError("boom")
        return real(cfg, *a, **k)

    monkeypatch.setattr(runner, "run_training", flaky)
    rc = main(["run", "--jobs", "1", "--suite", "variants", "--profile", "smoke", "--quiet",
               "--results",
               str(tmp_path), "--variants", "cnn2_fidle,cnn_fidle,mlp", *TINY])
    assert rc == 0
    recs = {r["variant"]: r for r in read_jsonl(tmp_path / "variants/smoke/runs.jsonl")}
    assert recs["cnn2_fidle"]["status"] == "failed"
    assert "OutOfMemoryError" in recs["cnn2_fidle"]["error"]
    assert recs["cnn_fidle"]["status"] == "failed" and "boom" in recs["cnn_fidle"]["error"]
    assert recs["mlp"]["status"] == "ok"
    summary = (tmp_path / "summary.md").read_text()
    assert "| cnn_fidle" in summary  # failed runs are counted, not hidden


def test_huge_grid_asks_for_yes(tmp_path: Path) -> None:
    p = run_cli("run", "--suite", "variants", "--profile", "full", "--seeds", "60",
                "--results", str(tmp_path / "r"))
    assert p.returncode == 2 and "pass --yes" in p.stderr
    assert not (tmp_path / "r").exists()


# --- property-based: any input is a valid config or a one-line UsageError --------------------

KEYS = st.sampled_from(["lr", "batch_size", "num_epochs", "optimizer", "channels", "fc",
                        "kernel_size", "activation", "pool", "padding", "train_subset",
                        "init", "loss", "gamma", "amp_bf16", "nope", "lr lr", ""])
VALUES = st.one_of(
    st.text(max_size=20), st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.integers(-5, 50), max_size=5).map(str),
    st.sampled_from(["relu", "max", "none", "true", "[[1]]", "{'a': 1}", "1e999", "(1,)",
                     "[" * 200, "sgd", "adam", "-0.0"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, VALUES), max_size=4))
def test_any_set_override_is_config_or_usage_error(pairs: list[tuple[str, str]]) -> None:
    items = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = resolve_config("lenet_tweakable", None, 0, parse_assignments(items))
    except UsageError as e:
        assert "\n" not in str(e) and str(e)
        return
    json.dumps(cfg.to_dict(), allow_nan=False)  # a resolved config is always recordable
    assert cfg.lr > 0 and cfg.batch_size > 0


TOML_VALUES = st.one_of(
    st.integers(-3, 9), st.text(max_size=8), st.booleans(),
    st.lists(st.integers(0, 8), max_size=3), st.sampled_from(['"*"', '"recipe"', "[]"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["name", "variants", "datasets", "factor", "question",
                                     "bogus", "grid", "set"]), TOML_VALUES, max_size=4),
    st.dictionaries(st.sampled_from(["lr", "kernel_size", "seeds", "channels"]),
                    st.lists(TOML_VALUES, max_size=3), max_size=2),
)
def test_any_suite_file_is_suite_or_usage_error(group: dict, grid: dict) -> None:
    def toml(v: object) -> str:
        return json.dumps(v) if not (isinstance(v, str) and v[:1] in '"[') else v

    lines = ["[[groups]]"] + [f"{k} = {toml(v)}" for k, v in group.items() if k != "grid"]
    if grid:
        lines.append("[groups.grid]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in grid.items()]
    text = "\n".join(lines) + "\n"
    try:
        suite = parse_suite("prop", text)
        plan = expand(suite, PROFILES["smoke"], seeds=1)
    except UsageError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert len({r.run_id for r in plan}) == len(plan) > 0
