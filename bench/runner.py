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
from bench.records import append_record, runs_path, weights_path
from bench.suites import PlannedRun

RECORD_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_record(run: PlannedRun, body: dict[str, Any], started: str) -> dict[str, Any]:
    """The full record: identity, resolved config, outcome, metrics, history, environment."""
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
        "env": {**environment(cfg.device), "started": started, "ended": _now()},
    }


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
        tb = traceback.format_exc(limit=3)
        body = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": tb}
        print(f"run {run.run_id} ({run.config.variant}) failed: {type(e).__name__}: {e}",
              file=sys.stderr)
    record = make_record(run, body, started)
    if "traceback" in body:
        record["traceback"] = body["traceback"]
    append_record(runs_path(results, run.suite, run.profile), record)
    return record["status"]


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
    statuses = []
    for run, body in zip(runs, bodies, strict=True):
        record = make_record(run, body, started)
        record["packed_seeds"] = [r.config.seed for r in runs]
        append_record(runs_path(results, run.suite, run.profile), record)
        statuses.append(record["status"])
    return statuses


def pack_groups(todo: list[PlannedRun]) -> list[list[PlannedRun]]:
    """Consecutive batches of runs to train together (singletons where packing is off)."""
    from bench.packed import can_pack, packing_key
    from variants import create_variant

    groups: dict[str, list[PlannedRun]] = {}
    order: list[list[PlannedRun]] = []
    for run in todo:
        cfg = run.config
        if not cfg.pack_seeds or not can_pack(create_variant(cfg.variant, **cfg.model)):
            order.append([run])
            continue
        key = packing_key(cfg)
        if key not in groups:
            groups[key] = []
            order.append(groups[key])
        groups[key].append(run)
    return order


def execute_plan(
    todo: list[PlannedRun], results: Path, data_root: Path, *, quiet: bool = False
) -> Counter[str]:
    counts: Counter[str] = Counter()
    bar = tqdm(total=len(todo), unit="run", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    for batch in pack_groups(todo):
        first = batch[0].config
        seeds = ",".join(str(r.config.seed) for r in batch)
        bar.set_description(f"{first.variant}/{first.dataset}/s{seeds}")
        if len(batch) == 1:
            statuses = [execute_one(batch[0], results, data_root, bar=bar)]
        else:
            statuses = execute_packed(batch, results, data_root, bar=bar)
        for run, status in zip(batch, statuses, strict=True):
            counts[status] += 1
            bar.update(1)
            if quiet:
                print(f"[{sum(counts.values())}/{len(todo)}] {run.run_id} {run.config.variant} "
                      f"{run.config.dataset} seed {run.config.seed}: {status}", flush=True)
    bar.close()
    return counts
