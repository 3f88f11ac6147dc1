"""ex1–ex3: ablation tables (test accuracy per factor level over seeds, the baseline, the
best level, paired seed-by-seed comparisons) and ex2's epochs curve, with answers in words.

Pure functions of the records and the plan: no weights, no datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.config import overrides_label
from bench.d2l.common import (
    Record,
    acc_of,
    is_default,
    level_label,
    mean_pm,
    paired_verdict,
    pct,
    rnd,
    stats_of,
)

if TYPE_CHECKING:
    from bench.suites import Group, PlannedRun

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
            s = stats_of([a for a in (acc_of(r) for r in recs) if a is not None])
            params = next((r["metrics"].get("params_trainable") for r in recs
                           if (r.get("metrics") or {}).get("params_trainable")), None)
            by_seed = {str(r["seed"]): acc_of(r) for r in recs if acc_of(r) is not None}
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


def _budget_word(best_of: dict[str, Any]) -> str:
    """Whether the pick rests on runs at their recipe's full budget (older picks: unknown)."""
    full = best_of.get("full_budget")
    return "budget not recorded" if full is None else (
        "the recipe's full budget" if full else "cut short of the recipe's budget")


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
                f"({pct(b['mean_test_acc'])} there vs the baseline's {pct(base_fm)}, "
                f"{b['n']} seeds at {best_of.get('num_epochs')} epochs, "
                f"{_budget_word(best_of)}). ")
        pick = next((r for r in done if r["level"] != "baseline"), None)
        if not b["overrides"]:
            text += (f"That is the baseline itself; on {done[0]['dataset']} it gets "
                     f"{mean_pm(done[0]['test_acc'])}.")
        elif base is None or pick is None:
            text += "Its comparison on this dataset has no finished runs yet."
        else:
            d = pick["test_acc"]["mean"] - base["test_acc"]["mean"]
            text += (f"On {pick['dataset']} it gets {mean_pm(pick['test_acc'])} vs the baseline's "
                     f"{mean_pm(base['test_acc'])}: {100 * d:+.2f} pp, "
                     f"{paired_verdict(pick, base)}.")
        return text
    text += f"best {best['label']} {mean_pm(best['test_acc'])}, worst {worst['label']} "
    text += f"{mean_pm(worst['test_acc'])}"
    if g.factor and "," in g.factor:
        ref = rows[0]
        if ref["test_acc"]["mean"] is not None:
            parts = []
            for r in rows[1:]:
                if r["test_acc"]["mean"] is None:
                    continue
                d = r["test_acc"]["mean"] - ref["test_acc"]["mean"]
                parts.append(f"{r['label']} {100 * d:+.2f} pp ({paired_verdict(r, ref)})")
            text += f"; vs {ref['label']}: " + "; ".join(parts)
    elif base is not None and best is not base:
        d = best["test_acc"]["mean"] - base["test_acc"]["mean"]
        text += (f"; best vs baseline {base['label']}: {100 * d:+.2f} pp, "
                 f"{paired_verdict(best, base)}")
    elif base is not None:
        text += f"; the baseline {base['label']} is the best level"
        runner = sorted(done, key=lambda r: -r["test_acc"]["mean"])
        if len(runner) > 1:
            text += f" (vs {runner[1]['label']}: {paired_verdict(runner[0], runner[1])})"
    elif best is not rows[0] and rows[0]["test_acc"]["mean"] is not None:
        d = best["test_acc"]["mean"] - rows[0]["test_acc"]["mean"]
        text += (f"; best vs the group's first level {rows[0]['label']}: {100 * d:+.2f} pp, "
                 f"{paired_verdict(best, rows[0])}")
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
    curve: list[dict[str, Any]] = []
    for e in range(longest):
        te = stats_of([r["history"][e]["test_acc"] for r in recs])
        tr = stats_of([r["history"][e]["train_acc"] for r in recs])
        curve.append({"epoch": e + 1, "test_acc": te, "train_acc": tr})
    means = [c["test_acc"]["mean"] for c in curve]
    top = max(means)
    best_epoch = means.index(top) + 1
    within = next(i + 1 for i, m in enumerate(means) if m >= top - 0.005)
    last = curve[-1]
    gap = last["train_acc"]["mean"] - last["test_acc"]["mean"]
    answer = (
        f"epochs: over {len(recs)} runs of {longest} epochs, mean test accuracy peaks at epoch "
        f"{best_epoch} ({pct(top)}); it is within 0.5 pp of that peak from epoch {within} on "
        f"({pct(means[within - 1])}); at the last epoch train − test accuracy = "
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
        "best_mean_test_acc": rnd(top),
        "first_epoch_within_0.5pp_of_best": within,
        "final_train_minus_test_acc": rnd(gap),
        "answer": answer,
    }
