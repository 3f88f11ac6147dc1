"""The d2l §7.6 exercises (SPEC §3): what the `d2l-ex*` suites need beyond training.

- ex3's rule, which picks ex2's best configuration from ex2's records, so the "improved
  network" tried on MNIST is chosen by a written rule and never by hand;
- reuse of a run that another suite already trained with the identical config (ex5 analyses
  the same two trained networks as ex4; training is deterministic, so retraining them would
  only cost time and give the same numbers);
- the analyses that turn records and saved weights into `analysis/summary.json` and figures:
  ablation tables (ex1–ex3), the epochs curve (ex2), conv activations of pullovers vs coats
  (ex4) and activations/predictions on out-of-distribution images (ex5).

Every analysis is a pure function of the records, the weights and the datasets: images are
chosen by fixed rules, noise is seeded, the probe's folds are seeded, and floats are rounded,
so the same inputs give the same JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from bench.suites import Group, PlannedRun, Profile, Suite

Record = dict[str, Any]
Log = Callable[[str], None]

ANALYSIS_VERSION = 1
ANALYSES = ("ablation", "epochs", "activations", "ood")

# ex4: which images (fixed rules, independent of profile and seed).
PULLOVER, COAT = 2, 4  # Fashion-MNIST class indices
FIGURE_IMAGES = 8  # the first 8 pullovers and the first 8 coats of the test set
PROBE_IMAGES = 500  # the first 500 pullovers and 500 coats of the test set
PROBE_FOLDS = 5
PROBE_C = 0.1  # L2 strength of the logistic-regression probe on standardized features
# ex5: the inputs.
OOD_IN_DIST = 1000  # first N test images of the training dataset (in-distribution reference)
OOD_OTHER = 1000  # first N test images of the other dataset
OOD_NOISE = 500
NOISE_SEED = 0
#: scikit-image's bundled photos (in its wheel: no download), (name, what it shows).
PHOTOS = (
    ("chelsea", "cat"), ("astronaut", "astronaut"), ("coffee", "coffee cup"),
    ("rocket", "rocket"), ("camera", "cameraman"), ("coins", "coins"), ("moon", "moon"),
    ("clock", "clock"), ("horse", "horse silhouette"), ("page", "page of text"),
)
#: The layers the analyses read: output of each conv block's activation (before pooling),
#: as d2l's exercise displays them, and the penultimate features.
LAYER_DOC = {
    "conv1": "first conv layer after its activation, before pooling",
    "conv2": "second conv layer after its activation, before pooling",
    "fc": "penultimate features (last hidden FC layer after its activation)",
}

RULES = {
    "max_mean_test_acc": (
        "Among the source suite's configurations trained for its usual number of epochs (the "
        "most common one, so longer epochs-curve runs cannot win by training longer), keep "
        "those whose every planned seed has a record with status ok and at least as many "
        "seeds as this profile asks for; pick the highest mean final test accuracy over "
        "seeds; ties go to fewer trainable parameters, then to the shorter override list."
    ),
}


class NeedsRecords(UsageError):
    """A suite's expansion needs another suite's records that are not there yet."""


# --- small helpers --------------------------------------------------------------------------

def _r(x: float | None, digits: int = 6) -> float | None:
    """Round for the JSON: stable across runs, JSON-native (no NaN)."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _stats(values: list[float]) -> dict[str, Any]:
    from bench.metrics import summarize

    s = summarize(values)
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in s.items()}


def _pp(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _pm(s: dict[str, Any]) -> str:
    """'88.10 ± 0.30% (n=2)': ± is the sample std over seeds."""
    if s.get("mean") is None:
        return "no finished runs"
    if s.get("std") is None:
        return f"{100 * s['mean']:.2f}% (n={s['n']})"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}% (n={s['n']})"


def level_label(v: Any) -> str:
    """A factor level as text: lists as JSON ([6, 16]), None as 'default'."""
    if v is None:
        return "default"
    return v if isinstance(v, str) else json.dumps(v)


def overrides_label(ov: dict[str, Any]) -> str:
    """`activation=tanh, channels=[24, 44]`; no overrides = 'defaults'."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in sorted(ov.items())) or "defaults"


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """a − b over the seeds both have (same seed = same data order): mean, 95% CI, wins.

    Seeds move every configuration together (a slow-starting seed is slow for all), so the
    per-seed difference is far less noisy than the difference of two independent means.
    """
    from bench.metrics import t_quantile_975

    seeds = sorted(set(a) & set(b), key=int)
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    out: dict[str, Any] = {"n": n, "mean": _r(statistics.fmean(diffs)) if n else None,
                           "higher_in": sum(d > 0 for d in diffs), "ci_low": None,
                           "ci_high": None, "resolved": False}
    if n >= 2:
        half = t_quantile_975(n - 1) * statistics.stdev(diffs) / math.sqrt(n)
        m = statistics.fmean(diffs)
        out.update(ci_low=_r(m - half), ci_high=_r(m + half),
                   resolved=bool(m - half > 0 or m + half < 0))
    return out


def _verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """a vs b (level rows): direction per seed and the paired 95% CI, in words."""
    d = paired_difference(a["test_acc_by_seed"], b["test_acc_by_seed"])
    if not d["n"]:
        return "no common finished seeds"
    text = f"higher in {d['higher_in']}/{d['n']} seeds"
    if d["n"] < 2:
        return text + " (one seed: no noise estimate)"
    ci = f"paired 95% CI [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] pp"
    return f"{text}, {ci}: " + ("beyond seed noise" if d["resolved"] else
                                f"not resolved with n={d['n']}")


def is_default(variant: str, overrides: dict[str, Any], ignore: Any = ()) -> bool:
    """Do these overrides (except keys in `ignore`) leave the recipe and defaults unchanged?"""
    from bench.config import resolve_config

    base = resolve_config(variant, None, 0)
    for k, v in overrides.items():
        if k in ignore:
            continue
        cur = base.model.get(k, getattr(base, k, None))
        if isinstance(cur, tuple):
            cur = list(cur)
        if isinstance(v, (int, float)) and isinstance(cur, (int, float)) \
                and not isinstance(v, bool):
            if float(v) != float(cur):
                return False
        elif v != cur:
            return False
    return True


def minimal_overrides(variant: str, overrides: dict[str, Any], ignore: Any = ()
                      ) -> dict[str, Any]:
    """The overrides that change something (the baseline asked for as kernel_size=5 → {})."""
    return {k: v for k, v in sorted(overrides.items())
            if k not in ignore and not is_default(variant, {k: v})}


def config_key(cfg: dict[str, Any]) -> str:
    """A configuration = a run's resolved config without its seed."""
    return json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True)


def _acc(r: Record) -> float | None:
    if r.get("status") != "ok":
        return None
    return (r.get("metrics") or {}).get("test_acc")


# --- ex3: the best-configuration rule -------------------------------------------------------

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
        accs = [a for a in (_acc(r) for r in recs) if a is not None]
        s = _stats(accs)
        params = next((r["metrics"].get("params_trainable") for r in recs
                       if (r.get("metrics") or {}).get("params_trainable") is not None), None)
        groups = sorted({m.get("group") for r in recs
                         for m in (r.get("memberships") or [{"group": r.get("group")}])})
        out.append({
            "key": key,
            "variant": recs[0]["variant"],
            "overrides": minimal_overrides(recs[0]["variant"], recs[0].get("overrides") or {},
                                           ignore),
            "groups": groups,
            "num_epochs": recs[0]["config"]["num_epochs"],
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
    best_s = _pm({"mean": best["mean"], "std": best["std"], "n": best["n_ok"]})
    why = (f"highest mean test accuracy {best_s} of {len(qualified)} qualifying "
           f"configurations (of {len(cands)})")
    if len(qualified) > 1:
        second = qualified[1]
        why += (f"; runner-up {overrides_label(second['overrides'])} "
                f"{_pp(second['mean'])}")
    return {
        "rule": rule,
        "rule_text": RULES[rule],
        "num_epochs": usual,
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

    spec = group.best_of or {}
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
        pick = apply_rule(rule, recs, min_seeds=n_seeds, planned=dict(planned),
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
    todo: list[PlannedRun], suite: Suite, profile: str, results: Path
) -> tuple[list[PlannedRun], list[str]]:
    """Copy finished runs with the same run id (= same config) from a group's `reuse` suite.

    The copied record keeps the source's numbers, history and timing, gets this suite's
    identity (suite, group, question, memberships) and says where it came from in
    `reused_from`. Call under this suite's results lock. Returns (still to train, reused ids).
    """
    from bench.records import append_record, latest_by_id, read_records, runs_path, weights_path

    sources = {g.name: g.reuse for g in suite.groups if g.reuse}
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
            if rec is not None and rec.get("status") == "ok" and wfile.is_file():
                found = (src, rec, wfile)
                break
        if found is None:
            rest.append(run)
            continue
        src, rec, wfile = found
        dst = weights_path(results, suite.name, profile, run.run_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(wfile, tmp)
        os.replace(tmp, dst)
        new = {
            **rec,
            "suite": run.suite, "profile": run.profile, "group": run.group,
            "question": run.question, "factor": run.factor,
            "factor_value": run.factor_value, "memberships": run.memberships,
            "overrides": run.overrides,
            "reused_from": {"suite": src, "profile": profile, "run_id": run.run_id},
        }
        append_record(dst_runs, new)
        reused.append(run.run_id)
    return rest, reused


# --- analyses: entry point ------------------------------------------------------------------

def analysis_dir(results: Path, suite: str, profile: str) -> Path:
    return results / suite / profile / "analysis"


def _plan_records(plan: list[PlannedRun], results: Path, suite: str, profile: str
                  ) -> list[Record]:
    """The latest record of every planned run that has one, in plan order."""
    from bench.records import latest_by_id, read_records, runs_path

    recs = latest_by_id(read_records(runs_path(results, suite, profile)))
    return [recs[r.run_id] for r in plan if r.run_id in recs]


def _digest(records: list[Record], plan: list[PlannedRun], kinds: list[str],
            user_overrides: dict[str, Any] | None) -> str:
    """What the analysis is a function of: the plan (groups, levels, picks), the records
    (whose outcomes and per-epoch history fingerprint the weights, which are not committed)
    and the analysis code itself."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": ANALYSIS_VERSION, "kinds": kinds,
                         "set": user_overrides or {}}, sort_keys=True).encode())
    for mod in (__file__, Path(__file__).parent.parent / "report" / "activations.py"):
        h.update(Path(mod).read_bytes())
    for run in plan:
        h.update(json.dumps([run.run_id, run.memberships], sort_keys=True).encode())
    for r in sorted(records, key=lambda r: r["run_id"]):
        h.update(json.dumps([r["run_id"], r.get("status"), r.get("metrics", {}).get("test_acc"),
                             r.get("history")], sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_analyses(
    suite: Suite,
    profile: Profile,
    plan: list[PlannedRun],
    results: Path,
    data_root: Path,
    *,
    force: bool = False,
    user_overrides: dict[str, Any] | None = None,
    log: Log = print,
) -> Path | None:
    """(Re)write the suite's analysis/summary.json and figures if missing or out of date."""
    kinds = [k for k in ANALYSES if any(g.analysis == k for g in suite.groups)]
    if not kinds:
        return None
    records = _plan_records(plan, results, suite.name, profile.name)
    out_dir = analysis_dir(results, suite.name, profile.name)
    summary_path = out_dir / "summary.json"
    if not records:
        log(f"analysis: no records of suite {suite.name} yet; nothing analysed")
        return None
    digest = _digest(records, plan, kinds, user_overrides)
    if summary_path.is_file() and not force:
        try:
            old = json.loads(summary_path.read_text())
        except ValueError:
            old = {}
        figs = old.get("figures", [])
        if old.get("inputs", {}).get("digest") == digest and all(
                (out_dir / f).is_file() for f in figs):
            log(f"analysis: up to date: {summary_path}")
            return summary_path
    if {"activations", "ood"} & set(kinds):
        from bench.records import weights_path

        missing = [r["run_id"] for r in records if r.get("status") == "ok"
                   and not weights_path(results, suite.name, profile.name, r["run_id"]).is_file()]
        if missing and summary_path.is_file():
            # Weights are not committed: a fresh checkout must not replace a good analysis
            # with one of fewer networks.
            log(f"analysis: weights of {len(missing)} run(s) are missing (they are not "
                f"committed); keeping {summary_path}; `--force` retrains and re-analyses")
            return summary_path
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = {g.name: g for g in suite.groups}
    summary: dict[str, Any] = {
        "suite": suite.name,
        "profile": profile.name,
        "description": suite.description,
        "analysis_version": ANALYSIS_VERSION,
        "inputs": {
            "digest": digest,
            "run_ids": sorted(r["run_id"] for r in records),
            "statuses": dict(sorted(Counter(r.get("status") for r in records).items())),
        },
    }
    figures: list[str] = []
    answers: list[str] = []
    for kind in kinds:
        names = [g.name for g in suite.groups if g.analysis == kind]
        if kind == "ablation":
            section = ablation_summary(records, plan, [groups[n] for n in names],
                                       user_overrides)
        elif kind == "epochs":
            section = epochs_summary(records, names)
        elif kind == "activations":
            section = activations_summary(records, names, results, suite.name, profile.name,
                                          data_root, out_dir)
        else:
            section = ood_summary(records, names, results, suite.name, profile.name,
                                  data_root, out_dir)
        figures += section.pop("figures", [])
        summary[kind] = section
        answers.append(section["answer"])
    summary["figures"] = figures
    summary["answer"] = " ".join(answers)
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, summary_path)
    log(f"analysis: wrote {summary_path}" + (f" and {len(figures)} figures" if figures else ""))
    return summary_path


# --- ex1–ex3: ablation tables ---------------------------------------------------------------

def ablation_summary(
    records: list[Record], plan: list[PlannedRun], groups: list[Group],
    user_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per group: test accuracy per factor level over seeds, the best level, the baseline.

    The baseline level is the one whose overrides change nothing (the user's --set aside);
    in a best_of group it is the level named "baseline".
    """
    ignore = set(user_overrides or {})
    by_id = {r["run_id"]: r for r in records}
    out_groups = []
    answers = []
    for g in groups:
        levels: dict[str, dict[str, Any]] = {}
        best_of = None
        for run in plan:
            for m in run.memberships:
                if m["group"] != g.name:
                    continue
                label = level_label(m["factor_value"])
                lv = levels.setdefault(label, {
                    "level": m["factor_value"], "label": label, "overrides": run.overrides,
                    "variant": run.config.variant, "dataset": run.config.dataset,
                    "num_epochs": run.config.num_epochs, "records": [], "planned": 0,
                })
                lv["planned"] += 1
                if run.run_id in by_id:
                    lv["records"].append(by_id[run.run_id])
                best_of = best_of or m.get("best_of")
        rows = []
        for lv in levels.values():
            recs = lv.pop("records")
            s = _stats([a for a in (_acc(r) for r in recs) if a is not None])
            params = next((r["metrics"].get("params_trainable") for r in recs
                           if (r.get("metrics") or {}).get("params_trainable")), None)
            by_seed = {str(r["seed"]): _acc(r) for r in recs if _acc(r) is not None}
            rows.append({
                **lv,
                "test_acc_by_seed": dict(sorted(by_seed.items(), key=lambda kv: int(kv[0]))),
                "is_baseline": (lv["level"] == "baseline" if best_of
                                else is_default(lv["variant"], lv["overrides"], ignore)),
                "n_records": len(recs),
                "diverged": sum(r.get("status") == "diverged" for r in recs),
                "failed": sum(r.get("status") == "failed" for r in recs),
                "test_acc": s,
                "params": params,
            })
        section: dict[str, Any] = {"group": g.name, "question": g.question,
                                   "factor": g.factor, "levels": rows}
        if best_of:
            section["best_of"] = best_of
        section["answer"] = _ablation_answer(g, rows, best_of)
        answers.append(section["answer"])
        out_groups.append(section)
    return {"groups": out_groups, "answer": " ".join(answers)}


def _ablation_answer(g: Group, rows: list[dict[str, Any]], best_of: dict | None) -> str:
    done = [r for r in rows if r["test_acc"]["mean"] is not None]
    if not done:
        return f"{g.name}: no finished runs yet."
    best = max(done, key=lambda r: r["test_acc"]["mean"])
    worst = min(done, key=lambda r: r["test_acc"]["mean"])
    base = next((r for r in done if r["is_baseline"]), None)
    bad = [f"{r['label']} ({r['diverged']} diverged, {r['failed']} failed)"
           for r in rows if r["diverged"] or r["failed"]]
    text = f"{g.name} ({g.factor}): "
    if best_of:
        b = best_of["chosen"]
        base_fm = (best_of.get("baseline") or {}).get("mean_test_acc")
        text = (f"{g.name}: the rule {best_of['rule']} picked "
                f"{overrides_label(b['overrides'])} from {best_of['suite']} "
                f"({_pp(b['mean_test_acc'])} there vs the baseline's {_pp(base_fm)}). ")
        pick = next((r for r in done if r["level"] != "baseline"), None)
        if not b["overrides"]:
            text += (f"That is the baseline itself; on {done[0]['dataset']} it gets "
                     f"{_pm(done[0]['test_acc'])}.")
        elif base is None or pick is None:
            text += "Its comparison on this dataset has no finished runs yet."
        else:
            d = pick["test_acc"]["mean"] - base["test_acc"]["mean"]
            text += (f"On {pick['dataset']} it gets {_pm(pick['test_acc'])} vs the baseline's "
                     f"{_pm(base['test_acc'])}: {100 * d:+.2f} pp, "
                     f"{_verdict(pick, base)}.")
        return text
    text += f"best {best['label']} {_pm(best['test_acc'])}, worst {worst['label']} "
    text += f"{_pm(worst['test_acc'])}"
    if g.factor and "," in g.factor:
        ref = rows[0]
        if ref["test_acc"]["mean"] is not None:
            parts = []
            for r in rows[1:]:
                if r["test_acc"]["mean"] is None:
                    continue
                d = r["test_acc"]["mean"] - ref["test_acc"]["mean"]
                parts.append(f"{r['label']} {100 * d:+.2f} pp ({_verdict(r, ref)})")
            text += f"; vs {ref['label']}: " + "; ".join(parts)
    elif base is not None and best is not base:
        d = best["test_acc"]["mean"] - base["test_acc"]["mean"]
        text += (f"; best vs baseline {base['label']}: {100 * d:+.2f} pp, "
                 f"{_verdict(best, base)}")
    elif base is not None:
        text += f"; the baseline {base['label']} is the best level"
        runner = sorted(done, key=lambda r: -r["test_acc"]["mean"])
        if len(runner) > 1:
            text += f" (vs {runner[1]['label']}: {_verdict(runner[0], runner[1])})"
    elif best is not rows[0] and rows[0]["test_acc"]["mean"] is not None:
        d = best["test_acc"]["mean"] - rows[0]["test_acc"]["mean"]
        text += (f"; best vs the group's first level {rows[0]['label']}: {100 * d:+.2f} pp, "
                 f"{_verdict(best, rows[0])}")
    if len(done) > 2:
        text += "; all levels: " + ", ".join(
            f"{r['label']} {100 * r['test_acc']['mean']:.1f}%" for r in done)
    if bad:
        text += "; not finished ok: " + ", ".join(bad)
    return text + "."


# --- ex2: the epochs curve ------------------------------------------------------------------

def epochs_summary(records: list[Record], group_names: list[str]) -> dict[str, Any]:
    """Mean test accuracy per epoch over the seeds of the longest runs (their history)."""
    recs = [r for r in records
            if any(m.get("group") in group_names for m in r.get("memberships") or [])
            and r.get("status") == "ok"]
    if not recs:
        return {"groups": group_names, "curve": [], "answer": "epochs: no finished runs yet."}
    longest = max(len(r.get("history") or []) for r in recs)
    recs = [r for r in recs if len(r.get("history") or []) == longest]
    curve = []
    for e in range(longest):
        te = _stats([r["history"][e]["test_acc"] for r in recs])
        tr = _stats([r["history"][e]["train_acc"] for r in recs])
        curve.append({"epoch": e + 1, "test_acc": te, "train_acc": tr})
    means = [c["test_acc"]["mean"] for c in curve]
    top = max(means)
    best_epoch = means.index(top) + 1
    within = next(i + 1 for i, m in enumerate(means) if m >= top - 0.005)
    last = curve[-1]
    gap = last["train_acc"]["mean"] - last["test_acc"]["mean"]
    answer = (
        f"epochs: over {len(recs)} runs of {longest} epochs, mean test accuracy peaks at epoch "
        f"{best_epoch} ({_pp(top)}); it is within 0.5 pp of that peak from epoch {within} on "
        f"({_pp(means[within - 1])}); at the last epoch train − test accuracy = "
        f"{100 * gap:+.2f} pp"
    )
    if best_epoch < longest:
        drop = top - means[-1]
        answer += f" and test accuracy is {100 * drop:.2f} pp below its peak"
    answer += "."
    return {
        "groups": group_names,
        "runs": sorted(r["run_id"] for r in recs),
        "num_epochs": longest,
        "curve": curve,
        "best_epoch": best_epoch,
        "best_mean_test_acc": _r(top),
        "first_epoch_within_0.5pp_of_best": within,
        "final_train_minus_test_acc": _r(gap),
        "answer": answer,
    }


# --- ex4/ex5: models, inputs, activations ---------------------------------------------------

def layer_modules(model: nn.Module) -> dict[str, str]:
    """conv1/conv2/fc → module names: each conv block's activation output, and the features."""
    from torch import nn

    convs = getattr(model, "convs", None)
    if not isinstance(convs, nn.Sequential) or len(convs) < 2:
        raise ValueError(f"{type(model).__name__} has no `convs` stack of ≥ 2 conv blocks")
    names = {f"conv{i + 1}": f"convs.{i}.1" for i in range(2)}
    if isinstance(getattr(model, "fc", None), nn.Sequential) and len(model.fc) > 0:
        names["fc"] = "fc"
    return names


def forward_with_activations(
    model: nn.Module, x: torch.Tensor, layers: dict[str, str], batch_size: int = 500
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scores, {layer: activation}) for input `x`, batched, on the CPU, in eval mode."""
    import torch

    modules = dict(model.named_modules())
    model.eval()
    acts: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
    scores = []
    current: dict[str, torch.Tensor] = {}
    handles = []
    for key, name in layers.items():
        def hook(_m: Any, _i: Any, out: torch.Tensor, key: str = key) -> None:
            current[key] = out.detach()
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                scores.append(model(x[start:start + batch_size]))
                for key in layers:
                    acts[key].append(current[key])
    finally:
        for h in handles:
            h.remove()
    return torch.cat(scores), {k: torch.cat(v) for k, v in acts.items()}


def load_run_model(rec: Record, results: Path, suite: str, profile: str) -> nn.Module | None:
    """Rebuild a run's network and load its saved weights (None when the file is missing)."""
    from safetensors.torch import load_file

    from bench.records import weights_path
    from variants import create_variant

    path = weights_path(results, suite, profile, rec["run_id"])
    if not path.is_file():
        print(f"warning: {path} is missing; run {rec['run_id']} left out of the analysis",
              file=sys.stderr)
        return None
    model = create_variant(rec["variant"], **rec["config"]["model"])
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def to_input(images_u8: torch.Tensor | np.ndarray, rec: Record) -> torch.Tensor:
    """N×28×28 uint8 → the run's input tensor (its own transform, on the CPU)."""
    import torch

    from bench.resident import apply_transform

    x = torch.as_tensor(images_u8)
    return apply_transform(x, rec["config"]["transform"])


def first_of_class(y: torch.Tensor, cls: int, n: int) -> list[int]:
    """Indices of the first n examples of class `cls` (test-set order: a fixed choice)."""
    return [int(i) for i in (y == cls).nonzero().flatten()[:n]]


def _models_by_variant(records: list[Record], group_names: list[str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        if not any(m.get("group") in group_names for m in r.get("memberships") or []):
            continue
        out.setdefault(r["variant"], []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["config"]["seed"])
    return dict(sorted(out.items()))


def probe_accuracy(X: np.ndarray, y: np.ndarray, *, folds: int = PROBE_FOLDS) -> dict[str, Any]:
    """k-fold CV accuracy of a logistic-regression probe on standardized features."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=500))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, np.asarray(X, dtype=np.float64), y, cv=cv)
    return {"mean": _r(scores.mean()), "std": _r(scores.std(ddof=1)),
            "folds": [_r(s) for s in scores]}


def _cohen_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column standardized mean difference (pooled std); 0 where both are constant."""
    import numpy as np

    va, vb = a.var(axis=0, ddof=1), b.var(axis=0, ddof=1)
    pooled = np.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2))
    diff = a.mean(axis=0) - b.mean(axis=0)
    return np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), 0.0)


# --- ex4: activations of pullovers vs coats -------------------------------------------------

def activations_summary(
    records: list[Record], group_names: list[str], results: Path, suite: str, profile: str,
    data_root: Path, out_dir: Path,
) -> dict[str, Any]:
    """Layer-1/2 activations of each trained network for pullovers and coats.

    Quantities: mean activation per channel per class, per-channel |Cohen's d| between the
    classes, and a linear probe's CV accuracy at telling them apart from each layer (and from
    the raw pixels, the reference a layer has to beat).
    """
    import numpy as np

    from bench.data import DATASETS, ensure_dataset, load_split
    from report import activations as figs

    models = _models_by_variant(records, group_names)
    if not models:
        return {"answer": "activations: no finished runs yet.", "variants": {}}
    dataset = next(iter(models.values()))[0]["dataset"]
    names = DATASETS[dataset].class_names
    ensure_dataset(dataset, data_root, log=lambda m: None)
    X, y = load_split(dataset, "test", data_root)
    fig_idx = first_of_class(y, PULLOVER, FIGURE_IMAGES) + first_of_class(y, COAT, FIGURE_IMAGES)
    probe_idx = first_of_class(y, PULLOVER, PROBE_IMAGES) + first_of_class(y, COAT, PROBE_IMAGES)
    y_probe = (y[probe_idx] == COAT).numpy().astype(np.int64)
    n_p = int((y_probe == 0).sum())
    pixels = X[probe_idx].reshape(len(probe_idx), -1).numpy() / 255.0
    pixel_probe = probe_accuracy(pixels, y_probe)
    figures: list[str] = []
    variants: dict[str, Any] = {}
    channel_rows: list[dict[str, Any]] = []
    probe_rows: list[dict[str, Any]] = [
        {"variant": "pixels", "layer": "pixels", "acc": pixel_probe["mean"],
         "std": pixel_probe["std"]}]
    for vname, recs in models.items():
        runs = []
        for rec in recs:
            model = load_run_model(rec, results, suite, profile)
            if model is None:
                continue
            layers = {k: v for k, v in layer_modules(model).items() if k != "fc"}
            _, acts = forward_with_activations(model, to_input(X[probe_idx], rec), layers)
            conf = (rec.get("metrics") or {}).get("confusion")
            run: dict[str, Any] = {"run_id": rec["run_id"], "seed": rec["seed"],
                                   "test_acc": _r(rec["metrics"].get("test_acc"))}
            if conf:
                c = np.asarray(conf, dtype=np.float64)
                run["pullover_acc"] = _r(c[PULLOVER, PULLOVER] / c[PULLOVER].sum())
                run["coat_acc"] = _r(c[COAT, COAT] / c[COAT].sum())
                run["pullover_predicted_coat"] = _r(c[PULLOVER, COAT] / c[PULLOVER].sum())
                run["coat_predicted_pullover"] = _r(c[COAT, PULLOVER] / c[COAT].sum())
            run["layers"] = {}
            for lname, a in acts.items():
                a_np = a.numpy().astype(np.float64)
                per_img = a_np.mean(axis=(2, 3))  # N×C: each image's mean per channel
                d = _cohen_d(per_img[y_probe == 1], per_img[y_probe == 0])  # coat − pullover
                probe = probe_accuracy(a_np.reshape(len(a_np), -1), y_probe)
                run["layers"][lname] = {
                    "shape": list(a.shape[1:]),
                    "probe_acc": probe,
                    "channel_mean": {
                        names[PULLOVER]: [_r(v) for v in per_img[y_probe == 0].mean(axis=0)],
                        names[COAT]: [_r(v) for v in per_img[y_probe == 1].mean(axis=0)],
                    },
                    "channel_d_coat_minus_pullover": [_r(v) for v in d],
                    "mean_abs_d": _r(np.abs(d).mean()),
                    "max_abs_d_channel": int(np.abs(d).argmax()),
                    "mean_activation": _r(a_np.mean()),
                }
            if not runs:  # the lowest seed's run: figures and the per-channel bar chart
                _, fig_acts = forward_with_activations(model, to_input(X[fig_idx], rec), layers)
                labels = [f"{names[int(y[i])]} #{i}" for i in fig_idx]
                for lname, a in fig_acts.items():
                    fname = f"ex4_{vname}_{lname}.png"
                    figs.plot_activation_grid(
                        X[fig_idx].numpy(), a.numpy(), labels,
                        f"{vname} (seed {rec['seed']}): {lname} activations "
                        f"({LAYER_DOC[lname]})", out_dir / fname)
                    figures.append(fname)
                for lname, lay in run["layers"].items():
                    for cls, vals in lay["channel_mean"].items():
                        for ch, v in enumerate(vals):
                            channel_rows.append({"variant": vname, "layer": lname,
                                                 "channel": ch, "class": cls, "mean": v})
            runs.append(run)
        if not runs:
            continue
        over = {}
        for lname in runs[0]["layers"]:
            over[lname] = {
                "probe_acc": _stats([r["layers"][lname]["probe_acc"]["mean"] for r in runs]),
                "mean_abs_d": _stats([r["layers"][lname]["mean_abs_d"] for r in runs]),
            }
            s = over[lname]["probe_acc"]
            probe_rows.append({"variant": vname, "layer": lname, "acc": s["mean"],
                               "std": s["std"] if s["std"] is not None
                               else runs[0]["layers"][lname]["probe_acc"]["std"]})
        variants[vname] = {"runs": runs, "over_seeds": over}
    figs.plot_channel_means(channel_rows, out_dir / "ex4_channel_means.png")
    figs.plot_probe(probe_rows, out_dir / "ex4_probe.png")
    figures += ["ex4_channel_means.png", "ex4_probe.png"]
    answer = _activations_answer(variants, pixel_probe)
    return {
        "dataset": dataset,
        "classes": [names[PULLOVER], names[COAT]],
        "layers": {k: LAYER_DOC[k] for k in ("conv1", "conv2")},
        "figure_images": {"rule": f"the first {FIGURE_IMAGES} {names[PULLOVER]} and first "
                                  f"{FIGURE_IMAGES} {names[COAT]} images of the test set",
                          "test_indices": fig_idx},
        "probe": {
            "rule": f"the first {n_p} {names[PULLOVER]} and first {len(probe_idx) - n_p} "
                    f"{names[COAT]} images of the test set",
            "model": f"StandardScaler + LogisticRegression(C={PROBE_C}) on the flattened "
                     f"activations; {PROBE_FOLDS}-fold stratified CV (shuffled, seed 0); "
                     "accuracy mean ± std over folds; over_seeds: over the runs' seeds",
            "chance": 0.5,
            "pixels": pixel_probe,
        },
        "variants": variants,
        "figures": figures,
        "answer": answer,
    }


def _activations_answer(variants: dict[str, Any], pixel_probe: dict[str, Any]) -> str:
    parts = [f"activations (pullover vs coat): a linear probe on raw pixels gets "
             f"{_pp(pixel_probe['mean'])}"]
    for vname, v in variants.items():
        o = v["over_seeds"]
        p1, p2 = o["conv1"]["probe_acc"], o["conv2"]["probe_acc"]
        d1, d2 = o["conv1"]["mean_abs_d"]["mean"], o["conv2"]["mean_abs_d"]["mean"]
        diff = p2["mean"] - p1["mean"]
        fold_std = max(v["runs"][0]["layers"]["conv1"]["probe_acc"]["std"] or 0,
                       v["runs"][0]["layers"]["conv2"]["probe_acc"]["std"] or 0)
        if abs(diff) <= fold_std:
            verdict = "about as well as"
        else:
            verdict = "better than" if diff > 0 else "worse than"
        acc = statistics.fmean(r["test_acc"] for r in v["runs"])
        conf = [r.get("pullover_predicted_coat") for r in v["runs"]]
        conf_s = ""
        if all(c is not None for c in conf):
            conf_s = f", and calls {_pp(statistics.fmean(conf))} of test pullovers coats"
        parts.append(
            f"{vname} (test acc {_pp(acc)}, {len(v['runs'])} seed(s)): conv1 {_pp(p1['mean'])}, "
            f"conv2 {_pp(p2['mean'])} — layer 2 separates the classes {verdict} layer 1 "
            f"({100 * diff:+.2f} pp; fold std up to {100 * fold_std:.2f} pp); mean |d| of "
            f"channel means {d1:.2f} (conv1) vs {d2:.2f} (conv2){conf_s}"
        )
    return "; ".join(parts) + "."


# --- ex5: far-from-training inputs ----------------------------------------------------------

def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as 28×28 uint8 grayscale: centre square crop, resize.

    Nothing is downloaded: these images ship in the scikit-image wheel.
    """
    import numpy as np
    import skimage.data
    from skimage import color, transform, util

    img = getattr(skimage.data, name)()
    img = util.img_as_float(img.astype(np.float64) if img.dtype == bool else img)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = color.rgba2rgb(img)
        img = color.rgb2gray(img)
    h, w = img.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    img = transform.resize(img, (28, 28), anti_aliasing=True, order=1)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def ood_inputs(dataset: str, data_root: Path) -> dict[str, dict[str, Any]]:
    """The ex5 input sets, as N×28×28 uint8 arrays with a description (fixed, seeded)."""
    import numpy as np

    from bench.config import DATASET_NAMES
    from bench.data import ensure_dataset, load_split

    other = next(d for d in DATASET_NAMES if d != dataset)
    for d in (dataset, other):
        ensure_dataset(d, data_root, log=lambda m: None)
    Xi, _ = load_split(dataset, "test", data_root)
    Xo, _ = load_split(other, "test", data_root)
    rng = np.random.default_rng(NOISE_SEED)
    uniform = rng.integers(0, 256, size=(OOD_NOISE, 28, 28), dtype=np.uint8)
    xi = Xi[:OOD_IN_DIST].numpy()
    mean, std = float(xi.mean()), float(xi.std())
    gauss = np.clip(np.rint(rng.normal(mean, std, size=(OOD_NOISE, 28, 28))), 0, 255)
    photos = np.stack([load_photo(n) for n, _ in PHOTOS])
    return {
        "in_distribution": {
            "images": xi, "description": f"first {OOD_IN_DIST} {dataset} test images"},
        "other_dataset": {
            "images": Xo[:OOD_OTHER].numpy(),
            "description": f"first {OOD_OTHER} {other} test images"},
        "uniform_noise": {
            "images": uniform,
            "description": f"{OOD_NOISE} images of i.i.d. uniform pixels (seed {NOISE_SEED})"},
        "gaussian_noise": {
            "images": gauss.astype(np.uint8),
            "description": f"{OOD_NOISE} images of i.i.d. Gaussian pixels with the "
                           f"in-distribution images' mean and std, clipped (seed {NOISE_SEED})"},
        "photos": {
            "images": photos,
            "description": "scikit-image photos (" + ", ".join(f"{n}: {w}" for n, w in PHOTOS)
                           + "), grayscale, centre square crop, resized to 28×28 "
                             "(light backgrounds, unlike the training images)"},
        "photos_inverted": {
            "images": 255 - photos,
            "description": "the same photos inverted (255 − x), so that backgrounds are dark "
                           "and objects light, as in the training images"},
    }


def _softmax_stats(scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max softmax probability, predictive entropy in nats, predicted class) per input."""
    import torch

    p = torch.softmax(scores.double(), dim=1)
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    msp, pred = p.max(dim=1)
    return msp.numpy(), ent.numpy(), pred.numpy()


def ood_summary(
    records: list[Record], group_names: list[str], results: Path, suite: str, profile: str,
    data_root: Path, out_dir: Path,
) -> dict[str, Any]:
    """Activations and predictions of each trained network on far-from-training inputs."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from bench.data import DATASETS
    from report import activations as figs

    models = _models_by_variant(records, group_names)
    if not models:
        return {"answer": "ood: no finished runs yet.", "variants": {}}
    dataset = next(iter(models.values()))[0]["dataset"]
    names = DATASETS[dataset].class_names
    sets = ood_inputs(dataset, data_root)
    n_classes = len(names)
    figures: list[str] = []
    variants: dict[str, Any] = {}
    msp_rows: list[dict[str, Any]] = []
    act_rows: list[dict[str, Any]] = []
    hist_by_variant: dict[str, dict[str, list[float]]] = {}
    for vname, recs in models.items():
        per_run = []
        for rec in recs:
            model = load_run_model(rec, results, suite, profile)
            if model is None:
                continue
            layers = layer_modules(model)
            out_sets: dict[str, Any] = {}
            ref_msp = None
            ref_act: dict[str, float] = {}
            raw: dict[str, Any] = {}
            for sname, s in sets.items():
                scores, acts = forward_with_activations(model, to_input(s["images"], rec),
                                                        layers)
                msp, ent, pred = _softmax_stats(scores)
                raw[sname] = (msp, pred, acts)
                hist = np.bincount(pred, minlength=n_classes)
                top = int(hist.argmax())
                entry: dict[str, Any] = {
                    "n": len(msp),
                    "msp_mean": _r(msp.mean()),
                    "msp_median": _r(np.median(msp)),
                    "frac_msp_above_0.9": _r((msp > 0.9).mean()),
                    "entropy_mean_nats": _r(ent.mean()),
                    "entropy_mean_normalized": _r(ent.mean() / math.log(n_classes)),
                    "predicted_class_counts": {names[c]: int(hist[c]) for c in range(n_classes)},
                    "most_predicted_class": names[top],
                    "most_predicted_frac": _r(hist[top] / len(pred)),
                    "activations": {},
                }
                for lname, a in acts.items():
                    a64 = a.double()
                    stat = {"mean": _r(a64.mean().item()), "std": _r(a64.std().item()),
                            "mean_abs": _r(a64.abs().mean().item())}
                    if sname == "in_distribution":
                        ref_act[lname] = stat["mean_abs"] or 0.0
                    ref = ref_act.get(lname)
                    stat["mean_abs_ratio_to_in_distribution"] = (
                        _r(stat["mean_abs"] / ref) if ref else None)
                    entry["activations"][lname] = stat
                if sname == "in_distribution":
                    ref_msp = msp
                elif ref_msp is not None:
                    labels = np.r_[np.ones(len(ref_msp)), np.zeros(len(msp))]
                    entry["auroc_msp_in_vs_this"] = _r(
                        roc_auc_score(labels, np.r_[ref_msp, msp]))
                out_sets[sname] = entry
            photos = []
            for key in ("photos", "photos_inverted"):
                msp, pred, _ = raw[key]
                for i, (pname, what) in enumerate(PHOTOS):
                    photos.append({"photo": pname, "shows": what,
                                   "inverted": key == "photos_inverted",
                                   "predicted": names[int(pred[i])], "msp": _r(msp[i])})
            run = {"run_id": rec["run_id"], "seed": rec["seed"],
                   "test_acc": _r(rec["metrics"].get("test_acc")), "sets": out_sets,
                   "photos": photos}
            if not per_run:  # the lowest seed: figures
                for sname, (msp, _pred, _acts) in raw.items():
                    msp_rows += [{"variant": vname, "input": sname, "msp": float(m)}
                                 for m in msp]
                    for lname, st in out_sets[sname]["activations"].items():
                        act_rows.append({"variant": vname, "input": sname, "layer": lname,
                                         "ratio": st["mean_abs_ratio_to_in_distribution"]})
                hist_by_variant[vname] = {
                    sname: [c / e["n"] for c in e["predicted_class_counts"].values()]
                    for sname, e in out_sets.items()}
                figures += _ood_example_figures(vname, rec, model, sets, raw, names, out_dir)
            per_run.append(run)
        if not per_run:
            continue
        over = {}
        for sname in sets:
            over[sname] = {
                k: _stats([r["sets"][sname][k] for r in per_run if r["sets"][sname].get(k)
                           is not None])
                for k in ("msp_mean", "entropy_mean_nats", "auroc_msp_in_vs_this")
                if k in per_run[0]["sets"][sname]
            }
        variants[vname] = {"runs": per_run, "over_seeds": over}
    figs.plot_msp(msp_rows, out_dir / "ex5_msp.png")
    figs.plot_activation_ratios(act_rows, out_dir / "ex5_activation_ratios.png")
    figs.plot_predicted_classes(hist_by_variant, list(names), out_dir / "ex5_predicted_classes.png")
    figures += ["ex5_msp.png", "ex5_activation_ratios.png", "ex5_predicted_classes.png"]
    return {
        "dataset": dataset,
        "inputs": {k: v["description"] for k, v in sets.items()},
        "preprocessing": "every input is 28×28 uint8, then the network's own input transform "
                         "(for the d2l networks: pixels/255)",
        "metrics": {
            "msp": "maximum softmax probability (confidence of the predicted class)",
            "entropy": "predictive entropy of the softmax in nats (max ln 10 = 2.303); "
                       "normalized = divided by ln 10",
            "auroc_msp_in_vs_this": "how well MSP tells the in-distribution test images from "
                                    "this set (1 = perfectly, 0.5 = not at all)",
            "activations": "mean, std and mean |x| over all units and inputs of each layer; "
                           "ratio = mean |x| relative to in-distribution inputs",
        },
        "layers": LAYER_DOC,
        "variants": variants,
        "figures": figures,
        "answer": _ood_answer(variants),
    }


def _ood_example_figures(
    vname: str, rec: Record, model: nn.Module, sets: dict[str, Any], raw: dict[str, Any],
    names: tuple[str, ...], out_dir: Path,
) -> list[str]:
    """Inputs with the predicted class and MSP; conv1 maps of a few inputs vs an in-dist one."""
    import numpy as np

    from report import activations as figs

    picks = [("photos", i) for i in range(len(PHOTOS))]
    picks += [("photos_inverted", i) for i in range(len(PHOTOS))]
    picks += [(k, i) for k in ("uniform_noise", "gaussian_noise", "other_dataset",
                               "in_distribution") for i in range(2)]
    imgs, caps = [], []
    for sname, i in picks:
        msp, pred, _ = raw[sname]
        imgs.append(sets[sname]["images"][i])
        label = PHOTOS[i][0] + (" inv." if sname == "photos_inverted" else "") \
            if sname.startswith("photos") else f"{sname.replace('_', ' ')} {i}"
        caps.append(f"{label}\n→ {names[int(pred[i])]} {msp[i]:.2f}")
    f1 = f"ex5_{vname}_predictions.png"
    figs.plot_image_grid(np.stack(imgs), caps,
                         f"{vname} (seed {rec['seed']}): predicted class and max softmax prob.",
                         out_dir / f1)
    rows = [("in_distribution", 0), ("photos", 0), ("photos_inverted", 0),
            ("uniform_noise", 0), ("other_dataset", 0)]
    labels = ["in-dist. test 0", f"{PHOTOS[0][1]}", f"{PHOTOS[0][1]} inverted",
              "uniform noise 0", "other dataset 0"]
    images = np.stack([sets[s]["images"][i] for s, i in rows])
    files = [f1]
    for lname in ("conv1", "conv2"):
        acts = np.stack([raw[s][2][lname][i].numpy() for s, i in rows])
        fname = f"ex5_{vname}_{lname}_maps.png"
        figs.plot_activation_grid(images, acts, labels,
                                  f"{vname} (seed {rec['seed']}): {lname} activations "
                                  "for far-from-training inputs", out_dir / fname)
        files.append(fname)
    return files


def _ood_answer(variants: dict[str, Any]) -> str:
    parts = []
    for vname, v in variants.items():
        run = v["runs"][0]
        s = run["sets"]
        ind = s["in_distribution"]
        bits = [f"in-distribution MSP {ind['msp_mean']:.2f}, entropy "
                f"{ind['entropy_mean_nats']:.2f} nats"]
        for key, label in (("other_dataset", "other dataset"), ("uniform_noise", "noise"),
                           ("photos", "photos"), ("photos_inverted", "inverted photos")):
            e = s[key]
            ratio = e["activations"]["conv1"]["mean_abs_ratio_to_in_distribution"]
            bits.append(
                f"{label} MSP {e['msp_mean']:.2f} (AUROC {e['auroc_msp_in_vs_this']:.2f}, "
                f"{100 * e['most_predicted_frac']:.0f}% called {e['most_predicted_class']}, "
                f"conv1 mean |act| ×{ratio:.2f})"
            )
        cat = next((p for p in run["photos"] if p["photo"] == "chelsea" and not p["inverted"]),
                   None)
        cat_inv = next((p for p in run["photos"] if p["photo"] == "chelsea" and p["inverted"]),
                       None)
        cat_s = ""
        if cat and cat_inv:
            cat_s = (f"; the cat is called {cat['predicted']} ({cat['msp']:.2f}), inverted "
                     f"{cat_inv['predicted']} ({cat_inv['msp']:.2f})")
        over_conf = [k for k in ("uniform_noise", "photos", "photos_inverted", "other_dataset")
                     if s[k]["msp_mean"] >= 0.9 * ind["msp_mean"]]
        verdict = (f"; confidence stays near in-distribution level for "
                   f"{', '.join(over_conf)}" if over_conf else
                   "; confidence drops on every far-from-training set")
        parts.append(f"{vname} (seed {run['seed']}): " + "; ".join(bits) + cat_s + verdict)
    return "ood: " + " | ".join(parts) + "."
