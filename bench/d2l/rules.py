"""ex3's rule and run reuse: what the `d2l-*` suites need before anything trains.

- ex3's rule, which picks ex2's best configuration from ex2's records, so the "improved
  network" tried on MNIST is chosen by a written rule and never by hand;
- reuse of a run that another suite already trained with the identical config (ex5 analyses
  the same two trained networks as ex4; training is deterministic, so retraining them would
  only cost time and give the same numbers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import config_key, overrides_label
from bench.d2l.common import (
    Record,
    acc_of,
    mean_pm,
    minimal_overrides,
    pct,
    stats_of,
)
from bench.errors import UsageError
from bench.fsio import atomic_write
from bench.suites import NeedsRecords

if TYPE_CHECKING:
    from bench.suites import Group, PlannedRun, Profile, Suite

RULES = {
    "max_mean_test_acc": (
        "Among the source suite's configurations trained for its usual number of epochs (the "
        "most common one, so longer epochs-curve runs cannot win by training longer), keep "
        "those whose every planned seed has a record with status ok and at least as many "
        "seeds as this profile asks for (3 when it asks for more); pick the highest mean "
        "final test accuracy over seeds; ties go to fewer trainable parameters, then to the "
        "shorter override list. The pick says whether those runs had their recipe's full "
        "budget (all epochs, full training set) or were cut short."
    ),
}

#: The fewest seeds a configuration needs to be picked when the profile asks for more.
PICK_MIN_SEEDS = 3


# --- ex3: the best-configuration rule -------------------------------------------------------

def full_budget(rec: Record) -> bool:
    """Trained at its variant's recipe: all the recipe's epochs on the full training set."""
    from variants import get_spec

    cfg = rec["config"]
    try:
        epochs = get_spec(rec["variant"]).recipe.num_epochs
    except ValueError:  # a variant no longer registered
        return False
    return cfg.get("num_epochs") == epochs and cfg.get("train_subset") is None


def candidates(records: list[Record], planned: dict[str, int] | None = None,
               ignore: Any = ()) -> list[dict]:
    """Records grouped by configuration, with what the rule needs to judge each.

    `ignore`: override keys every run shares (the user's --set), left out of `overrides`.
    """
    by: dict[str, list[Record]] = {}
    for r in records:
        by.setdefault(config_key(r["config"]), []).append(r)
    out = []
    for key, recs in by.items():
        recs.sort(key=lambda r: r["config"]["seed"])
        accs = [a for a in (acc_of(r) for r in recs) if a is not None]
        s = stats_of(accs)
        params = next((r["metrics"].get("params_trainable") for r in recs
                       if (r.get("metrics") or {}).get("params_trainable") is not None), None)
        groups = sorted({m["group"] for r in recs
                         for m in (r.get("memberships") or [{"group": r["group"]}])})
        out.append({
            "key": key,
            "variant": recs[0]["variant"],
            "overrides": minimal_overrides(recs[0]["variant"], recs[0].get("overrides") or {},
                                           ignore),
            "groups": groups,
            "num_epochs": recs[0]["config"]["num_epochs"],
            "full_budget": all(full_budget(r) for r in recs),
            "n": len(recs),
            "n_ok": len(accs),
            "planned": (planned or {}).get(key, len(recs)),
            "mean": s["mean"],
            "std": s["std"],
            "params": params,
            "run_ids": [r["run_id"] for r in recs],
        })
    return out


def apply_rule(
    rule: str, records: list[Record], *, min_seeds: int, planned: dict[str, int] | None = None,
    ignore: Any = (),
) -> dict[str, Any]:
    """Apply a named rule (see RULES) to a suite's records; returns the pick and why.

    `planned`: runs the source suite planned per configuration key (all must be ok);
    `ignore`: override keys shared by every run (the user's --set), not part of the pick.
    """
    if rule not in RULES:
        raise UsageError(f"unknown best_of rule {rule!r}; valid: {', '.join(RULES)}")
    cands = candidates(records, planned, ignore)
    if not cands:
        raise NeedsRecords("no records to choose from")
    per_epochs = Counter(c["num_epochs"] for c in cands)
    usual = min(per_epochs, key=lambda e: (-per_epochs[e], e))
    qualified = [
        c for c in cands
        if c["num_epochs"] == usual and c["mean"] is not None and c["n_ok"] == c["n"]
        and c["n_ok"] >= max(c["planned"], min_seeds)
    ]
    if not qualified:
        raise NeedsRecords(
            f"no configuration has all its seeds (≥ {min_seeds}) finished ok at {usual} epochs"
        )
    qualified.sort(key=lambda c: (-round(c["mean"], 9), c["params"] or 0,
                                  len(c["overrides"]), overrides_label(c["overrides"])))
    best = qualified[0]

    def brief(c: dict[str, Any]) -> dict[str, Any]:
        return {"overrides": c["overrides"], "groups": c["groups"], "n": c["n_ok"],
                "mean_test_acc": c["mean"], "std_test_acc": c["std"], "params": c["params"]}

    baseline = next((c for c in cands if not c["overrides"] and c["num_epochs"] == usual
                     and c["n_ok"]), None)
    best_s = mean_pm({"mean": best["mean"], "std": best["std"], "n": best["n_ok"]})
    why = (f"highest mean test accuracy {best_s} of {len(qualified)} qualifying "
           f"configurations (of {len(cands)})")
    if len(qualified) > 1:
        second = qualified[1]
        why += (f"; runner-up {overrides_label(second['overrides'])} "
                f"{pct(second['mean'])}")
    return {
        "rule": rule,
        "rule_text": RULES[rule],
        "num_epochs": usual,
        "full_budget": best["full_budget"],
        "candidates": len(cands),
        "qualified": len(qualified),
        "chosen": brief(best),
        "why": why,
        "ranking": [brief(c) for c in qualified[:5]],
        "baseline": brief(baseline) if baseline else None,
    }


def best_of_choices(
    group: Group,
    suite_name: str,
    profile: Profile,
    *,
    results: Path | None,
    seeds: int | None,
    overrides: dict[str, Any] | None,
    device: str,
    n_seeds: int,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A `best_of` group's configurations: the baseline and the rule's pick from the source.

    Returns (overrides, info) pairs; info["level"] is the factor value recorded for the run.
    """
    from bench.records import latest_by_id, read_records, runs_path
    from bench.suites import expand, load_suite

    spec = group.extra["best_of"]
    src, rule = spec["suite"], spec["rule"]
    how = f"run {src} first (lenet-bench run --suite {src} --profile {profile.name})"
    if results is None:
        raise NeedsRecords(f"suite {suite_name!r} picks its configuration from {src}'s "
                           f"records and needs a results directory; {how}")
    src_plan = expand(load_suite(src), profile, seeds=seeds, overrides=overrides,
                      device=device, results=results)
    planned = Counter(config_key(r.config.to_dict()) for r in src_plan)
    ids = {r.run_id for r in src_plan}
    path = runs_path(results, src, profile.name)
    recs = [r for rid, r in latest_by_id(read_records(path)).items() if rid in ids]
    if not recs:
        raise NeedsRecords(f"suite {suite_name!r} picks its configuration from {src}'s "
                           f"records (profile {profile.name}) and {path} has none: {how}")
    try:
        pick = apply_rule(rule, recs, min_seeds=min(n_seeds, PICK_MIN_SEEDS),
                          planned=dict(planned),
                          ignore=set(overrides or {}))
    except NeedsRecords as e:
        raise NeedsRecords(f"suite {suite_name!r}: {src}'s records in {path}: {e}; {how}") \
            from None
    pick = {"suite": src, "profile": profile.name, "text": spec.get("text", ""), **pick}
    chosen = dict(pick["chosen"]["overrides"])
    return [
        ({}, {"level": "baseline", "best_of": pick}),
        (chosen, {"level": f"best: {overrides_label(chosen)}", "best_of": pick}),
    ]


# --- reuse of identical finished runs (ex5 ← ex4) -------------------------------------------

def reuse_finished(
    todo: list[PlannedRun], suite: Suite, profile: str, results: Path,
    current: Callable[[PlannedRun, Record], bool] | None = None,
) -> tuple[list[PlannedRun], list[str]]:
    """Copy finished runs with the same run id (= same config) from a group's `reuse` suite.

    The copied record keeps the source's numbers, history and timing, gets this suite's
    identity (suite, group, question, memberships) and says where it came from in
    `reused_from`. Only records that `current` accepts (made by this code) are copied. Call
    under this suite's results lock. Returns (still to train, reused ids).
    """
    from bench.records import append_record, latest_by_id, read_records, runs_path, weights_path
    from bench.runner import copied_record

    sources = {g.name: g.extra["reuse"] for g in suite.groups if g.extra.get("reuse")}
    if not sources:
        return todo, []
    cache: dict[str, dict[str, Record]] = {}
    rest: list[PlannedRun] = []
    reused: list[str] = []
    dst_runs = runs_path(results, suite.name, profile)
    for run in todo:
        srcs = sorted({sources[m["group"]] for m in run.memberships if m["group"] in sources})
        found = None
        for src in srcs:
            if src not in cache:
                cache[src] = latest_by_id(read_records(runs_path(results, src, profile)))
            rec = cache[src].get(run.run_id)
            wfile = weights_path(results, src, profile, run.run_id)
            if (rec is not None and rec.get("status") == "ok" and wfile.is_file()
                    and (current is None or current(run, rec))):
                found = (src, rec, wfile)
                break
        if found is None:
            rest.append(run)
            continue
        src, rec, wfile = found
        atomic_write(weights_path(results, suite.name, profile, run.run_id), wfile.read_bytes())
        new: Record = copied_record(run, rec, src, profile)
        append_record(dst_runs, new)
        reused.append(run.run_id)
    return rest, reused
