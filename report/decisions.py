"""The report's comparisons as sequential decisions: better, worse, equivalent, or undecided.

Every headline comparison (per dataset and leaderboard: the best variant against each other
one) and every d2l group's level against its reference is judged by bench.sequential's rule
on the seeds its records hold, replayed look by look (5, 10, 15 seeds per arm), so the verdict
is the one a live comparison would have stopped at, and `lenet-bench decide` knows which
configurations still need seeds. The epochs question is answered as a plateau instead.

Margins (m, the difference that matters): 0.3 pp on Fashion-MNIST, about the binomial SD of a
10,000-image test set at 90% accuracy (√(0.9·0.1/10,000) = 0.30 pp), and 0.1 pp on MNIST, the
same at 99% (0.10 pp): a difference inside ±m is smaller than what one test set can resolve.

Selection: the best variant of a leaderboard, and the level of a d2l group that `decide` gives
seeds to, are picked after seeing seeds that the comparison then reuses, which inflates the
error of a comparison with that arm (simulated, 9 equal variants: a false "worse" in 8% of
the comparisons with the best at α = 0.05). So α is split over the candidates the pick chose
from (Bonferroni; as in Hsu's multiple comparisons with the best, 1996): a comparison of X
with the best can only err where X against some other variant would err under its own fixed
rule, so α/(V − 1) each keeps it at α; a d2l group's k levels get α/k each, which keeps the
picked level's claims at α whichever level the pick lands on (tests/test_selection.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from bench.decide import BEST_VS_OTHERS
from bench.sequential import (
    METHOD,
    Design,
    Plateau,
    Verdict,
    decide,
    plateau_looks,
    prob_improvement,
)
from report.collect import Group, Record

#: The equivalence margin per dataset (accuracy units); see the module docstring.
MARGINS = {"mnist": 0.001, "fashion-mnist": 0.003}
#: Seeds per arm at each look; the last is the cap.
LOOKS = (5, 10, 15)
ALPHA = 0.05

RULE = (f"sequential rule: {METHOD}; α = {ALPHA} per comparison, split over the candidates "
        "a pick chose from (Bonferroni: α/(V − 1) against a leaderboard's best of V variants, "
        "α/k for each of a d2l group's k levels), looks at "
        f"{', '.join(map(str, LOOKS))} seeds per arm (cap {LOOKS[-1]}), margins "
        + ", ".join(f"±{100 * m:.1f} pp on {ds}" for ds, m in sorted(MARGINS.items())))


def design(dataset: str, candidates: int = 1) -> Design:
    """The rule for one comparison; `candidates`: how many arms a pick of one of its arms
    chose from (1: none), over which α is split (see the module docstring)."""
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates!r}")
    return Design(margin=MARGINS.get(dataset, 0.003), alpha=ALPHA / candidates, looks=LOOKS)


def leading_seeds(seeds: Collection[int]) -> int:
    """How many of seeds 0, 1, 2, … are there before the first missing one: the looks are at
    fixed numbers of seeds, so a gap ends the sample (a later seed cannot stand in for it)."""
    n = 0
    while n in seeds:
        n += 1
    return n


def seeds_in_order(by_seed: dict[int, float]) -> list[float]:
    """The values of seeds 0, 1, 2, … up to the first missing one (`leading_seeds`)."""
    return [by_seed[s] for s in range(leading_seeds(by_seed.keys()))]


@dataclass
class Arm:
    """One configuration of a comparison: its label, per-seed accuracy, and a record of it
    (what `decide` copies, seed changed, to train more seeds)."""

    label: str
    by_seed: dict[int, float]
    record: Record | None

    @property
    def values(self) -> list[float]:
        return seeds_in_order(self.by_seed)


@dataclass
class Decision:
    """A verdict of A against B (Δ = A − B), with P(A > B)."""

    suite: str
    profile: str
    dataset: str
    question: str  # e.g. "best vs each other variant", or a d2l group
    a: Arm
    b: Arm
    verdict: Verdict
    p_better: tuple[float, float, float] | None  # P(A > B) and its 95% bootstrap CI

    @property
    def words(self) -> str:
        return self.verdict.words()


def judge(suite: str, profile: str, dataset: str, question: str, a: Arm, b: Arm,
          candidates: int = 1) -> Decision:
    va, vb = a.values, b.values
    v = decide(va, vb, design(dataset, candidates))
    n = v.n  # the seeds judged: the deciding look's, the cap's, or all there are (open)
    p = prob_improvement(va[:n], vb[:n]) if n >= 3 else None
    return Decision(suite, profile, dataset, question, a, b, v, p)


def group_arm(g: Group) -> Arm:
    """A leaderboard group as an arm: its finished seeds' test accuracy."""
    return Arm(g.label, {int(r["seed"]): float(r["metrics"]["test_acc"]) for r in g.ok
                         if r["metrics"].get("test_acc") is not None},
               min(g.records, key=lambda r: r["seed"]) if g.records else None)


def early_mean(g: Group) -> float:
    """The mean over the first look's seeds (seeds 0–4): the best variant is chosen on these,
    so seeds added later cannot change which comparisons are asked."""
    vals = group_arm(g).values[:LOOKS[0]] or g.values()
    return sum(vals) / len(vals) if vals else -1.0


def versus_best(suite: str, profile: str, dataset: str, best: Group, others: list[Group]
                ) -> dict[str, Decision]:
    """Each other variant against the best (A = variant, B = best: Δ = variant − best, as
    the significance table shows it), by label. The best was picked from all V variants, so
    each comparison gets α/(V − 1): the best could have been any of X's V − 1 rivals."""
    b = group_arm(best)
    return {g.label: judge(suite, profile, dataset, BEST_VS_OTHERS, group_arm(g), b,
                           max(1, len(others)))
            for g in others}


def level_decisions(suite: str, profile: str, dataset: str, group: str, levels: list[Any],
                    reference: Any) -> list[Decision]:
    """A d2l group: each trained level against the group's reference level (Δ = level − ref),
    at α/k for k levels: `decide` gives seeds to the level with the highest mean, a pick."""
    if reference is None or not reference.trained:
        return []
    ref = Arm(reference.label, dict(reference.by_seed), _first(reference.records))
    judged = [lv for lv in levels if lv is not reference and lv.trained]
    return [judge(suite, profile, dataset, group, Arm(lv.label, dict(lv.by_seed),
                                                        _first(lv.records)), ref, len(judged))
            for lv in judged]


def _first(records: list[Record]) -> Record | None:
    return min(records, key=lambda r: r["seed"]) if records else None


def epochs_plateau(dataset: str, levels: list[Any]) -> Plateau | None:
    """The fewest epochs whose accuracy is equivalent (within m, paired over seeds) to the
    best of the longer runs' epochs; needs every epoch of the same ≥ 3 seeds. Judged at the
    same looks as the comparisons (5, 10, 15 seeds, α/3 each), so `decide` may add seeds to
    the long runs until it decides."""
    import numpy as np

    epochs = sorted((lv for lv in levels if lv.label.isdigit()), key=lambda lv: int(lv.label))
    if len(epochs) < 2:
        return None
    seeds = range(leading_seeds(set.intersection(*(set(lv.by_seed) for lv in epochs))))
    if len(seeds) < 3:
        return None
    curves = np.array([[lv.by_seed[s] for lv in epochs] for s in seeds])
    return plateau_looks(curves, MARGINS.get(dataset, 0.003), ALPHA, LOOKS)


def plateau_decision(suite: str, profile: str, dataset: str, group: str, levels: list[Any],
                     p: Plateau) -> Decision:
    """The epochs plateau as a comparison `decide` can add seeds to: A = the plateau epoch (or
    the epoch whose test stopped the sequence), B = the later epoch it was tested against.
    Outcome: equivalent (a plateau), worse (still rising at the last epoch), open (its next
    look needs seeds) or undecided (at the cap). Both arms stand for the same long runs."""
    last = max((lv for lv in levels if lv.label.isdigit()), key=lambda lv: int(lv.label))
    record = _first(last.records)
    if p.found:
        outcome, (e, ref, d, lo, hi) = "equivalent", (p.epoch, p.ref_epoch, p.delta, p.lo, p.hi)
    elif p.tested:
        e, ref, d, lo, hi, _ = p.tested[-1]
        outcome = "worse" if p.rising else "open" if p.next_n else "undecided"
    else:
        outcome, (e, ref, d, lo, hi) = ("open" if p.next_n else "undecided",
                                        (p.epoch, p.ref_epoch, None, None, None))
    v = Verdict(outcome, p.n_seeds, d, lo, hi, None, p.next_n if outcome == "open" else None,
                p.margin, p.alpha)
    return Decision(suite, profile, dataset, group, Arm(f"epoch {e}", dict(last.by_seed), record),
                    Arm(f"epoch {ref}", dict(last.by_seed), record), v, None)
