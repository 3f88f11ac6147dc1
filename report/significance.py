"""Section: across variants, the best one against each other, where the budgets allow it.

A table is printed only for a dataset whose every row trained its full recipe: at budgets cut
short, a difference measures how fast each network starts, not which is better. Welch's t-test
over seeds, Holm-corrected over the comparisons of the best variant with every other one on
that dataset, Hedges' g; below MIN_SEEDS seeds a row gets no test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from report.budget import group_budget, untrained
from report.collect import Group, by_dataset
from report.doc import Cell, Code, Heading, Section, Table, cell
from report.fmt import TOO_FEW, acc_cell, num, pp, pp_interval, pval
from report.runsets import RunSet
from report.stats import ALPHA, MIN_SEEDS, Comparison, clip, compare

HEADERS = ("variant", "n", "test acc", "Δ vs best", "95% CI of Δ", "Welch t", "df", "p",
           "p (Holm)", "Hedges' g", "verdict")
NUMERIC = (False, True, True, True, True, True, True, True, True, True, False)


def rankable(g: Group) -> bool:
    """Finished seeds of which at least one trained: a collapsed group is not an accuracy."""
    return bool(g.ok) and len(untrained(g)) < len(g.ok)


def verdict(c: Comparison) -> str:
    if c.test is None:
        return TOO_FEW if min(c.n, c.n_ref) < MIN_SEEDS else "not defined (zero variance)"
    return "worse (significant)" if c.significant else "not resolved"


@dataclass
class DatasetTest:
    """The significance verdicts of one dataset in one run set, or why there are none."""

    runset: RunSet
    dataset: str
    groups: list[Group]
    best: Group | None = None
    ranked: list[Group] = field(default_factory=list)  # trained groups, best first
    rows: list[tuple[Group, Comparison]] = field(default_factory=list)
    absent: str | None = None  # why no table: budgets cut short, nothing to compare
    short: list[tuple[Group, str]] = field(default_factory=list)  # rows cut short, and how

    @property
    def runner_up(self) -> Group | None:
        return self.ranked[1] if len(self.ranked) > 1 else None

    def comparison(self, g: Group) -> Comparison | None:
        return next((c for h, c in self.rows if h is g), None)


def truncated(groups: list[Group]) -> list[tuple[Group, str]]:
    out = []
    for g in groups:
        short = group_budget(g).shortfall()
        if short:
            out.append((g, short))
    return out


def test_dataset(rs: RunSet, ds: str, groups: list[Group]) -> DatasetTest:
    dt = DatasetTest(rs, ds, groups)
    ranked = sorted((g for g in groups if rankable(g)), key=lambda g: (-g.mean_acc(), g.label))
    if not ranked:
        dt.absent = "no variant has a finished run that trained"
        return dt
    dt.best, dt.ranked = ranked[0], ranked
    short = dt.short = truncated([g for g in groups if g.ok])
    if short:
        eg = "; ".join(f"{g.label} {why}" for g, why in short[:4])
        more = f"; and {len(short) - 4} more" if len(short) > 4 else ""
        dt.absent = (f"not printed: {len(short)} of {len([g for g in groups if g.ok])} "
                     f"variants trained less than their recipe ({eg}{more}). At budgets cut "
                     "short a difference measures how fast each network starts, not which one "
                     "is better; profile full (or reference) trains every recipe in full")
        return dt
    others = ranked[1:]
    if not others:
        dt.absent = "only one variant has finished runs that trained: nothing to compare"
        return dt
    comps = {c.name: c for c in compare(dt.best.values(),
                                        {g.label: g.values() for g in others})}
    dt.rows = [(g, comps[g.label]) for g in others]
    return dt


def significance_tests(main: list[tuple[RunSet, list[Group]]]) -> list[DatasetTest]:
    return [test_dataset(rs, ds, gs) for rs, groups in main
            for ds, gs in by_dataset(groups).items()]


def _row(g: Group, c: Comparison) -> tuple[Cell, ...]:
    t = c.test
    lo, hi = clip(t.ci_low, t.ci_high, -1.0, 1.0) if t else (None, None)
    return (
        Cell(g.label), cell(c.n, str(c.n)),
        cell(g.accuracy()["mean"], acc_cell(g.accuracy(), g.values(), MIN_SEEDS)),
        cell(c.diff, pp(c.diff)),
        cell(lo, pp_interval(lo, hi) if t else "–"),
        cell(t.t if t else None, num(t.t if t else None)),
        cell(t.df if t else None, num(t.df if t else None, 1)),
        cell(t.p if t else None, pval(t.p if t else None)),
        cell(c.p_holm, pval(c.p_holm)),
        cell(c.g, num(c.g)), Cell(verdict(c)),
    )


def conclusion(dt: DatasetTest) -> str:
    """The dataset's verdict in one sentence (also the summary's, word for word)."""
    assert dt.best is not None
    tested = [(g, c) for g, c in dt.rows if c.test is not None]
    worse = [(g, c) for g, c in tested if c.significant]
    same = [g.label for g, c in tested if not c.significant]
    untested = [g.label for g, c in dt.rows if c.test is None]
    s = f"{dt.best.label} has the highest mean"
    if worse:
        s += "; significantly worse (Holm): " + ", ".join(
            f"{g.label} {pp(c.diff)} (p = {pval(c.p_holm)})" for g, c in worse)
    if same:
        s += "; not resolved from it: " + ", ".join(same)
    if untested:
        s += f"; {TOO_FEW} (n < {MIN_SEEDS}): " + ", ".join(untested)
    return s + "."


def significance_section(tests: list[DatasetTest], many_devices: bool) -> Section:
    sec = Section("Significance", "significance")
    sec.para(
        "Per dataset of each leading run set, the variant with the highest mean test accuracy "
        "against every other one: Welch's unequal-variance t-test over seeds (two-sided), "
        "p-values Holm-corrected over the family of these comparisons (the best variant with "
        "each other variant on that dataset); effect size Hedges' g (Cohen's d on the pooled "
        "SD times J = 1 − 3/(4(n₁+n₂) − 9)); Δ = variant − best, its CI clipped to ±100 pp. "
        "The best is picked after seeing the data, so read borderline p-values with care. A "
        "table is printed only where every variant trained its full recipe, and a row is "
        f"tested only with at least {MIN_SEEDS} finished seeds on both sides; variants whose "
        f"runs all did not train are left out. α = {ALPHA}."
    )
    if not tests:
        sec.para("No records of the variant suites yet.")
        return sec
    multi = len({t.runset for t in tests}) > 1
    for dt in tests:
        title = dt.dataset + (f" ({dt.runset.name})" if multi else "")
        sec.add(Heading(3, title, f"significance-{dt.runset.suite}-{dt.dataset}"))
        sec.para("Run set ", Code(dt.runset.title(many_devices)), ".")
        if dt.absent:
            sec.para(f"No significance table: {dt.absent}.")
            continue
        assert dt.best is not None
        best = dt.best
        sec.para("Best: ", Code(best.label), ", "
                 f"{acc_cell(best.accuracy(), best.values(), MIN_SEEDS)} "
                 f"(n = {best.accuracy()['n']}).")
        sec.add(Table(HEADERS, tuple(_row(g, c) for g, c in dt.rows), NUMERIC))
        sec.para(conclusion(dt))
    return sec
