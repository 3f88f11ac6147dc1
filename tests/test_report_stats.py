"""The report's statistics against values computed by hand (and, for p, by an independent
numerical integration of the Student-t density)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from report.d2l_answers import Level, Question, judge
from report.decisions import design
from report.fmt import level, level_key, pp, pp_interval
from report.stats import (
    clip,
    compare,
    confidence,
    hedges_g,
    holm,
    paired,
    prediction_interval,
    summarize,
    welch,
)

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
    recs = [{"status": "ok" if isinstance(a, float) else str(a), "seed": i, "run_id": f"{i}",
             "metrics": {"test_acc": a} if isinstance(a, float) else {}}
            for i, a in enumerate(accs)]
    lv = Level(label, (1, order), recs)
    lv.by_seed = {i: a for i, a in enumerate(accs) if isinstance(a, float)}
    return lv


def _answer(factor: str, levels: list[Level], ref: int) -> str:
    q = Question("d2l-ex2", "quick", factor, factor, "?", "fashion-mnist", levels)
    # the first level is the baseline here (the records carry no overrides to tell)
    levels.insert(0, levels.pop(ref))
    judge(q)
    return q.answer


def test_answer_undecided_names_the_seeds_and_the_rule() -> None:
    ref, k3 = [0.852, 0.849, 0.855], [0.851, 0.854, 0.850]
    text = _answer("kernel_size", [_lv("3", 3, k3), _lv("5", 5, ref)], 1)
    assert text == ("kernel_size: the reference kernel_size 5 (85.20%) has the highest mean; "
                    "undecided after 3 seeds: kernel_size 3 -0.03 pp (sequential rule).")


def test_answer_worse_and_diverged() -> None:
    low, ref = [0.70, 0.69, 0.71, 0.70, 0.72], [0.85, 0.86, 0.855, 0.85, 0.86]
    text = _answer("lr", [_lv("0.01", 0.01, low), _lv("0.1", 0.1, ref),
                          _lv("0.5", 0.5, [0.81, "diverged", "diverged"])], 1)
    from bench.sequential import look

    # both levels trained (0.5 on one seed): each is judged at α/2, the split over the levels
    v = look(low, ref, design("fashion-mnist", 2), 0)
    assert v.alpha == 0.05 / 2
    assert f"worse than the reference: lr 0.01 {pp(v.delta)} {pp_interval(v.lo, v.hi)}" in text
    assert "undecided after 1 seed: lr 0.5" in text
    assert "0.5 (2 diverged, 0 failed)" in text and "Holm" not in text


def test_answer_too_few_seeds() -> None:
    text = _answer("channels", [_lv("[3, 8]", 1, [0.88, 0.87]), _lv("[6, 16]", 2, [0.89, 0.9])],
                   1)
    assert text.startswith("channels: the reference channels [6, 16] (89.50%) has the highest "
                           "mean; undecided after 2 seeds: channels [3, 8] -2.00 pp")


def test_prediction_interval_by_hand() -> None:
    # mean 0.82, s 0.02, n 3: t(2) · s · √(1 + 1/3) = 4.30265273 · 0.02 · 1.1547005
    lo, hi = prediction_interval([0.80, 0.82, 0.84])
    half = 4.30265273 * 0.02 * math.sqrt(4 / 3)
    assert (lo, hi) == pytest.approx((0.82 - half, 0.82 + half), abs=1e-9)
    assert half == pytest.approx(0.0993655, abs=1e-6)  # √(n + 1) = 2 times the CI's half-width
    assert prediction_interval([0.80, 0.82]) is None  # n < 3: nothing
    assert prediction_interval([0.999, 0.990, 0.995])[1] == 1.0  # clipped


def test_confidence_clipped_and_min_seeds() -> None:
    assert confidence([0.9999, 0.9990, 0.9930])[1] == 1.0
    assert confidence([0.5, 0.6]) is None
    assert clip(-0.2, 1.3) == (0.0, 1.0) and clip(-1.5, 0.3, -1.0, 1.0) == (-1.0, 0.3)


def test_paired_by_hand() -> None:
    a = {0: 0.812, 1: 0.861, 2: 0.913, 3: 0.5}
    b = {0: 0.80, 1: 0.85, 2: 0.90}
    t = paired(a, b)  # seed 3 has no partner: left out
    diffs = [0.012, 0.011, 0.013]
    assert t.n == 3 and t.mean == pytest.approx(0.012)
    se = 0.001 / math.sqrt(3)
    assert t.p == pytest.approx(2 * stats.t.sf(0.012 / se, 2), rel=1e-9)
    assert t.p == pytest.approx(stats.ttest_rel([a[i] for i in range(3)],
                                                [b[i] for i in range(3)]).pvalue, rel=1e-9)
    assert t.diffs == pytest.approx(tuple(diffs))
    assert (t.ci_low, t.ci_high) == pytest.approx((0.012 - 4.30265273 * se,
                                                   0.012 + 4.30265273 * se), abs=1e-9)
    assert paired({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.7}).p is None  # n < 3
    assert paired({0: 0.8, 1: 0.9, 2: 0.7}, {0: 0.7, 1: 0.8, 2: 0.6}).p is None  # no variance


def test_compare_needs_three_seeds() -> None:
    comps = {c.name: c for c in compare([0.9, 0.91, 0.92], {"two": [0.5, 0.51],
                                                              "three": [0.5, 0.51, 0.52]})}
    assert comps["two"].test is None and comps["two"].p_holm is None and comps["two"].g is None
    assert comps["three"].test is not None and comps["three"].significant


def test_levels_format_and_order() -> None:
    vals = [[120, 84], [84], 0.5, 0.01, "relu", {"pool": "max", "activation": "relu"}, None]
    ordered = sorted(vals, key=level_key)
    assert ordered[:5] == [None, 0.01, 0.5, [84], [120, 84]]
    assert [level(v) for v in ([6, 16], 0.05, True, {"b": 1, "a": "x"})] == [
        "[6, 16]", "0.05", "true", "a=x b=1"]


def test_only_evaluation_settings_keep_a_group_on_its_recipe() -> None:
    from report.collect import Group
    from report.published import trains_the_recipe

    def grp(ov: dict) -> Group:
        label = ",".join(f"{k}={v}" for k, v in ov.items())
        return Group("variants", "reference", "mnist", "mlp_softmax_dim0", label,
                     records=[{"overrides": ov, "status": "ok", "seed": 0, "metrics": {}}])

    assert trains_the_recipe(grp({}))
    assert trains_the_recipe(grp({"eval_batch_size": 10000}))
    assert not trains_the_recipe(grp({"eval_batch_size": 10000, "lr": 0.1}))
    assert not trains_the_recipe(grp({"num_epochs": 3}))


def test_lenet_d2l_reason_compares_training_with_the_chapters_printout() -> None:
    from report.collect import Group
    from report.published import KNOWN

    def rec(seed: int, loss: float, acc: float, tests: list[float]) -> dict:
        hist = [{"epoch": i + 1, "test_acc": a, "train_loss": loss, "train_acc": acc}
                for i, a in enumerate(tests)]
        return {"status": "ok", "seed": seed, "metrics": {"test_acc": tests[-1]},
                "history": hist, "overrides": {}}

    cfg = {"lr": 0.9}
    near = Group("variants", "reference", "fashion-mnist", "lenet_d2l", "", records=[
        rec(0, 0.468, 0.824, [0.70, 0.78, 0.80, 0.76]), rec(1, 0.470, 0.823, [0.7, 0.79, 0.8])])
    why = KNOWN["lenet_d2l"](near, cfg, [near])
    assert "training matches the chapter's" in why[0] and "0.468–0.470" in why[0]
    assert "up to 9.00 pp" in why[1]  # seed 1: 0.70 → 0.79
    far = Group("variants", "quick", "fashion-mnist", "lenet_d2l", "", records=[
        rec(0, 0.90, 0.65, [0.60, 0.62])])
    assert "matches" not in KNOWN["lenet_d2l"](far, cfg, [far])[0]
