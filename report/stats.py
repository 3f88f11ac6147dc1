"""Statistics the report rests on: summaries over seeds, Welch's t-test, Holm, Hedges' g.

Kept free of report formatting so the tests can check each number against a hand computation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from bench.metrics import summarize

ALPHA = 0.05

__all__ = ["ALPHA", "Comparison", "compare", "hedges_g", "holm", "summarize", "welch"]


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float  # two-sided
    diff: float  # mean(a) - mean(b)
    ci_low: float  # 95% CI of the difference (Welch–Satterthwaite df)
    ci_high: float


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = math.fsum(xs) / n
    return m, math.fsum((x - m) ** 2 for x in xs) / (n - 1)


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's unequal-variance t-test (scipy's), or None where it is not defined.

    Not defined: fewer than 2 values in a group, or zero variance in both (the t statistic
    would be ±inf or 0/0, and a p-value from it would be invented precision).
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    ma, va = _mean_var(a)
    mb, vb = _mean_var(b)
    se2 = va / len(a) + vb / len(b)
    if se2 <= 0:
        return None
    with warnings.catch_warnings():
        # scipy warns of precision loss when a group's values are nearly identical; the
        # variance check above already decides whether the test is defined.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(list(a), list(b), equal_var=False)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(se2)
    diff = ma - mb
    return Welch(float(res.statistic), df, float(res.pvalue), diff, diff - half, diff + half)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (step-down, monotone, ≤ 1)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i], i))
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Hedges' g of a − b: Cohen's d on the pooled SD times the small-sample correction J.

    J = 1 − 3 / (4(n_a + n_b) − 9); with 3 seeds per group d alone overstates the effect.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    ma, va = _mean_var(a)
    mb, vb = _mean_var(b)
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    if pooled == 0:
        return None
    j = 1 - 3 / (4 * (na + nb) - 9)
    return (ma - mb) / pooled * j


@dataclass(frozen=True)
class Comparison:
    """One group against the reference: Welch, Holm-adjusted p and Hedges' g (None: n < 2)."""

    name: str
    n: int
    n_ref: int
    diff: float | None
    test: Welch | None
    p_holm: float | None
    g: float | None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def compare(ref: Sequence[float], others: dict[str, Sequence[float]]) -> list[Comparison]:
    """Each of `others` against `ref`, Holm-corrected over the tests that are defined."""
    names = sorted(others)
    tests = {n: welch(others[n], ref) for n in names}
    defined = [n for n in names if tests[n] is not None]
    adjusted = dict(zip(defined, holm([tests[n].p for n in defined]), strict=True))
    out = []
    for n in names:
        vals = others[n]
        diff = (math.fsum(vals) / len(vals) - math.fsum(ref) / len(ref)) if vals and ref else None
        out.append(Comparison(n, len(vals), len(ref), diff, tests[n], adjusted.get(n),
                              hedges_g(vals, ref)))
    return out
