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
from report.decisions import RULE, Decision, early_mean, versus_best
from report.doc import Cell, Code, Heading, Section, Table, cell
from report.fmt import acc_cell, num, pp, pp_interval, pval
from report.runsets import RunSet
from report.stats import ALPHA, MIN_SEEDS, Comparison, clip, compare

#: How the verdict column and the conclusions name the rule that made the call.
SEQUENTIAL_NAME = "sequential rule, see Significance"

HEADERS = ("variant", "n", "test acc", "Δ vs best", "95% CI of Δ", "Welch t", "df", "p",
           "p (Holm)", "Hedges' g", "P(variant > best) [95% CI]", "seeds judged",
           "interval of Δ (sequential)", "verdict (sequential rule)")
NUMERIC = (False, True, True, True, True, True, True, True, True, True, True, True, True, False)


def rankable(g: Group) -> bool:
    """Finished seeds of which at least one trained: a collapsed group is not an accuracy."""
    return bool(g.ok) and len(untrained(g)) < len(g.ok)


def p_better_text(d: Decision | None) -> str:
    if d is None or d.p_better is None:
        return "–"
    p, lo, hi = d.p_better
    return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


@dataclass
class DatasetTest:
    """The significance verdicts of one dataset in one run set, or why there are none."""

    runset: RunSet
    dataset: str
    groups: list[Group]
    best: Group | None = None
    ranked: list[Group] = field(default_factory=list)  # trained groups, best first
    rows: list[tuple[Group, Comparison]] = field(default_factory=list)
    # the sequential rule's verdict of each row (report.decisions), by label
    decisions: dict[str, Decision] = field(default_factory=dict)
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


def by_first_look(groups: list[Group]) -> list[Group]:
    """The groups that trained, best first: by the mean over the first look's seeds
    (early_mean; with 5 seeds or fewer, the mean), fixed, so seeds the sequential rule adds
    cannot change the questions, nor which variant the figures show as the best."""
    return sorted((g for g in groups if rankable(g)), key=lambda g: (-early_mean(g), g.label))


def test_dataset(rs: RunSet, ds: str, groups: list[Group]) -> DatasetTest:
    dt = DatasetTest(rs, ds, groups)
    ranked = by_first_look(groups)
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
    dt.decisions = versus_best(rs.suite, rs.profile, ds, dt.best, others)
    return dt


def significance_tests(main: list[tuple[RunSet, list[Group]]]) -> list[DatasetTest]:
    return [test_dataset(rs, ds, gs) for rs, groups in main
            for ds, gs in by_dataset(groups).items()]


def _row(g: Group, c: Comparison, d: Decision) -> tuple[Cell, ...]:
    t = c.test
    lo, hi = clip(t.ci_low, t.ci_high, -1.0, 1.0) if t else (None, None)
    v = d.verdict
    return (
        Cell(g.label), cell(c.n, str(c.n)),
        cell(g.accuracy()["mean"], acc_cell(g.accuracy(), g.values(), MIN_SEEDS)),
        cell(c.diff, pp(c.diff)),
        cell(lo, pp_interval(lo, hi) if t else "–"),
        cell(t.t if t else None, num(t.t if t else None)),
        cell(t.df if t else None, num(t.df if t else None, 1)),
        cell(t.p if t else None, pval(t.p if t else None)),
        cell(c.p_holm, pval(c.p_holm)),
        cell(c.g, num(c.g)),
        cell(d.p_better[0] if d.p_better else None, p_better_text(d)),
        cell(v.n, str(v.n)),
        cell(v.lo, pp_interval(v.lo, v.hi) if v.lo is not None else "–"),
        Cell(d.words),
    )


def conclusion(dt: DatasetTest) -> str:
    """The dataset's verdict in one sentence (also the summary's, word for word)."""
    assert dt.best is not None
    by: dict[str, list[str]] = {}
    for g, _ in dt.rows:
        d = dt.decisions[g.label]
        by.setdefault(d.words, []).append(f"{g.label} ({pp(d.verdict.delta)})"
                                          if d.verdict.delta is not None else g.label)
    s = f"{dt.best.label} has the highest mean"
    for words in sorted(by, key=_order):
        s += f"; {words} than it: " if words in ("better", "worse") else f"; {words}: "
        s += ", ".join(by[words])
    return s + f" ({SEQUENTIAL_NAME})."


def _order(words: str) -> tuple[int, str]:
    first = words.split()[0]
    return ({"worse": 0, "better": 1, "equivalent": 2}.get(first, 3), words)


def significance_section(tests: list[DatasetTest], many_devices: bool) -> Section:
    sec = Section("Significance", "significance")
    sec.para(
        "Per dataset of each leading run set, the variant with the highest mean test accuracy "
        "against every other one: Welch's unequal-variance t-test over seeds (two-sided), "
        "p-values Holm-corrected over the family of these comparisons (the best variant with "
        "each other variant on that dataset); effect size Hedges' g (Cohen's d on the pooled "
        "SD times J = 1 − 3/(4(n₁+n₂) − 9)); Δ = variant − best, its CI clipped to ±100 pp. "
        "The verdict is the sequential rule's, one of four: better, worse, equivalent within "
        "±m, or undecided after n seeds (seeds judged: the look it stopped at; its interval "
        f"is that look's). The {RULE}. `lenet-bench decide` adds seeds to the open ones. "
        "P(variant > best): the chance that a new seed of the variant beats a new seed of the "
        "best (Mann–Whitney over the seeds judged), with a 95% stratified bootstrap CI as "
        "rliable reports it (Agarwal et al. 2021; Bouthillier et al. 2021 recommend it). The "
        "best is the highest mean over seeds 0–4, picked after seeing them, which is why α is "
        "split over its V − 1 rivals (docs/decide.md, tests/test_selection.py). A table is "
        "printed only where every variant trained its full recipe, and a row is "
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
        sec.add(Table(HEADERS, tuple(_row(g, c, dt.decisions[g.label]) for g, c in dt.rows),
                      NUMERIC))
        sec.para(conclusion(dt))
    return sec
