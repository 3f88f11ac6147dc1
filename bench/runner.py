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


def execute_plan(
    todo: list[PlannedRun], results: Path, data_root: Path, *, quiet: bool = False
) -> Counter[str]:
    counts: Counter[str] = Counter()
    bar = tqdm(total=len(todo), unit="run", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    for run in todo:
        bar.set_description(f"{run.config.variant}/{run.config.dataset}/s{run.config.seed}")
        status = execute_one(run, results, data_root, bar=bar)
        counts[status] += 1
        bar.update(1)
        if quiet:
            print(f"[{sum(counts.values())}/{len(todo)}] {run.run_id} {run.config.variant} "
                  f"{run.config.dataset} seed {run.config.seed}: {status}", flush=True)
    bar.close()
    return counts
