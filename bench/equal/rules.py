"""The lr pick of the equal-terms suite: a written rule applied to validation records only.

equal-lr trains every variant × dataset × lr of the grid on the first 50,000 training images
and scores the 10,000 held out (records name those metrics val_*); equal-terms trains each
cell at the lr this rule picks from those records. The rule reads `val_acc` and nothing else
of a record's numbers, and equal-lr never loads the test split, so no test label can move it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.records import RunRecord
from bench.suites import Choices, NeedsRecords, PlannedRun

RULES = {
    "max_val_acc": (
        "For each variant and dataset, take equal-lr's runs of the same profile, one "
        "configuration per lr of its grid; every planned seed of every lr must have a record "
        "(a run that diverged counts as validation accuracy 0: that lr failed, it is not "
        "missing). Pick the lr with the highest mean final validation accuracy over seeds (the "
        "10,000 images held out of the training split, after the last epoch); a tie goes to "
        "the smaller lr. The test set plays no part."
    ),
}

#: Override keys a pick_lr group will not take from the user: they would undo the pick or
#: score the final runs on the validation split.
FORBIDDEN_OVERRIDES = ("lr", "holdout")


def val_acc(rec: RunRecord) -> float | None:
    """A selection run's score: its final validation accuracy; 0 for a diverged run (a failed
    lr); None when it has none (failed, or not a holdout run)."""
    if rec["status"] == "diverged":
        return 0.0
    if rec["status"] != "ok":
        return None
    v = rec["metrics"].get("val_acc")
    return float(v) if isinstance(v, (int, float)) else None


def rule_table(by_lr: dict[float, list[RunRecord | None]]) -> list[dict[str, Any]]:
    """One row per lr: its seeds' validation accuracies (None: no usable record yet)."""
    table = []
    for lr in sorted(by_lr):
        recs = by_lr[lr]
        scored = [(r, val_acc(r)) for r in recs if r is not None]
        accs = [a for _, a in scored if a is not None]
        table.append({"lr": lr, "n": len(accs), "planned": len(recs),
                      "mean_val_acc": statistics.fmean(accs) if accs else None,
                      "std_val_acc": statistics.stdev(accs) if len(accs) > 1 else None,
                      "diverged": sum(r["status"] == "diverged" for r, _ in scored),
                      "run_ids": [r["run_id"] for r, a in scored if a is not None]})
    return table


def pick(table: list[dict[str, Any]]) -> float | None:
    """The rule's choice from a complete table: highest mean validation accuracy, ties to the
    smaller lr (None while any planned seed lacks a usable record)."""
    if not table or any(row["n"] < row["planned"] for row in table):
        return None
    best = min(table, key=lambda row: (-round(row["mean_val_acc"], 9), row["lr"]))
    return float(best["lr"])


def apply_rule(rule: str, planned: list[PlannedRun], records: dict[str, RunRecord]
               ) -> dict[str, Any]:
    """The rule on one cell: `planned` are its selection runs, `records` the suite's latest
    record per run id. Returns the pick and the table it was made from; NeedsRecords when a
    planned run has no usable record yet."""
    if rule not in RULES:
        raise UsageError(f"unknown pick_lr rule {rule!r}; valid: {', '.join(RULES)}")
    by_lr: dict[float, list[RunRecord | None]] = {}
    for run in sorted(planned, key=lambda r: (r.config.lr, r.config.seed)):
        by_lr.setdefault(run.config.lr, []).append(records.get(run.run_id))
    table = rule_table(by_lr)
    lr = pick(table)
    if lr is None:
        missing = sum(row["planned"] - row["n"] for row in table)
        raise NeedsRecords(f"{missing} of {len(planned)} selection runs have no finished record")
    return {"rule": rule, "rule_text": RULES[rule], "lr": lr, "table": table}


def pick_lr_choices(spec: dict[str, Any], suite_name: str, profile: Any, *,
                    results: Path | None, seeds: int | None,
                    overrides: dict[str, Any] | None, device: str
                    ) -> Callable[[str, str], Choices]:
    """A pick_lr group's configurations per (variant, dataset): the lr the rule picks from
    the selection suite's records of the same profile."""
    from bench.records import latest_by_id, read_records, runs_path
    from bench.suites import expand, load_suite

    src, rule = spec["suite"], spec["rule"]
    bad = sorted(set(overrides or {}) & set(FORBIDDEN_OVERRIDES))
    if bad:
        raise UsageError(f"suite {suite_name!r} picks lr from {src} and trains on the full "
                         f"training set: --set {', '.join(bad)} is not allowed here")
    how = f"run {src} first (lenet-bench run --suite {src} --profile {profile.name})"
    if results is None:
        raise NeedsRecords(f"suite {suite_name!r} picks lr from {src}'s records and needs a "
                           f"results directory; {how}")
    path = runs_path(results, src, profile.name)
    cache: dict[str, dict[str, RunRecord]] = {}

    def cell(variant: str, dataset: str) -> Choices:
        if "records" not in cache:
            cache["records"] = latest_by_id(read_records(path))
        planned = expand(load_suite(src), profile, variants=variant, datasets=[dataset],
                         seeds=seeds, overrides=overrides, device=device)
        try:
            pick = apply_rule(rule, planned, cache["records"])
        except NeedsRecords as e:
            raise NeedsRecords(f"suite {suite_name!r}: {variant} on {dataset}: {e} in {path}; "
                               f"{how}") from None
        pick = {"suite": src, "profile": profile.name, "text": spec.get("text", ""), **pick}
        return [({"lr": pick["lr"]}, {"level": pick["lr"], "lr_pick": pick})]

    return cell
