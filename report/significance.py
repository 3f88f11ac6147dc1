"""Section 4: every variant against the dataset's reference, Welch + Holm + Hedges' g."""

from __future__ import annotations

from collections import defaultdict

from report.collect import Group, by_dataset, reference_group
from report.doc import Cell, Code, Heading, Section, Table, cell
from report.fmt import acc_pm, num, pp, pval
from report.stats import ALPHA, Comparison, compare

HEADERS = ("variant", "n", "test acc (mean ± std)", "Δ vs reference", "95% CI of Δ",
           "Welch t", "df", "p", "p (Holm)", "Hedges' g", "verdict")
NUMERIC = (False, True, True, True, True, True, True, True, True, True, False)


def verdict(c: Comparison) -> str:
    if c.test is None:
        return "n too small" if min(c.n, c.n_ref) < 2 else "not defined (zero variance)"
    if not c.significant:
        return "no significant difference"
    return "better (significant)" if (c.diff or 0) > 0 else "worse (significant)"


def _row(g: Group, c: Comparison) -> tuple[Cell, ...]:
    t = c.test
    return (
        Cell(g.label), cell(c.n, str(c.n)), cell(g.accuracy()["mean"], acc_pm(g.accuracy())),
        cell(c.diff, pp(c.diff)),
        cell(t.ci_low if t else None, f"[{pp(t.ci_low)}, {pp(t.ci_high)}]" if t else "–"),
        cell(t.t if t else None, num(t.t if t else None)),
        cell(t.df if t else None, num(t.df if t else None, 1)),
        cell(t.p if t else None, pval(t.p if t else None)),
        cell(c.p_holm, pval(c.p_holm)),
        cell(c.g, num(c.g)), Cell(verdict(c)),
    )


def _summary(ref: Group, rows: list[tuple[Group, Comparison]]) -> str:
    tested = [(g, c) for g, c in rows if c.test is not None]
    sig = [(g, c) for g, c in tested if c.significant]
    untested = len(rows) - len(tested)
    s = (f"{len(sig)} of {len(tested)} tested differences from {ref.label} are significant "
         f"at α = {ALPHA} after Holm's correction")
    s += (": " + "; ".join(f"{g.label} {pp(c.diff)} (p = {pval(c.p_holm)})" for g, c in sig)
          if sig else "")
    if untested:
        s += f"; {untested} could not be tested (fewer than 2 finished seeds or zero variance)"
    return s + "."


def significance_section(groups: list[Group]) -> Section:
    sec = Section("Significance", "significance")
    sec.para(
        "Each variant's test accuracy against a reference on the same dataset and run set "
        "(", Code("lenet_d2l"), " on fashion-mnist, ", Code("lenet5"), " on mnist, else the "
        "best variant): Welch's unequal-variance t-test over seeds (two-sided), p-values "
        "Holm-corrected over the comparisons of each table; effect size Hedges' g (Cohen's d on "
        "the pooled SD times the small-sample correction J = 1 − 3/(4(n₁+n₂) − 9)); Δ = "
        "variant − reference. With fewer than 2 finished seeds a test is not defined and the "
        "table says so instead of giving a p-value."
    )
    if not groups:
        sec.para("No records of the variant suites yet.")
        return sec
    for ds, gs in by_dataset(groups).items():
        sets: dict[str, list[Group]] = defaultdict(list)
        for g in gs:
            sets[g.runset].append(g)
        for runset, members in sorted(sets.items()):
            title = ds if len(sets) == 1 else f"{ds} ({runset})"
            sec.add(Heading(3, title, f"significance-{ds}-{runset}".replace("/", "-")))
            ref = reference_group(members)
            if ref is None:
                sec.para("No finished runs: nothing to compare.")
                continue
            others = [g for g in members if g is not ref and g.ok]
            comps = {c.name: c for c in compare(ref.values(),
                                                {g.label: g.values() for g in others})}
            rows = [(g, comps[g.label]) for g in others]
            sec.para("Reference: ", Code(ref.label), f", {acc_pm(ref.accuracy())} "
                     f"(n = {ref.accuracy()['n']}).")
            if not rows:
                sec.para("No other variant has finished runs here.")
                continue
            sec.add(Table(HEADERS, tuple(_row(g, c) for g, c in rows), NUMERIC))
            sec.para(_summary(ref, rows))
    return sec
