"""Section: equal terms — how each lr was picked, and how much of a published gap is recipe.

The lr table re-applies equal-lr's written rule (bench.equal.rules) to the selection records
and checks it against the lr the equal-terms records trained, so a pick made by hand, or from
other selection records, shows. The rank figure and the gap table set each dataset's two
leaderboards side by side: "as published" (suite variants) against "equal terms".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.equal.rules import RULES, pick, rule_table
from report.collect import Group, Record, by_dataset
from report.doc import Cell, Code, Figure, Heading, Section, Table, cell
from report.fmt import pct, pp
from report.leaderboard import REGIMES
from report.runsets import RunSet, Split

SELECT_SUITE, FINAL_SUITE, PUBLISHED_SUITE = "equal-lr", "equal-terms", "variants"


def is_selection(records: list[Record]) -> bool:
    """Records of a validation (holdout) run set: not a leaderboard, their metrics are val_*."""
    return bool(records) and all((r["config"] or {}).get("holdout") for r in records)


def _lead(split: Split, suite: str) -> RunSet | None:
    return next((rs for rs in split.lead if rs.suite == suite), None)


def lr_tables(split: Split) -> list[tuple[str, list[str], tuple[tuple[Cell, ...], ...]]]:
    """Per dataset: (dataset, headers, rows) of the selection runs, with the rule's pick and
    the lr the leading equal-terms run set trained."""
    sel = _lead(split, SELECT_SUITE)
    if sel is None:
        return []
    # the finals of the same profile: a pick is only checked against runs that read it
    fin = next((rs for rs in sorted(split.sets) if rs.suite == FINAL_SUITE
                and rs.profile == sel.profile), None)
    trained: dict[tuple[str, str], set[float]] = {}
    for r in split.records(fin) if fin else []:
        trained.setdefault((r["dataset"], r["variant"]), set()).add(float(r["config"]["lr"]))
    cells: dict[tuple[str, str], dict[float, list[Record | None]]] = {}
    for r in split.records(sel):
        by_lr = cells.setdefault((r["dataset"], r["variant"]), {})
        by_lr.setdefault(float(r["config"]["lr"]), []).append(r)
    lrs = sorted({lr for by in cells.values() for lr in by})
    out = []
    for ds in sorted({d for d, _ in cells}):
        rows = []
        for (d, variant), by_lr in sorted(cells.items()):
            if d != ds:
                continue
            table = rule_table(by_lr)
            chosen = pick(table)
            accs = {row["lr"]: row for row in table}
            got = trained.get((ds, variant))
            if not got:
                agree = "not trained yet"
            elif chosen is None:
                agree = "trained " + ", ".join(f"{x:g}" for x in sorted(got)) + \
                    "; the selection lacks runs"
            elif got == {chosen}:
                agree = "yes"
            else:
                agree = "NO: trained " + ", ".join(f"{x:g}" for x in sorted(got))
            rows.append((
                Cell(variant),
                *(_acc_cell(accs.get(lr)) for lr in lrs),
                cell(chosen, "–" if chosen is None else f"{chosen:g}"),
                Cell(agree),
            ))
        headers = ["variant", *(f"val acc, lr {lr:g}" for lr in lrs), "rule's pick",
                   f"trained by {fin.name if fin else FINAL_SUITE}"]
        out.append((ds, headers, tuple(rows)))
    return out


def _acc_cell(row: dict[str, Any] | None) -> Cell:
    if row is None or row["mean_val_acc"] is None:
        return Cell("–")
    shown = pct(row["mean_val_acc"])
    if row["n"] > 1:
        shown += f" (mean of {row['n']})"
    if row["diverged"]:
        shown += f", {row['diverged']} diverged"
    return cell(row["mean_val_acc"], shown)


def planned_seeds(profile: str) -> int:
    """The seeds equal-terms plans per configuration in this profile (its suite file's)."""
    from bench.errors import UsageError
    from bench.suites import PROFILES, load_suite

    try:
        tweak = load_suite(FINAL_SUITE).profiles.get(profile, {})
    except UsageError:
        tweak = {}
    return int(tweak.get("seeds") or (PROFILES[profile].seeds if profile in PROFILES else 1))


def unfinished_cells(equal: list[Group], seeds: int) -> dict[str, list[str]]:
    """Per dataset, the default variants the equal-terms run set lacks or has not finished."""
    from bench.config import DATASET_NAMES
    from variants import list_variants

    done = {(g.dataset, g.variant) for g in equal if len(g.values()) >= seeds}
    out: dict[str, list[str]] = {}
    for ds in DATASET_NAMES:
        lack = [v for v in list_variants(default_only=True) if (ds, v) not in done]
        if lack:
            out[ds] = lack
    return out


def gaps(published: list[Group], equal: list[Group]) -> dict[str, Any] | None:
    """One dataset's two regimes, variant by variant: ranks, and each gap to the published
    leader split into what stays under equal terms (the network) and the rest (the recipe).
    Only default variants trained in both regimes, with every seed finished, enter."""
    from variants import list_variants

    defaults = set(list_variants(default_only=True))
    pub = {g.variant: g for g in published if not g.overrides and g.variant in defaults
           and g.ok}
    eq = {g.variant: g for g in equal if g.variant in defaults and g.ok}
    both = sorted(set(pub) & set(eq))
    if len(both) < 2:
        return None
    p = {v: pub[v].mean_acc() for v in both}
    e = {v: eq[v].mean_acc() for v in both}
    rank_p = {v: i + 1 for i, v in enumerate(sorted(both, key=lambda v: (-p[v], v)))}
    rank_e = {v: i + 1 for i, v in enumerate(sorted(both, key=lambda v: (-e[v], v)))}
    leader = min(both, key=lambda v: rank_p[v])
    rows: list[dict[str, Any]] = []
    for v in sorted(both, key=lambda v: rank_p[v]):
        gp, ge = p[v] - p[leader], e[v] - e[leader]
        rows.append({"variant": v, "published": p[v], "equal": e[v], "rank_published": rank_p[v],
                     "rank_equal": rank_e[v], "gap_published": gp, "gap_network": ge,
                     "gap_recipe": gp - ge, "n_published": len(pub[v].values()),
                     "n_equal": len(eq[v].values())})
    total_p = sum(float(r["gap_published"]) for r in rows)
    total_e = sum(float(r["gap_network"]) for r in rows)
    return {"leader": leader, "rows": rows, "total_published": total_p, "total_network": total_e}


def gap_sentence(ds: str, g: dict[str, Any]) -> str:
    """How much of the published gaps is the recipe and how much the network, in one line."""
    tp, te = g["total_published"], g["total_network"]
    k = len(g["rows"]) - 1
    if tp == 0:
        return f"On {ds}, {g['leader']} does not lead the other {k} variants as published."
    share = (tp - te) / tp
    note = (" (above 100%: on equal terms the others overtake it)" if share > 1 else
            " (below 0%: on equal terms the gaps are wider than as published)" if share < 0
            else "")
    verb = "trail" if te <= 0 else "lead"
    return (f"On {ds}, the other {k} variants trail {g['leader']} as published by "
            f"{abs(100 * tp):.2f} pp in total (summed over them); trained on equal terms, they "
            f"{verb} it by {abs(100 * te):.2f} pp (the networks), so {100 * share:.0f}% of the "
            f"published gaps, {abs(100 * (tp - te)):.2f} pp, is the recipe{note}.")


def rank_figure(per_ds: dict[str, dict[str, Any]], out_dir: Path) -> str:
    """Each dataset a panel: every variant's rank as published (left) and on equal terms
    (right), a line between them."""
    import matplotlib.pyplot as plt

    from report.figures import palette, save, style

    names = sorted({r["variant"] for g in per_ds.values() for r in g["rows"]})
    colors = palette(names)
    with style():
        fig, axes = plt.subplots(1, len(per_ds), figsize=(4.6 * len(per_ds), 4.2),
                                 squeeze=False)
        for ax, (ds, g) in zip(axes[0], sorted(per_ds.items()), strict=True):
            n = len(g["rows"])
            for r in g["rows"]:
                y = [r["rank_published"], r["rank_equal"]]
                ax.plot([0, 1], y, marker="o", color=colors[r["variant"]], linewidth=1.8)
                ax.text(-0.04, y[0], f"{r['variant']} {pct(r['published'])}", ha="right",
                        va="center", fontsize=7.5)
                ax.text(1.04, y[1], f"{pct(r['equal'])} {r['variant']}", ha="left",
                        va="center", fontsize=7.5)
            ax.set_xlim(-0.9, 1.9)
            ax.set_ylim(n + 0.5, 0.5)
            ax.set_xticks([0, 1], ["as published", "equal terms"])
            ax.set_yticks(range(1, n + 1))
            ax.set_ylabel("rank (1 = highest mean test accuracy)")
            ax.set_title(ds)
            ax.grid(axis="x", visible=False)
        fig.tight_layout()
        path = save(fig, out_dir, "ranks-published-vs-equal.png")
        plt.close(fig)
    return path


def equal_terms_section(split: Split, main: list[tuple[RunSet, list[Group]]],
                        out_dir: Path) -> Section:
    sec = Section("Equal terms: the lr pick, and recipe against network", "equal-terms")
    sec.para(
        "Every default variant keeps its network and is trained by one shared recipe (Adam, "
        "constant lr, batch 128, 15 epochs; bench/suites/equal-lr.toml says why). Its lr is "
        "picked per variant and dataset by suite ", Code(SELECT_SUITE), ": one run per lr of "
        "the grid on the first 50,000 training images, scored on the last 10,000 (a fixed "
        "validation split; the test split is never loaded). The rule, as code applies it: "
        f"{RULES['max_val_acc']} Suite ", Code(FINAL_SUITE), " then trains each pick on the "
        "full training set and scores the test set. This section re-applies the rule to the "
        "selection records and checks that the lr the final runs trained is its pick.")
    tables = lr_tables(split)
    if not tables:
        sec.para("No selection records yet: ", Code("lenet-bench run --suite equal"),
                 " trains them.")
    for ds, headers, rows in tables:
        sec.add(Heading(3, f"{ds}: validation accuracy per lr", f"equal-lr-{ds}"),
                Table(tuple(headers), rows, (False,) + (True,) * (len(headers) - 2) + (False,)))
    pub = next((gs for rs, gs in main if rs.suite == PUBLISHED_SUITE), [])
    fin = next((rs for rs, _ in main if rs.suite == FINAL_SUITE), None)
    eq = next((gs for rs, gs in main if rs.suite == FINAL_SUITE), [])
    seeds = planned_seeds(fin.profile) if fin else 0
    missing = unfinished_cells(eq, seeds)
    if eq and missing:
        sec.para("Not complete yet: the equal-terms leaderboards lack "
                 + "; ".join(f"{ds}: {', '.join(vs)}" for ds, vs in sorted(missing.items()))
                 + f" (fewer than its {seeds} finished seeds, or none); `lenet-bench run "
                 "--suite equal` resumes them. Their rows and ranks below are provisional.")
    pub_ds, eq_ds = by_dataset(pub), by_dataset(eq)
    per_ds = {ds: g for ds in sorted(set(pub_ds) & set(eq_ds))
              if (g := gaps(pub_ds[ds], eq_ds[ds])) is not None}
    if not per_ds:
        sec.para("The recipe-against-network comparison needs both leaderboards of a dataset; "
                 "the equal-terms runs are not recorded yet.")
        return sec
    for ds, g in per_ds.items():
        sec.add(Heading(3, f"{ds}: as published against equal terms", f"equal-gaps-{ds}"))
        sec.para(gap_sentence(ds, g))
        sec.add(Table(
            ("variant", "as published", "rank", "equal terms", "rank",
             f"Δ vs {g['leader']} as published", "of it: network (equal terms)",
             "of it: recipe"),
            tuple((Cell(r["variant"]), cell(r["published"], pct(r["published"])),
                   cell(r["rank_published"], str(r["rank_published"])),
                   cell(r["equal"], pct(r["equal"])),
                   cell(r["rank_equal"], str(r["rank_equal"])),
                   cell(r["gap_published"], pp(r["gap_published"])),
                   cell(r["gap_network"], pp(r["gap_network"])),
                   cell(r["gap_recipe"], pp(r["gap_recipe"]))) for r in g["rows"]),
            (False,) + (True,) * 7))
    sec.add(Figure(rank_figure(per_ds, out_dir),
                   "Rank of every default variant as published (left) and on equal terms "
                   "(right), per dataset; means over seeds, the labels give the mean test "
                   f"accuracy. Regimes: {REGIMES[PUBLISHED_SUITE]} and {REGIMES[FINAL_SUITE]}.",
                   "rank of each variant under the two regimes"))
    return sec
