"""The report's statistics against values computed by hand (and, for p, by an independent
numerical integration of the Student-t density)."""

from __future__ import annotations

import math

import pytest

from report.d2l import Level, answer
from report.fmt import level, level_key, pval
from report.stats import compare, hedges_g, holm, summarize, welch

A = [1.0, 2.0, 3.0, 4.0, 5.0]
B = [2.0, 4.0, 6.0, 8.0, 10.0]


def test_summary_mean_std_t_interval() -> None:
    s = summarize([0.80, 0.82, 0.84])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.82, abs=1e-12)
    assert s["std"] == pytest.approx(0.02, abs=1e-12)
    # t_{0.975, 2} = 4.30265273; half-width = t · s / √n = 4.30265273 · 0.02 / √3
    assert s["ci95"] == pytest.approx(4.30265273 * 0.02 / math.sqrt(3), rel=1e-8)
    assert s["ci95"] == pytest.approx(0.0496828, abs=1e-7)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.82 - 0.0496828, 0.82 + 0.0496828),
                                                        abs=1e-7)


def test_summary_small_n() -> None:
    assert summarize([0.9])["std"] is None and summarize([0.9])["ci95"] is None
    assert summarize([])["n"] == 0


def test_welch_known_case() -> None:
    # means 3 and 6, variances 2.5 and 10: t = −3/√(0.5 + 2) = −1.8973666,
    # df = 2.5² / (0.5²/4 + 2²/4) = 5.8823529; two-sided p = 0.1075312 (R: t.test gives 0.1075)
    w = welch(A, B)
    assert w is not None
    assert w.t == pytest.approx(-1.8973666, abs=1e-6)
    assert w.df == pytest.approx(5.8823529, abs=1e-6)
    assert w.p == pytest.approx(0.1075312, abs=1e-6)
    assert w.diff == pytest.approx(-3.0)
    assert w.ci_low < -3.0 < w.ci_high < 0.9  # the interval straddles 0 ⇔ p > 0.05


def test_welch_not_defined() -> None:
    assert welch([0.9], B) is None  # n = 1: no variance, no test
    assert welch([0.5, 0.5], [0.7, 0.7]) is None  # zero variance in both


def test_holm_known_list() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_hedges_g_known_case() -> None:
    # pooled SD √((4·2.5 + 4·10)/8) = 2.5; d = −3/2.5 = −1.2; J = 1 − 3/31
    assert hedges_g(A, B) == pytest.approx(-1.2 * (1 - 3 / 31))
    assert hedges_g([1.0], B) is None


def test_compare_holm_over_defined_tests_only() -> None:
    comps = {c.name: c for c in compare(A, {"same": A, "far": [11.0, 12.0, 13.0],
                                            "one": [3.0]})}
    assert comps["one"].test is None and comps["one"].p_holm is None
    assert comps["far"].p_holm == pytest.approx(min(1.0, 2 * comps["far"].test.p))
    assert comps["far"].significant and not comps["same"].significant


def _lv(label: str, order: float, accs: list[object]) -> Level:
    recs = [{"status": "ok" if isinstance(a, float) else str(a), "seed": i,
             "metrics": {"test_acc": a} if isinstance(a, float) else {}}
            for i, a in enumerate(accs)]
    return Level(label, (1, order), recs)


def test_answer_no_effect_reports_p() -> None:
    levels = [_lv("3", 3, [0.851, 0.854, 0.850]), _lv("5", 5, [0.852, 0.849, 0.855])]
    text = answer("kernel_size", levels)
    p = compare([0.852, 0.849, 0.855], {"3": [0.851, 0.854, 0.850]})[0].p_holm
    assert text.startswith(f"kernel size: no significant effect, p = {pval(p)}")


def test_answer_significant_and_diverged() -> None:
    levels = [_lv("0.01", 0.01, [0.70, 0.69, 0.71]), _lv("0.1", 0.1, [0.85, 0.86, 0.855]),
              _lv("0.5", 0.5, [0.81, "diverged", "diverged"])]
    text = answer("lr", levels)
    assert text.startswith("lr: significant effect")
    assert "best level 0.1" in text and "significantly worse: 0.01" in text
    assert "not tested (n < 2 or zero variance): 0.5" in text
    assert "0.5: 2 of 3 runs diverged" in text


def test_answer_cannot_tell_with_one_seed() -> None:
    text = answer("channels", [_lv("[3, 8]", 1, [0.88]), _lv("[6, 16]", 2, [0.89])])
    assert text.startswith("channels: cannot tell")


def test_levels_format_and_order() -> None:
    vals = [[120, 84], [84], 0.5, 0.01, "relu", {"pool": "max", "activation": "relu"}, None]
    ordered = sorted(vals, key=level_key)
    assert ordered[:5] == [None, 0.01, 0.5, [84], [120, 84]]
    assert [level(v) for v in ([6, 16], 0.05, True, {"b": 1, "a": "x"})] == [
        "[6, 16]", "0.05", "true", "a=x b=1"]
