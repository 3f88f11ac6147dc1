"""Execute planned runs one by one, appending a record after each (the local executor)."""

from __future__ import annotations

import sys
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.engine import EpochEvent, run_training
from bench.env import environment
from bench.records import (
    append_record,
    finished_ids,
    remove_records,
    runs_path,
    weights_path,
)
from bench.suites import PlannedRun

RECORD_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_record(run: PlannedRun, body: dict[str, Any], started: str,
                env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full record: identity, resolved config, outcome, metrics, history, environment.

    `env` is the environment of the process that trained (a Ray worker's, possibly on another
    machine); by default this process's."""
    cfg = run.config
    return {
        "record_version": RECORD_VERSION,
        "run_id": run.run_id,
        "suite": run.suite,
        "profile": run.profile,
        "group": run.group,
        "question": run.question,
        "factor": run.factor,
        "factor_value": run.factor_value,
        "memberships": run.memberships,
        "overrides": run.overrides,
        "variant": cfg.variant,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "status": body["status"],
        "error": body.get("error"),
        "diverged_epoch": body.get("diverged_epoch"),
        "metrics": body.get("metrics", {}),
        "history": body.get("history", []),
        "timing": body.get("timing", {}),
        "env": {**(env or environment(cfg.device)), "started": started, "ended": _now()},
    }


def failed_body(e: BaseException, tb: str | None = None) -> dict[str, Any]:
    """The body of a run that raised: the suite goes on and the next invocation retries it."""
    return {"status": "failed", "error": f"{type(e).__name__}: {e}",
            "traceback": tb if tb is not None else traceback.format_exc(limit=3)}


def finish_run(run: PlannedRun, body: dict[str, Any], started: str, results: Path,
               packed_seeds: list[int] | None = None, env: dict[str, Any] | None = None) -> str:
    """Build the record and append it; shared by every executor so records look the same."""
    record = make_record(run, body, started, env)
    if "traceback" in body:
        record["traceback"] = body["traceback"]
    if packed_seeds is not None:
        record["packed_seeds"] = packed_seeds
    append_record(runs_path(results, run.suite, run.profile), record)
    return record["status"]


def execute_one(run: PlannedRun, results: Path, data_root: Path, *, bar: Any = None) -> str:
    """Train one run and append its record; an exception becomes a `failed` record."""
    started = _now()
    wfile = weights_path(results, run.suite, run.profile, run.run_id)

    def on_epoch(ev: EpochEvent) -> None:
        if bar is not None:
            bar.set_postfix_str(
                f"{run.config.variant} ep {ev.epoch}/{ev.num_epochs} "
                f"acc {100 * ev.row['test_acc']:.2f}%"
            )

    try:
        body = run_training(run.config, data_root, weights_file=wfile, on_epoch=on_epoch)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 — any failure of one run must not stop the suite
        body = failed_body(e)
        print(f"run {run.run_id} ({run.config.variant}) failed: {body['error']}", file=sys.stderr)
    return finish_run(run, body, started, results)


def execute_packed(
    runs: list[PlannedRun], results: Path, data_root: Path, *, bar: Any = None
) -> list[str]:
    """Train runs that differ only in seed as one packed model; one record per member."""
    from bench.packed import run_packed

    started = _now()
    wfiles = [weights_path(results, r.suite, r.profile, r.run_id) for r in runs]
    try:
        bodies = run_packed([r.config for r in runs], data_root, weights_files=wfiles)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 — fall back to one by one, which records failures
        print(f"packed training of {runs[0].config.variant} failed ({type(e).__name__}: {e}); "
              "training the seeds one by one", file=sys.stderr)
        return [execute_one(r, results, data_root, bar=bar) for r in runs]
    seeds = [r.config.seed for r in runs]
    return [finish_run(run, body, started, results, packed_seeds=seeds)
            for run, body in zip(runs, bodies, strict=True)]


def claim_todo(todo: list[PlannedRun], path: Path, *, fresh: bool) -> list[PlannedRun]:
    """Under the runs file's lock: the runs to train now. `fresh` drops their old records;
    otherwise runs another process finished since we looked are not trained twice."""
    if fresh:
        remove_records(path, {r.run_id for r in todo})
        return todo
    done = finished_ids(path)
    return [r for r in todo if r.run_id not in done]


def pack_groups(todo: list[PlannedRun]) -> list[list[PlannedRun]]:
    """Consecutive batches of runs to train together (singletons where packing is off)."""
    from bench.packed import packable, packing_key
    from variants import create_variant

    groups: dict[str, list[PlannedRun] | None] = {}  # None: this configuration can't pack
    order: list[list[PlannedRun]] = []
    for run in todo:
        cfg = run.config
        if not cfg.pack_seeds:
            order.append([run])
            continue
        key = packing_key(cfg)
        if key not in groups:  # build the model once per configuration, not once per seed
            groups[key] = [] if packable(cfg, create_variant(cfg.variant, **cfg.model)) else None
            if groups[key] is not None:
                order.append(groups[key])
        group = groups[key]
        if group is None:
            order.append([run])
        else:
            group.append(run)
    return order


class Progress:
    """One tqdm bar over runs, or one line per run under --quiet; shared by the executors."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total, self.quiet = total, quiet
        self.counts: Counter[str] = Counter()
        self.bar = tqdm(total=total, unit="run", disable=quiet, file=sys.stderr,
                        dynamic_ncols=True)

    def describe(self, batch: list[PlannedRun]) -> None:
        first = batch[0].config
        seeds = ",".join(str(r.config.seed) for r in batch)
        self.bar.set_description(f"{first.variant}/{first.dataset}/s{seeds}")

    def done(self, run: PlannedRun, status: str) -> None:
        self.counts[status] += 1
        self.bar.update(1)
        if self.quiet:
            print(f"[{sum(self.counts.values())}/{self.total}] {run.run_id} "
                  f"{run.config.variant} {run.config.dataset} seed {run.config.seed}: {status}",
                  flush=True)

    def close(self) -> Counter[str]:
        self.bar.close()
        return self.counts


def execute_plan(
    todo: list[PlannedRun], results: Path, data_root: Path, *, quiet: bool = False
) -> Counter[str]:
    progress = Progress(len(todo), quiet=quiet)
    for batch in pack_groups(todo):
        progress.describe(batch)
        if len(batch) == 1:
            statuses = [execute_one(batch[0], results, data_root, bar=progress.bar)]
        else:
            statuses = execute_packed(batch, results, data_root, bar=progress.bar)
        for run, status in zip(batch, statuses, strict=True):
            progress.done(run, status)
    return progress.close()
