"""Statistics the report rests on: summaries over seeds, Welch's t-test, the paired t-test,
Holm, Hedges' g, and the prediction interval for one new run.

Kept free of report formatting so the tests can check each number against a hand computation.
Below MIN_SEEDS finished seeds no test, interval or verdict is computed at all: with n = 2 a
variance has one degree of freedom and any p-value or interval from it is noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from bench.metrics import summarize

ALPHA = 0.05
#: A variance below this is float noise (accuracies are multiples of 1/n_test), not spread: a
#: test on it would report invented precision.
TINY_VAR = 1e-18
MIN_SEEDS = 3  # fewer finished seeds: no p-value, interval or verdict, only the seeds' values

__all__ = ["ALPHA", "MIN_SEEDS", "Comparison", "Paired", "clip", "compare", "confidence",
           "hedges_g", "holm", "paired", "prediction_interval", "summarize", "welch"]


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
    if se2 <= TINY_VAR:
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


def compare(ref: Sequence[float], others: dict[str, Sequence[float]],
            min_n: int = MIN_SEEDS) -> list[Comparison]:
    """Each of `others` against `ref`, Holm-corrected over the tests that are defined.

    A test is defined only where both sides have at least `min_n` values (and some variance).
    """
    names = sorted(others)
    tests = {n: (welch(others[n], ref) if min(len(others[n]), len(ref)) >= min_n else None)
             for n in names}
    defined = {n: t for n in names if (t := tests[n]) is not None}
    adjusted = dict(zip(defined, holm([t.p for t in defined.values()]), strict=True))
    out = []
    for n in names:
        vals = others[n]
        diff = (math.fsum(vals) / len(vals) - math.fsum(ref) / len(ref)) if vals and ref else None
        out.append(Comparison(n, len(vals), len(ref), diff, tests[n], adjusted.get(n),
                              hedges_g(vals, ref) if tests[n] is not None else None))
    return out


def clip(lo: float, hi: float, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """An interval cut to what the quantity can be (an accuracy lies in [0, 1])."""
    return min(max(lo, low), high), max(min(hi, high), low)


def confidence(values: Sequence[float], min_n: int = MIN_SEEDS) -> tuple[float, float] | None:
    """The 95% Student-t interval of the mean, clipped to [0, 1]; None below `min_n` values."""
    s = summarize(values)
    if s["n"] < min_n or s["ci_low"] is None:
        return None
    return clip(s["ci_low"], s["ci_high"])


def prediction_interval(values: Sequence[float], min_n: int = MIN_SEEDS
                        ) -> tuple[float, float] | None:
    """Where 95% of single new runs should land: mean ± t(n−1) · s · √(1 + 1/n), in [0, 1].

    A published figure is one run, so it is compared with this, not with the (√n times
    narrower) interval of our mean. None below `min_n` values.
    """
    from bench.metrics import t_quantile_975

    s = summarize(values)
    if s["n"] < min_n or s["std"] is None:
        return None
    half = t_quantile_975(s["n"] - 1) * s["std"] * math.sqrt(1 + 1 / s["n"])
    return clip(s["mean"] - half, s["mean"] + half)


@dataclass(frozen=True)
class Paired:
    """a − b over the seeds both have (same seed = same initialization draw and data order).

    `p` is the paired t-test's two-sided p (None below MIN_SEEDS pairs or when every pair
    differs by the same amount); the CI is the 95% t-interval of the mean difference, clipped
    to [−1, 1] (a difference of two accuracies).
    """

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def tested(self) -> bool:
        return self.p is not None


def paired(a: dict[int, float], b: dict[int, float], min_n: int = MIN_SEEDS) -> Paired:
    """The paired comparison of two configurations' per-seed values."""
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    diffs = tuple(a[s] - b[s] for s in seeds)
    if not diffs:
        return Paired(seeds, diffs, None, None, None, None)
    mean = math.fsum(diffs) / len(diffs)
    if len(diffs) < min_n:
        return Paired(seeds, diffs, mean, None, None, None)
    _, var = _mean_var(diffs)
    if var <= TINY_VAR:
        return Paired(seeds, diffs, mean, None, None, None)
    se = math.sqrt(var / len(diffs))
    t = mean / se
    df = len(diffs) - 1
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.975, df)) * se
    lo, hi = clip(mean - half, mean + half, -1.0, 1.0)
    return Paired(seeds, diffs, mean, lo, hi, p)
