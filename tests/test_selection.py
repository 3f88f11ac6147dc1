"""A picked arm keeps the rule's error rates: α split over the candidates the pick chose from.

The best variant of a leaderboard (highest mean over seeds 0–4) and the d2l level that
`decide` gives seeds to (highest mean so far) are picked on seeds that their comparisons then
reuse. Simulated on groups with no true difference (normal seeds, SD 0.5 pp, the Fashion-MNIST
seed SDs measured here): with the plain α the picks inflate the false verdicts; with α split
over the candidates (report.decisions.design) each stays under α plus three Monte-Carlo
standard errors. The rate is per simulated group, so the bound uses the number of groups.
"""

from __future__ import annotations

import math

import numpy as np

from bench.sequential import decide_many
from report.decisions import ALPHA, LOOKS, design

N_GROUPS = 10_000
BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_GROUPS)
SD = 0.005
DS = "fashion-mnist"


def _best_vs_others(n_variants: int, split: bool) -> float:
    """Per comparison, the rate of "better"/"worse" of each variant against the best of
    `n_variants` equal ones, the best picked on seeds 0–4 (report.decisions.early_mean)."""
    rng = np.random.default_rng(7)
    x = 0.9 + SD * rng.standard_normal((N_GROUPS, n_variants, LOOKS[-1]))
    rows = np.arange(N_GROUPS)
    best = x[:, :, :LOOKS[0]].mean(axis=2).argmax(axis=1)
    others = np.ones((N_GROUPS, n_variants), bool)
    others[rows, best] = False
    a = x[others].reshape(-1, LOOKS[-1])
    b = np.repeat(x[rows, best], n_variants - 1, axis=0)
    outcomes, _ = decide_many(a, b, design(DS, n_variants - 1 if split else 1))
    return float(np.isin(outcomes, ("better", "worse")).mean())


def test_the_best_of_nine_picked_on_its_seeds_inflates_the_plain_rule() -> None:
    assert _best_vs_others(9, split=False) > BOUND


def test_split_over_the_rivals_the_best_of_nine_keeps_alpha() -> None:
    assert _best_vs_others(9, split=True) <= BOUND
    assert _best_vs_others(3, split=True) <= BOUND


def _picked_level(k: int, split: bool) -> np.ndarray:
    """`decide` on a d2l group of k levels equal to the reference: 3 seeds each, then seeds
    for the level with the highest mean so far, look by look, until it is decided or at the
    cap (bench.decide.candidates). The outcome of the picked level per group."""
    rng = np.random.default_rng(11)
    cap = LOOKS[-1]
    ref = 0.9 + SD * rng.standard_normal((N_GROUPS, cap))
    lv = 0.9 + SD * rng.standard_normal((N_GROUPS, k, cap))
    sums = np.cumsum(lv, axis=2)
    d = design(DS, k if split else 1)
    n = np.full((N_GROUPS, k), 3)
    out = np.full(N_GROUPS, "open", dtype=object)
    active = np.ones(N_GROUPS, bool)
    rows = np.arange(N_GROUPS)
    for _ in range(len(LOOKS) * k + 1):
        means = np.take_along_axis(sums, (n - 1)[:, :, None], axis=2)[:, :, 0] / n
        best = means.argmax(axis=1)
        nb = n[rows, best]
        for n_look in LOOKS:
            at = active & (nb == n_look)
            if at.any():
                o, _ = decide_many(lv[at, best[at], :n_look], ref[at, :n_look], d)
                idx = rows[at][o != "open"]
                out[idx] = o[o != "open"]
                active[idx] = False
        grow = active & (nb < cap)
        nxt = np.array([min(x for x in LOOKS if x > v) if v < cap else cap for v in nb])
        n[rows[grow], best[grow]] = nxt[grow]
    assert not active.any()  # every group ran to a verdict
    return out


def test_seeds_for_the_best_level_inflate_a_false_better() -> None:
    """A fixed comparison says "better" with no effect at most α/2 of the time; the picked
    one of four levels, under the plain α, well beyond it."""
    plain = _picked_level(4, split=False)
    assert float(np.mean(plain == "better")) > ALPHA / 2 + 3 * math.sqrt(
        ALPHA / 2 * (1 - ALPHA / 2) / N_GROUPS)


def test_split_over_the_levels_the_picked_level_keeps_alpha() -> None:
    for k in (2, 4):
        out = _picked_level(k, split=True)
        assert float(np.isin(out, ("better", "worse")).mean()) <= BOUND
    assert set(out) <= {"better", "worse", "equivalent", "undecided"}


if __name__ == "__main__":  # the table in docs/decide.md: python -m tests.test_selection
    from scipy import stats

    for n in LOOKS:  # how much wider the split makes the interval against the best of 9
        q = [stats.t.ppf(1 - ALPHA / (2 * len(LOOKS) * c), n - 1) for c in (1, 8, 9)]
        print(f"{n} seeds: interval x{q[1] / q[0]:.2f} (alpha/8), x{q[2] / q[0]:.2f} (alpha/9)")
    for v in (9, 3):
        print(f"best of {v}: plain {_best_vs_others(v, False):.1%}, "
              f"split {_best_vs_others(v, True):.1%}")
    for k in (4, 2):
        plain, split = _picked_level(k, False), _picked_level(k, True)
        print(f"picked of {k} levels: plain {np.isin(plain, ('better', 'worse')).mean():.1%} "
              f"({np.mean(plain == 'better'):.1%} better), "
              f"split {np.isin(split, ('better', 'worse')).mean():.1%}")
