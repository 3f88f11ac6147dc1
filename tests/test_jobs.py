"""`run --jobs N`: worker processes train, this process alone writes the records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.cli import main
from bench.executor_pool import threads_per_job
from tests.conftest import LOCAL_SMOKE, REPO, read_jsonl

CHEAP = LOCAL_SMOKE  # the runs of the session's one `--jobs 1` run (local_smoke_records)


def _run(results: Path, *extra: str) -> int:
    return main(["run", "--suite", "variants", "--profile", "smoke", "--quiet", "--results",
                 str(results), *CHEAP, *extra])


def test_two_jobs_write_the_same_run_ids_as_one_with_one_record_each(
        tmp_path: Path, local_smoke_records: dict[str, dict],
        capsys: pytest.CaptureFixture[str]) -> None:
    two = tmp_path / "two"
    assert _run(two, "--jobs", "2") == 0
    a = list(local_smoke_records.values())  # the same runs with --jobs 1
    b = read_jsonl(two / "variants/smoke/runs.jsonl")
    assert Counter(r["run_id"] for r in a) == Counter(r["run_id"] for r in b)
    assert len(b) == 3 and len({r["run_id"] for r in b}) == 3
    by_id = {r["run_id"]: r for r in a}
    for r in b:
        assert r["status"] == "ok" and r["env"]["executor"] == "pool"
        assert r["env"]["threads"] == threads_per_job(2)
        assert r["config"] == by_id[r["run_id"]]["config"]  # same config, same run id
        assert r["code"]["fingerprint"] == by_id[r["run_id"]]["code"]["fingerprint"]
        assert (two / "variants/smoke/weights" / f"{r['run_id']}.safetensors").is_file()
    capsys.readouterr()
    assert _run(two, "--jobs", "2") == 0  # resume: nothing left to train
    assert "nothing to train" in capsys.readouterr().out
    assert len(read_jsonl(two / "variants/smoke/runs.jsonl")) == 3


@pytest.mark.parametrize(("value", "fragment"), [
    ("0", "--jobs must be ≥ 1"), ("two", "--jobs must be a positive integer or auto")])
def test_bad_jobs_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     value: str, fragment: str) -> None:
    assert _run(tmp_path / "r", "--jobs", value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "r").exists()


def test_jobs_are_for_the_local_executor(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path / "r", "--jobs", "2", "--executor", "ray") == 2
    assert "--jobs is for the local executor" in capsys.readouterr().err


def test_threads_per_job() -> None:
    assert threads_per_job(2, 2) == 1 and threads_per_job(1, 2) == 2
    assert threads_per_job(4, 2) == 1 and threads_per_job(2, 16) == 8


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its entry waits to be reaped


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_workers_exit_when_the_run_process_is_killed(tmp_path: Path) -> None:
    """A `run --jobs 2` killed by a signal must not leave its workers training for nobody."""
    script = tmp_path / "pool.py"  # a file: spawned workers import its functions by name
    script.write_text(textwrap.dedent("""
        import multiprocessing, os, time
        from concurrent.futures import ProcessPoolExecutor
        from bench.executor_pool import _init_worker

        def pid_after(s):
            time.sleep(s)
            return os.getpid()

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=_init_worker,
                                       initargs=(1, os.getpid()))
            print(*set(pool.map(pid_after, [1.0, 1.0])), flush=True)
            pool.submit(time.sleep, 600)
            time.sleep(600)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and all(_alive(w) for w in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
