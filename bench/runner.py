"""Execute planned runs one by one, appending a record after each (the local executor)."""

from __future__ import annotations

import sys
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.config import RunConfig
from bench.engine import run_training
from bench.env import environment
from bench.fingerprint import THIS, code_block, fingerprints, judge, made_by_this_code
from bench.loop import EpochEvent, RunResult
from bench.records import (
    RECORD_VERSION,
    Record,
    RunRecord,
    all_runs_files,
    append_record,
    finished_records,
    remove_records,
    runs_path,
    weights_path,
)
from bench.suites import PlannedRun


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_record(run: PlannedRun, result: RunResult, started: str,
                env: dict[str, Any] | None = None,
                code: dict[str, Any] | None = None) -> RunRecord:
    """The full record: identity, resolved config, code, outcome, metrics, history, environment.

    `env` is the environment of the process that trained (a Ray worker's, possibly on another
    machine); by default this process's."""
    cfg = run.config
    record: RunRecord = {
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
        "code": code or {},
        "status": result.status,
        "error": result.error,
        "diverged_epoch": result.diverged_epoch,
        "metrics": result.metrics,
        "history": result.history,
        "timing": result.timing,
        "env": {**(env or environment(cfg.device)), "started": started, "ended": now()},
    }
    if result.traceback is not None:
        record["traceback"] = result.traceback
    if result.data:
        record["data"] = result.data
    if cfg.holdout is not None:
        validation_names(record, cfg.holdout)
    return record


#: Metrics that describe the model, not the split it was scored on: never renamed.
MODEL_METRICS = ("params_trainable", "params_total", "flops_per_example")


def _val_name(key: str) -> str:
    if key.startswith("test_"):
        return "val_" + key[len("test_"):]
    return "n_val" if key == "n_test" else key


def validation_names(record: RunRecord, holdout: int) -> None:
    """A holdout run scored the validation split: its record says so in every metric's name
    (val_acc, val_top5_error, val_confusion, …), so no reader can take it for a test number."""
    record["metrics"] = {
        (k if k in MODEL_METRICS else _val_name(k) if k.startswith(("test_", "n_test"))
         else f"val_{k}"): v
        for k, v in record["metrics"].items()}
    record["history"] = [{_val_name(k): v for k, v in row.items()} for row in record["history"]]
    data = record.get("data")
    if data and "test" in data:
        data["validation"] = {**data.pop("test"),
                              "rows": f"the last {holdout} images of the training split"}


def failed_result(e: BaseException, tb: str | None = None) -> RunResult:
    """The result of a run that raised: the suite goes on and the next invocation retries it."""
    return RunResult(status="failed", error=f"{type(e).__name__}: {e}",
                     traceback=tb if tb is not None else traceback.format_exc(limit=3))


def finish_run(run: PlannedRun, result: RunResult, started: str, results: Path,
               data_root: Path, packed_seeds: list[int] | None = None,
               env: dict[str, Any] | None = None) -> str:
    """Build the record and append it; shared by every executor so records look the same."""
    record = make_record(run, result, started, env, code_block(run.config, data_root))
    if packed_seeds is not None:
        record["packed_seeds"] = packed_seeds
    append_record(runs_path(results, run.suite, run.profile), record)
    return record["status"]


def train_batch(cfgs: list[RunConfig], data_root: Path, wfiles: list[Path],
                on_epoch: Callable[[int, EpochEvent], None] | None = None,
                ) -> tuple[list[RunResult], bool]:
    """Train one run, or seeds of one configuration packed; every executor calls this.

    A packed group that fails is trained one by one (the only place that falls back), and a
    run that raises becomes a `failed` result while the others still count. Returns
    (results, whether they were really trained packed)."""
    from bench.packed import run_packed

    def one(k: int) -> RunResult:
        try:
            cb = None if on_epoch is None else (lambda ev: on_epoch(k, ev))
            return run_training(cfgs[k], data_root, weights_file=wfiles[k], on_epoch=cb)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 — any failure of one run must not stop the suite
            print(f"run of {cfgs[k].variant} seed {cfgs[k].seed} failed: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            return failed_result(e)

    if len(cfgs) == 1:
        return [one(0)], False
    try:
        return run_packed(cfgs, data_root, weights_files=wfiles, on_epoch=on_epoch), True
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 — fall back to one by one, which records failures
        print(f"packed training of {cfgs[0].variant} failed ({type(e).__name__}: {e}); "
              "training the seeds one by one", file=sys.stderr)
        return [one(k) for k in range(len(cfgs))], False


def execute_batch(batch: list[PlannedRun], results: Path, data_root: Path, *,
                  bar: Any = None) -> list[str]:
    """Train a batch (one run, or a packed group) here and append a record per run."""
    started = now()
    wfiles = [weights_path(results, r.suite, r.profile, r.run_id) for r in batch]

    def on_epoch(k: int, ev: EpochEvent) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{batch[k].config.variant} ep {ev.epoch}/{ev.num_epochs} "
                                f"acc {100 * ev.row['test_acc']:.2f}%")

    outs, packed = train_batch([r.config for r in batch], data_root, wfiles, on_epoch)
    seeds = [r.config.seed for r in batch] if packed else None
    return [finish_run(run, out, started, results, data_root, packed_seeds=seeds)
            for run, out in zip(batch, outs, strict=True)]


class Reuse:
    """Which finished records of a results file stand for runs of the plan.

    A record is reused only when the code that made it trains its configuration as this
    checkout does (same behavioural fingerprint under the probe's fixed kernel set:
    bench.fingerprint); otherwise it is stale and its run is trained again (unless
    `keep_stale`, which reuses it and says so). `verdicts` keeps why, per run id, for the
    message (`bench.fingerprint.judge`).
    """

    def __init__(self, data_root: Path, *, keep_stale: bool = False) -> None:
        self.data_root, self.keep_stale = data_root, keep_stale
        self.verdicts: dict[str, str] = {}

    def split(self, plan: list[PlannedRun], path: Path) -> tuple[list[PlannedRun],
                                                                   list[PlannedRun],
                                                                   list[PlannedRun]]:
        """(current, stale, missing): runs with a record made by this code, with one this
        code does not recognise (`verdicts` says why), and with no finished record. The
        records are judged by one probe process (the executors probe what they train)."""
        done = finished_records(path)
        found = [(run, done[run.run_id]) for run in plan if run.run_id in done]
        said = judge([(run.config, rec) for run, rec in found], self.data_root)
        self.verdicts.update({run.run_id: v for (run, _), v in zip(found, said, strict=True)})
        now = {run.run_id for (run, _), v in zip(found, said, strict=True) if v == THIS}
        current = [r for r in plan if r.run_id in now]
        stale = [r for r in plan if r.run_id in done and r.run_id not in now]
        missing = [r for r in plan if r.run_id not in done]
        return current, stale, missing

    def is_current(self, run: PlannedRun, record: Record) -> bool:
        return made_by_this_code([(run.config, record)], self.data_root)[0]

    def todo(self, plan: list[PlannedRun], path: Path) -> list[PlannedRun]:
        _, stale, missing = self.split(plan, path)
        return missing if self.keep_stale else stale + missing


def copied_record(run: PlannedRun, rec: Record, src_suite: str, src_profile: str) -> Record:
    """A finished record of an identical run (same run id: same resolved config) under this
    run's identity (suite, profile, group, question, memberships), saying where it came from;
    its numbers, history, timing, env and code stay the source's."""
    return {
        **rec,
        "suite": run.suite, "profile": run.profile, "group": run.group,
        "question": run.question, "factor": run.factor, "factor_value": run.factor_value,
        "memberships": run.memberships, "overrides": run.overrides,
        "reused_from": {"suite": src_suite, "profile": src_profile, "run_id": run.run_id},
    }


def identical_elsewhere(todo: list[PlannedRun], results: Path,
                        reuse: Reuse) -> dict[str, tuple[str, Record]]:
    """run id → (profile, record): runs of `todo` that another profile of their suite has
    finished `ok` with this code. The run id hashes the whole resolved config, so the same
    id is the same training (profile `full` repeats `reference`'s runs on the recipe's own
    dataset): copying it is not a shortcut but the same record."""
    if not todo:
        return {}
    suite, profile = todo[0].suite, todo[0].profile
    found: list[tuple[PlannedRun, str, Record]] = []
    for path in all_runs_files(results):
        if path.parent.parent.name != suite or path.parent.name == profile:
            continue
        done = finished_records(path)
        found += [(r, path.parent.name, done[r.run_id]) for r in todo
                  if r.run_id in done and done[r.run_id].get("status") == "ok"]
    ok = made_by_this_code([(r.config, rec) for r, _, rec in found], reuse.data_root)
    out: dict[str, tuple[str, Record]] = {}
    for (run, src, rec), yes in zip(found, ok, strict=True):
        if yes:
            out.setdefault(run.run_id, (src, rec))
    return out


def copy_identical(todo: list[PlannedRun], results: Path, reuse: Reuse
                   ) -> tuple[list[PlannedRun], Counter[str]]:
    """Copy the runs `identical_elsewhere` finds (records, and weights where they exist) into
    this profile's records instead of training them. Call under the runs file's lock.
    Returns (still to train, runs copied per source profile)."""
    from bench.fsio import atomic_write

    same = identical_elsewhere(todo, results, reuse)
    copied: Counter[str] = Counter()
    for run in todo:
        if run.run_id not in same:
            continue
        src, rec = same[run.run_id]
        wfile = weights_path(results, run.suite, src, run.run_id)
        if wfile.is_file():
            atomic_write(weights_path(results, run.suite, run.profile, run.run_id),
                         wfile.read_bytes())
        append_record(runs_path(results, run.suite, run.profile),
                      copied_record(run, rec, run.suite, src))
        copied[src] += 1
    return [r for r in todo if r.run_id not in same], copied


def claim_todo(todo: list[PlannedRun], path: Path, *, fresh: bool,
               reuse: Reuse | None = None) -> list[PlannedRun]:
    """Under the runs file's lock: the runs to train now. `fresh` drops their old records;
    otherwise runs another process finished since we looked (with this code, when `reuse`
    judges) are not trained twice. A stale record stays until its new one supersedes it."""
    if fresh:
        remove_records(path, {r.run_id for r in todo})
        return todo
    if reuse is not None:
        again = {r.run_id for r in reuse.todo(todo, path)}
    else:
        again = {r.run_id for r in todo} - set(finished_records(path))
    return [r for r in todo if r.run_id in again]


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
            new: list[PlannedRun] | None = (
                [] if packable(cfg, create_variant(cfg.variant, **cfg.model)) else None)
            groups[key] = new
            if new is not None:
                order.append(new)
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
    fingerprints([r.config for r in todo], data_root)  # one probe process for all records
    progress = Progress(len(todo), quiet=quiet)
    for batch in pack_groups(todo):
        progress.describe(batch)
        statuses = execute_batch(batch, results, data_root, bar=progress.bar)
        for run, status in zip(batch, statuses, strict=True):
            progress.done(run, status)
    return progress.close()
