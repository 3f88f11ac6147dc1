"""The Ray executor: each run (or packed group) is one Ray task; the driver writes the records.

Tasks only train and return record bodies; the driver builds the records (runner.finish_run)
and appends them as tasks finish, so runs.jsonl keeps one writer, its lock, resume and the
report work as with the local executor. Workers read the data root and write weights at the
absolute paths they are given: fine on one machine or a cluster with a shared filesystem.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.suites import PlannedRun


def require_ray() -> Any:
    """Import ray, or a one-line usage error saying how to get it (ray is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed: "
                         "pip install '.[ray]'") from None
    return ray


def init_ray(address: str | None) -> Any:
    """Join `address` (a cluster), or start a quiet local instance over all CPUs."""
    ray = require_ray()
    if ray.is_initialized():  # e.g. a test or a notebook already connected
        return ray
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR,
             "include_dashboard": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=os.cpu_count(), **quiet)
    return ray


def _train_task(cfgs: list[Any], data_root: str, wfiles: list[str],
                threads: int) -> tuple[str, list[Any], bool, dict[str, Any]]:
    """Runs in the worker: train one run or one packed group.

    Returns (start time, record bodies, whether they were trained packed, the worker's
    environment), so a record says how it was trained and which
    machine, GPU and software trained it, not the driver's. The driver's torch thread count is
    set so CPU results match the local executor bit for bit (Ray would otherwise give each
    worker OMP_NUM_THREADS = its CPU share).
    """
    import platform

    import ray
    import torch

    from bench.env import environment
    from bench.runner import now, train_batch

    torch.set_num_threads(threads)
    started = now()
    bodies, packed = train_batch(cfgs, Path(data_root), [Path(w) for w in wfiles])
    env = {**environment(cfgs[0].device), "executor": "ray", "host": platform.node(),
           "ray_node_id": ray.get_runtime_context().get_node_id()}
    return started, bodies, packed, env


def execute_plan_ray(
    todo: list[PlannedRun], results: Path, data_root: Path, *, quiet: bool = False,
    address: str | None = None, gpus_per_run: float | None = None,
    cpus_per_run: float | None = None,
) -> Counter[str]:
    """Submit every run/packed group as a Ray task and record each as it finishes.

    Each task runs torch with the driver's thread count (for bit-identical results), so by
    default it asks Ray for that many CPUs: tasks then never oversubscribe a node's cores.

    No retries (max_retries=0, retry_exceptions=False): a task that raises or whose worker
    dies becomes `failed` records, and the next invocation retries it like any failed run.
    """
    import torch

    from bench import device as dev
    from bench.fingerprint import fingerprints
    from bench.records import weights_path
    from bench.runner import Progress, failed_result, finish_run, now, pack_groups

    ray = init_ray(address)
    threads = torch.get_num_threads()
    cpus = float(threads) if cpus_per_run is None else cpus_per_run
    results, data_root = results.resolve(), data_root.resolve()
    fingerprints([r.config for r in todo], data_root)  # one probe process for all records
    on_gpu = any(dev.is_cuda(r.config.device) for r in todo)
    gpus = gpus_per_run if gpus_per_run is not None else (1.0 if on_gpu else 0.0)
    have = ray.cluster_resources()
    for name, want in (("GPU", gpus), ("CPU", cpus)):
        if want > have.get(name, 0):  # Ray would wait forever for an infeasible task
            raise UsageError(f"each run asks for {want:g} {name}s but the Ray cluster has "
                             f"{have.get(name, 0):g}; lower --{name.lower()}s-per-run")
    remote = ray.remote(_train_task).options(
        num_cpus=cpus, num_gpus=gpus, max_retries=0, retry_exceptions=False)
    progress = Progress(len(todo), quiet=quiet)
    pending: dict[Any, tuple[list[PlannedRun], str]] = {}
    for batch in pack_groups(todo):
        wfiles = [str(weights_path(results, r.suite, r.profile, r.run_id)) for r in batch]
        ref = remote.remote([r.config for r in batch], str(data_root), wfiles, threads)
        pending[ref] = (batch, now())
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            batch, started = pending.pop(ready[0])
            progress.describe(batch)
            env, packed = None, False
            try:
                started, bodies, packed, env = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 — RayTaskError, worker died, …
                cause = getattr(e, "cause", None) or e
                body = failed_result(cause, str(e)[-2000:])
                bodies = [body] * len(batch)
                print(f"task for {batch[0].config.variant} (seeds "
                      f"{','.join(str(r.config.seed) for r in batch)}) failed: {body.error}",
                      file=sys.stderr)
            seeds = [r.config.seed for r in batch] if packed else None
            for run, body in zip(batch, bodies, strict=True):
                progress.done(run, finish_run(run, body, started, results, data_root,
                                              packed_seeds=seeds, env=env))
    finally:
        for ref in pending:  # interrupted: finished runs are recorded, cancel the rest
            ray.cancel(ref, force=True)
    return progress.close()
