"""`run --jobs N`: N worker processes on this machine, each with cores ÷ N torch threads.

On a small CPU, several 1-thread trainings finish a suite sooner than one 2-thread training
at a time (small convolutions do not scale across threads). Workers only train and return
results; this process, the only writer, builds each record (runner.finish_run) and appends it
under the results lock as its run finishes, so resume, the lock and the report work as with
one job. A record's `env.threads` says how many threads trained it: the bits of a CPU run
depend on it (the config and the run id do not).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.suites import PlannedRun


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """cores ÷ jobs, at least 1."""
    return max(1, (cores or os.cpu_count() or 1) // jobs)


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """A worker's watchdog: a pool worker outlives a parent that was killed (SIGTERM, SIGKILL)
    and would train on for nobody, taking the cores from the next run."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _train(cfgs: list[Any], data_root: str, wfiles: list[str]
           ) -> tuple[str, list[Any], bool, dict[str, Any]]:
    """In a worker: train one run or one packed group (runner.train_batch)."""
    from bench.env import environment
    from bench.runner import now, train_batch

    started = now()
    results, packed = train_batch(cfgs, Path(data_root), [Path(w) for w in wfiles])
    return started, results, packed, {**environment(cfgs[0].device), "executor": "pool"}


def execute_plan_pool(todo: list[PlannedRun], results: Path, data_root: Path, *, jobs: int,
                      quiet: bool = False) -> Counter[str]:
    """Train `todo` in `jobs` processes; records are appended here as runs finish."""
    from bench.fingerprint import fingerprints
    from bench.records import weights_path
    from bench.runner import Progress, failed_result, finish_run, now, pack_groups

    if jobs < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {jobs}")
    fingerprints([r.config for r in todo], data_root)  # one probe process for all records
    threads = threads_per_job(jobs)
    progress = Progress(len(todo), quiet=quiet)
    batches = pack_groups(todo)
    # spawn, not fork: a forked torch (OpenMP pools, locks held) can hang in the child.
    ctx = multiprocessing.get_context("spawn")
    pending: dict[Future[Any], tuple[list[PlannedRun], str]] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(batches)), mp_context=ctx,
                             initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        for batch in batches:
            wfiles = [str(weights_path(results, r.suite, r.profile, r.run_id)) for r in batch]
            fut = pool.submit(_train, [r.config for r in batch], str(data_root), wfiles)
            pending[fut] = (batch, now())
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    batch, started = pending.pop(fut)
                    progress.describe(batch)
                    env, packed = None, False
                    try:
                        started, outs, packed, env = fut.result()
                    except Exception as e:  # noqa: BLE001 — a run's error, or a dead worker
                        out = failed_result(e, f"{type(e).__name__}: {e}")
                        outs = [out] * len(batch)
                        print(f"worker for {batch[0].config.variant} failed: {out.error}",
                              file=sys.stderr)
                    seeds = [r.config.seed for r in batch] if packed else None
                    for run, out in zip(batch, outs, strict=True):
                        progress.done(run, finish_run(run, out, started, results, data_root,
                                                      packed_seeds=seeds, env=env))
        except BaseException:
            for fut in pending:  # interrupted: finished runs are recorded, drop the rest
                fut.cancel()
            raise
    return progress.close()
