"""The report's rules, each on a small synthetic record set: one run set per table and figure,
no verdict below 3 seeds, intervals inside [0, 100]%, prediction intervals for published
figures, budgets, did-not-train levels, one paired verdict per d2l question, the epochs group,
and an opening summary that says only what the tables below it say."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from bench.metrics import t_quantile_975
from report.budget import budget_of, did_not_train, recipe_epochs
from report.collect import Group
from report.fmt import pval
from report.markdown import to_markdown
from report.render import build
from report.runsets import profile_rank, split_runsets
from report.stats import compare, holm
from tests.report_records import synth


def render(records: list[dict[str, Any]], tmp: Path) -> str:
    intro, sections = build(records, tmp, tmp, tmp / "nodata")
    return to_markdown("t", intro, sections)


def section(md: str, title: str) -> str:
    m = re.search(rf"^## \d+\. {re.escape(title)}\n(.*?)(?=^## \d+\. |\Z)", md,
                  flags=re.M | re.S)
    assert m, title
    return m.group(1)


def rows_of(md: str, name: str) -> list[str]:
    return re.findall(rf"^\| {re.escape(name)} \|.*$", md, flags=re.M)


def seeds(variant: str, accs: list[Any], **kw: Any) -> list[dict[str, Any]]:
    return [synth(variant, s, a, **kw) for s, a in enumerate(accs)]


# --- run sets ------------------------------------------------------------------------------

def test_profile_precedence_unknown_names_last() -> None:
    names = ["smoke", "nightly", "full", "quick", "reference", "alpha"]
    assert sorted(names, key=profile_rank) == ["full", "reference", "quick", "smoke", "alpha",
                                               "nightly"]


def test_each_suite_leads_with_its_most_complete_run_set() -> None:
    recs = (seeds("lenet5", [0.9], profile="smoke") + seeds("lenet5", [0.9] * 2, profile="quick")
            + seeds("lenet5", [0.9] * 3, profile="nightly")
            + seeds("lenet5", [0.9] * 3, profile="reference")
            + seeds("lenet5", [0.9] * 2, suite="d2l-ex9", profile="nightly", group="g")
            + seeds("lenet5", [0.9] * 2, profile="full", device="cpu")
            + seeds("lenet5", [0.9] * 3, profile="full", device="cuda"))
    split = split_runsets(recs)
    assert [(rs.suite, rs.profile, rs.device) for rs in split.lead] == [
        ("d2l-ex9", "nightly", "cpu"), ("variants", "full", "cuda")]
    assert [(rs.profile, rs.device) for rs in split.others] == [
        ("full", "cpu"), ("reference", "cpu"), ("quick", "cpu"), ("smoke", "cpu"),
        ("nightly", "cpu")]
    # the same profile on two devices: the one with more finished runs leads, never pooled
    only_full = split_runsets([r for r in recs if r["profile"] == "full"])
    assert [rs.device for rs in only_full.lead] == ["cuda"]
    assert "another device (cpu)" in only_full.why_not_lead(only_full.others[0])


def test_mixed_run_sets_never_share_a_table_or_figure(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke + quick + reference of one suite: the sections use reference only; the others are
    in the appendix, each alone; every figure is drawn from one run set."""
    from report import figures as F

    drawn: list[set[str]] = []
    for name in ("pareto_figure", "curves_figure", "topk_figure"):
        real = getattr(F, name)

        def spy(groups: list[Group], *a: Any, _real: Any = real, **kw: Any) -> Any:
            drawn.append({g.runset for g in groups})
            return _real(groups, *a, **kw)

        monkeypatch.setattr(F, name, spy)
    accs = {"reference": [0.9911, 0.9905, 0.9917], "quick": [0.9612, 0.9632],
            "smoke": [0.8197]}
    recs = [r for p, a in accs.items() for v in ("lenet5", "lenet5_bn")
            for r in seeds(v, [x - (0.001 if v == "lenet5" else 0) for x in a], profile=p,
                           epochs=None if p == "reference" else 1)]
    md = render(recs, tmp_path)
    main = md.split("## 11. Appendix", 1)[0]
    assert "96.12" not in main and "81.97" not in main and "82.07" not in main
    lead = section(md, "Leaderboard")
    assert len(rows_of(lead, "lenet5")) == 1 and "Run set `variants/reference`." in lead
    app = section(md, "Appendix: other run sets")
    assert app.index("### variants/quick") < app.index("### variants/smoke")
    assert "| 96.22% (seeds: 96.12, 96.32) | too few seeds to test |" in app
    assert "| 81.97% | too few seeds to test |" in app
    assert "2 other run sets" in section(md, "Summary")
    assert drawn and all(s == {"variants/reference"} for s in drawn)


# --- seeds, intervals, published figures ----------------------------------------------------

def test_below_three_seeds_no_test_interval_or_verdict(tmp_path: Path) -> None:
    """n = 3, 2 and 1, every recipe in full: only n = 3 gets an interval, a p or a verdict."""
    recs = (seeds("lenet5", [0.9903, 0.9898, 0.9907]) + seeds("lenet5_bn", [0.9881, 0.9870])
            + seeds("mlp", [0.9790]))
    md = render(recs, tmp_path)
    lead = section(md, "Leaderboard")
    assert re.search(r"\| 99\.03 ± 0\.05% \| \[98\.91, 99\.14\] \|", rows_of(lead, "lenet5")[0])
    assert "| 98.75% (seeds: 98.81, 98.70) | too few seeds to test |" in \
        rows_of(lead, "lenet5_bn")[0]
    assert "| 97.90% | too few seeds to test |" in rows_of(lead, "mlp")[0]
    sig = section(md, "Significance")
    for name, n in (("lenet5_bn", "2 seeds"), ("mlp", "1 seed")):
        row = rows_of(sig, name)[0]  # no Welch, no Holm, no interval, no P: the first look is 5
        tail = f"| – | – | – | – | – | – | – | {n[0]} | – | undecided after {n} |"
        assert row.endswith(tail), row
    pub = section(md, "Published vs reproduced")
    assert "too few seeds to test (n = 2)" in rows_of(pub, "lenet5_bn")[0]
    assert "too few seeds to test (n = 1)" in rows_of(pub, "mlp")[0]
    assert "the runner-up is undecided after 2 seeds" in section(md, "Summary")


def test_no_interval_outside_0_100(tmp_path: Path) -> None:
    """Near 100% accuracy (and near 0% error) the t-intervals reach past the bounds: clipped."""
    recs = (seeds("lenet5", [0.9999, 0.9990, 0.9930]) + seeds("lenet5_bn", [0.9995, 0.9991,
                                                                             0.9950]))
    md = render(recs, tmp_path)
    pairs = re.findall(r"\[(-?\d+\.\d+), (-?\d+\.\d+)\](?! pp)", md)
    assert pairs
    for lo, hi in pairs:
        assert 0.0 <= float(lo) <= float(hi) <= 100.0, (lo, hi)
    assert "100.00]" in section(md, "Leaderboard")
    assert "| [0.00, " in rows_of(section(md, "Published vs reproduced"), "lenet5")[0]


def test_published_figure_against_the_prediction_interval(tmp_path: Path) -> None:
    """lenet_d2l's 83.6% lies outside our mean's CI but inside the interval for one new run:
    a single published run is reproduced."""
    vals = [0.8280, 0.8300, 0.8320]
    m, s, n = sum(vals) / 3, 0.002, 3
    ci = t_quantile_975(n - 1) * s / math.sqrt(n)
    pi = t_quantile_975(n - 1) * s * math.sqrt(1 + 1 / n)
    published = 0.836
    assert not m - ci <= published <= m + ci and m - pi <= published <= m + pi
    md = render(seeds("lenet_d2l", vals) + seeds("lenet_modern", [0.80, 0.81, 0.82]), tmp_path)
    row = rows_of(section(md, "Published vs reproduced"), "lenet_d2l")[0]
    assert f"| [{100 * (m - pi):.2f}, {100 * (m + pi):.2f}] |" in row
    assert "| reproduced: inside the prediction interval | – |" in row


def test_budget_cut_short_is_not_comparable_and_not_tested(tmp_path: Path) -> None:
    """fashion-mnist trains every recipe in full (tested); on mnist one variant trains 2 epochs
    and one a 10,000-image subset: no significance table, published figures not comparable."""
    e5 = recipe_epochs("lenet5")
    recs = (seeds("lenet_d2l", [0.8312, 0.8405, 0.8377])
            + seeds("lenet_modern", [0.9021, 0.9050, 0.9032])
            + seeds("lenet5", [0.9803, 0.9798, 0.9807], epochs=2)
            + seeds("lenet5_bn", [0.9790, 0.9796, 0.9721], subset=10_000))
    md = render(recs, tmp_path)
    sig = section(md, "Significance")
    fashion, mnist = sig.split("### mnist", 1)
    assert "Best: `lenet_modern`" in fashion and rows_of(fashion, "lenet_d2l")
    assert "No significance table: not printed: 2 of 2 variants trained less" in mnist
    assert f"lenet5 trained 2 of {e5} epochs" in mnist
    assert "lenet5_bn on 10,000 of 60,000 training images" in mnist
    assert not rows_of(mnist, "lenet5")
    pub = section(md, "Published vs reproduced")
    assert f"| not comparable: trained 2 of {e5} epochs |" in rows_of(pub, "lenet5")[0]
    assert "not comparable: on 10,000 of 60,000 training images" in rows_of(pub, "lenet5_bn")[0]
    b = budget_of(recs[6])
    lead = rows_of(section(md, "Leaderboard"), "lenet5")[0]
    assert f"| 2 of {e5} | {2 * math.ceil(60_000 / b.batch_size):,} ({b.optimizer}) |" in lead
    summary = section(md, "Summary")
    assert "not tested: the budgets were cut short" in summary
    assert "sequential rule; Welch, Holm p" in summary.split("- mnist", 1)[0]  # fashion tested


def test_optimizer_steps_count_the_partial_last_batch() -> None:
    r = synth("lenet_d2l", 0, 0.8, epochs=3, subset=1001)  # no usual batch size divides 1001
    b = budget_of(r)
    assert b.steps == 3 * math.ceil(1001 / b.batch_size) and b.shortfall() is not None
    full = budget_of(synth("lenet_d2l", 0, 0.8))
    assert full.full and full.shortfall() is None
    assert full.epochs == recipe_epochs("lenet_d2l")


# --- did not train -------------------------------------------------------------------------

def test_did_not_train_from_the_confusion_matrix() -> None:
    assert did_not_train(synth("lenet_d2l", 0, "chance"))
    assert not did_not_train(synth("lenet_d2l", 0, 0.31))
    old = synth("lenet_d2l", 0, "chance")
    del old["metrics"]["confusion"]  # an older record: judged by its per-class accuracy
    assert did_not_train(old)
    del old["metrics"]["per_class_acc"]
    assert not did_not_train(old)  # nothing to judge by
    failed = {**synth("lenet_d2l", 0, "chance"), "status": "failed"}
    assert not did_not_train(failed)


def d2l_records(levels: dict[Any, list[Any]], group: str = "activation",
                factor: str = "activation") -> list[dict[str, Any]]:
    return [synth("lenet_tweakable", s, a, suite="d2l-ex2", profile="quick", group=group,
                  factor=factor, value=v, overrides={factor: v}, epochs=1)
            for v, accs in levels.items() for s, a in enumerate(accs)]


def test_chance_level_did_not_train_is_neither_ranked_nor_tested(tmp_path: Path) -> None:
    recs = d2l_records({"relu": [0.85, 0.86, 0.84], "tanh": [0.87, 0.885, 0.862],
                        "sigmoid": ["chance"] * 3})
    recs += seeds("lenet_d2l", ["chance"] * 3) + seeds("lenet_modern", [0.90, 0.91, 0.92])
    md = render(recs, tmp_path)
    d2l = section(md, "d2l exercises")
    row = next(r for r in rows_of(d2l, "fashion-mnist") if "| sigmoid |" in r)
    assert "| 3 | did not train (10.00 ± 0.00%) | – |" in row and row.endswith("did not train |")
    answer = re.search(r"\*\*Answer \(fashion-mnist\):\*\* (.*)", d2l).group(1)
    assert "(sequential rule)" in answer
    assert answer.endswith("did not train (one class predicted): sigmoid.")
    lead = section(md, "Leaderboard")
    assert "| 3 | 0 | 0 | 3 | did not train (10.00 ± 0.00%) | – |" in rows_of(lead, "lenet_d2l")[0]
    assert "did not train: it predicts Coat for (almost) every test image" in lead
    sig = section(md, "Significance")
    assert "only one variant has finished runs that trained" in sig


# --- the d2l questions ---------------------------------------------------------------------

def test_one_paired_verdict_per_question(tmp_path: Path) -> None:
    """Seeds move the levels together: the paired rule decides what Welch cannot."""
    ref = [0.80, 0.85, 0.90, 0.83, 0.87]
    up = [0.812, 0.861, 0.913, 0.842, 0.881]  # +1.18 pp, every seed
    same = [0.8001, 0.8502, 0.8998, 0.8301, 0.8699]  # within a hundredth of a pp
    assert not compare(ref, {"up": up})[0].significant  # unpaired: seed noise hides it
    md = render(d2l_records({"relu": ref, "gelu": up, "tanh": same}), tmp_path)
    d2l = section(md, "d2l exercises")
    assert d2l.count("**Answer (") == 1 and "Welch" not in d2l
    p = holm([stats.ttest_rel(up, ref).pvalue, stats.ttest_rel(same, ref).pvalue])
    gelu = next(r for r in rows_of(d2l, "fashion-mnist") if "| gelu |" in r)
    assert re.search(rf"\| {re.escape(pval(p[0]))} \| better \|$", gelu), gelu
    tanh = next(r for r in rows_of(d2l, "fashion-mnist") if "| tanh |" in r)
    assert tanh.endswith("| equivalent within ±0.30 pp |")
    answer = re.search(r"\*\*Answer \(fashion-mnist\):\*\* (.*)", d2l).group(1)
    assert answer.startswith("activation: highest mean activation gelu")
    assert "better than the reference: activation gelu +1.18 pp [" in answer
    assert "equivalent within ±0.30 pp: activation tanh" in answer
    assert answer.endswith("(sequential rule).")
    assert "Reference (fashion-mnist): relu, the baseline" in d2l
    assert "resolved" not in d2l and "significant" not in d2l


def test_too_few_seeds_for_a_look_read_undecided(tmp_path: Path) -> None:
    md = render(d2l_records({"relu": [0.80, 0.85], "gelu": [0.90, 0.95]}), tmp_path)
    d2l = section(md, "d2l exercises")
    gelu = next(r for r in rows_of(d2l, "fashion-mnist") if "| gelu |" in r)
    assert gelu.endswith("| +10.00 pp | – | – | – | undecided after 2 seeds |")
    assert "undecided after 2 seeds: activation gelu +10.00 pp" in d2l
    assert "resolved" not in d2l.split("**Answer", 1)[1]


def _epochs_records(curves: list[list[float]]) -> list[dict]:
    return [synth("lenet_tweakable", s, c[-1], suite="d2l-ex2", profile="quick",
                  group="epochs", factor="num_epochs", epochs=len(c), history=c,
                  overrides={"num_epochs": len(c)}) for s, c in enumerate(curves)]


def test_epochs_group_is_answered_as_a_plateau(tmp_path: Path) -> None:
    curves = [[0.70, 0.78, 0.81, 0.82], [0.71, 0.77, 0.80, 0.83], [0.69, 0.79, 0.82, 0.84],
              [0.70, 0.78, 0.80, 0.82], [0.72, 0.79, 0.81, 0.83]]
    d2l = section(render(_epochs_records(curves), tmp_path), "d2l exercises")
    table = d2l.split("| dataset | num_epochs |", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| fashion-mnist \| (\w+) \|", table, flags=re.M) == ["1", "2", "3", "4"]
    assert "lenet_tweakable" not in table
    assert "Reference (fashion-mnist): 4, the longest training (4 epochs)." in d2l
    # epoch 3 is 2 pp under epoch 4 in every seed: not equivalent, so no earlier plateau
    assert "epochs: no plateau yet: accuracy still rises at the last epoch (4); epoch 3 is " \
           "worse than epoch 4 by -2.00 pp [" in d2l
    rows = [r for r in rows_of(table, "fashion-mnist")]
    assert rows[2].endswith("| worse |") and "vs epoch 4" in rows[2]
    assert all(r.endswith("| not tested: below the first epoch that failed |")
               for r in rows[:2])


def test_the_plateau_tests_nothing_before_the_first_look(tmp_path: Path) -> None:
    """3 seeds: the plateau's first look is at 5 (its seeds may be added after looking)."""
    curves = [[0.70, 0.78, 0.81, 0.82], [0.71, 0.77, 0.80, 0.83], [0.69, 0.79, 0.82, 0.84]]
    d2l = section(render(_epochs_records(curves), tmp_path), "d2l exercises")
    assert "epochs: undecided after 3 seeds: no epoch tested yet; the first look is at 5" in d2l
    table = d2l.split("| dataset | num_epochs |", 1)[1].split("\n\n", 1)[0]
    rows = rows_of(table, "fashion-mnist")
    assert [r.rsplit("|", 2)[1].strip() for r in rows] == ["undecided after 3 seeds"] * 3 + ["–"]


def test_a_flat_curve_has_its_plateau_where_it_flattens(tmp_path: Path) -> None:
    base = [0.70, 0.80, 0.85, 0.86, 0.86, 0.86]
    curves = [[a + 0.0001 * ((s * 7 + e * 3) % 5) for e, a in enumerate(base)]
              for s in range(5)]
    recs = [synth("lenet_tweakable", s, c[-1], suite="d2l-ex2", profile="quick",
                  group="epochs", factor="num_epochs", epochs=6, history=c,
                  overrides={"num_epochs": 6}) for s, c in enumerate(curves)]
    d2l = section(render(recs, tmp_path), "d2l exercises")
    assert "epochs: plateau at epoch 4: equivalent within ±0.30 pp" in d2l


# --- the summary says what the tables say --------------------------------------------------

def check_summary(md: str) -> int:
    """Every summary line against the table it comes from; returns the lines checked."""
    summary, checked = section(md, "Summary"), 0
    lead, sig = section(md, "Leaderboard"), section(md, "Significance")
    for m in re.finditer(r"^- ([\w-]+) \([\w/-]+\): `([^`]+)`, highest mean test accuracy "
                         r"(.+?), ([+-][\d.]+) pp over `([^`]+)` \((.+?)\); (.*)$", summary,
                         flags=re.M):
        ds, best, acc, margin, runner, racc, how = m.groups()
        table = lead.split(f"### {ds}", 1)[1].split("\n### ", 1)[0]
        assert f"| {acc} |" in rows_of(table, best)[0]
        assert f"| {racc} |" in rows_of(table, runner)[0]
        means = [float(re.match(r"([\d.]+)", x).group(1)) for x in (acc, racc)]
        assert float(margin) == pytest.approx(means[0] - means[1], abs=0.011)
        if "sequential rule" in how:
            words = re.match(r"the runner-up is (.+?) \(Δ", how).group(1)
            words = words.removesuffix(" than the best")
            row = rows_of(sig.split(f"### {ds}", 1)[1], runner)[0]
            assert row.endswith(f"| {words} |"), (row, words)
            iv = re.search(r"interval (\[.+?\]) at (\d+) seeds", how)
            if iv:
                assert f"| {iv.group(2)} | {iv.group(1)} |" in row
            assert "not resolved" not in how and "significant" not in how
        checked += 1
    pub = section(md, "Published vs reproduced")
    verdicts = re.findall(r"^\| [^|]+ \| [^|]+ \| test (?:accuracy|error) \|(?:[^|]*\|){4} "
                          r"([^|]+) \|", pub, flags=re.M)
    m = re.search(r"^(\d+) of (\d+) published figures reproduced", summary, flags=re.M)
    if m:
        assert int(m.group(2)) == len(verdicts)
        assert int(m.group(1)) == sum(v.startswith("reproduced") for v in verdicts)
        for line in re.findall(r"^- `(\w+)` \(.*?, ours [\d.]+%\): (.*)$", summary, flags=re.M):
            assert rows_of(pub, line[0])[0].split(" | ")[7] in line[1]
            checked += 1
    answers = re.findall(r"^\*\*Answer \([\w-]+\):\*\* (.*)$", section(md, "d2l exercises"),
                         flags=re.M)
    questions = summary.split("### d2l questions", 1)[1] if answers else ""
    bullets = re.findall(r"^- `d2l[\w-]*`(?: \([\w-]+\))? (.*)$", questions, flags=re.M)
    assert sorted(bullets) == sorted(answers)
    return checked + len(bullets)


def test_summary_comes_from_the_tables(tmp_path: Path) -> None:
    recs = (seeds("lenet_d2l", [0.8312, 0.8405, 0.8377])
            + seeds("lenet_modern", [0.9021, 0.9050, 0.9032])
            + seeds("lenet5", [0.9903, 0.9898, 0.9907]) + seeds("lenet5_bn", [0.9881, 0.9870])
            + d2l_records({"relu": [0.80, 0.85, 0.90], "gelu": [0.812, 0.861, 0.913]}))
    md = render(recs, tmp_path)
    assert md.index("## 1. Summary") < md.index("## 2. Leaderboard")
    assert check_summary(md) >= 5


def test_a_best_whose_later_seeds_fall_behind_is_not_called_the_highest_mean(
        tmp_path: Path) -> None:
    """The best is chosen on the first look's seeds (0-4) so added seeds cannot change which
    comparisons are asked; when the runner-up's added seeds lift its mean above the best's,
    the summary says where the best led and by how much it now trails, not "highest mean"."""
    a = [0.9900, 0.9902, 0.9898, 0.9901, 0.9899] + [0.9850] * 5
    b = [0.9880, 0.9882, 0.9878, 0.9881, 0.9879] + [0.9920] * 5
    md = render(seeds("lenet5", a, dataset="mnist") + seeds("lenet5_bn", b, dataset="mnist"),
                tmp_path)
    line = next(x for x in section(md, "Summary").splitlines() if x.startswith("- mnist"))
    assert "`lenet5`, highest mean test accuracy over the first look's seeds (0–4)" in line
    assert "over all its seeds 98.75 ± 0.26%, 0.25 pp below `lenet5_bn` (99.00" in line
    assert "`lenet5`, highest mean test accuracy 98" not in line
    # the figures show the same best (report.gallery calls by_first_look), not the mean leader
    from report.collect import group_records
    from report.significance import by_first_look

    groups = group_records(seeds("lenet5", a, dataset="mnist")
                           + seeds("lenet5_bn", b, dataset="mnist"))
    assert [g.variant for g in by_first_look(groups)] == ["lenet5", "lenet5_bn"]
    assert max(groups, key=lambda g: g.mean_acc()).variant == "lenet5_bn"


def test_fixture_summary_comes_from_the_tables(rendered_report: Any) -> None:
    assert check_summary(rendered_report.md.read_text()) >= 8


def test_per_level_published_figures(tmp_path: Path) -> None:
    """A d2l group's per-level published figures (the suite's `published` table): judged like a
    variant's, by budget, seeds and prediction interval, and counted in the summary."""
    from bench.suites import load_suite

    group = next((g for g in load_suite("d2l-ex2").groups if g.published), None)
    if group is None:
        pytest.skip("no d2l-ex2 group publishes per-level figures in this tree")
    items = group.published["levels"][:2]
    full, short = items[0], items[1]  # one level trained in full, one cut to 1 epoch
    jit = [-0.002, 0.0, 0.002]
    recs = [synth("lenet_tweakable", s, full["value"] + j, suite="d2l-ex2", profile="quick",
                  group=group.name, factor=group.factor, value=full["level"],
                  overrides={group.factor: full["level"]}) for s, j in enumerate(jit)]
    recs += [synth("lenet_tweakable", s, short["value"] + j, suite="d2l-ex2", profile="quick",
                   group=group.name, factor=group.factor, value=short["level"], epochs=1,
                   overrides={group.factor: short["level"]}) for s, j in enumerate(jit)]
    md = render(recs, tmp_path)
    d2l = section(md, "d2l exercises")
    table = d2l.split("| 95% prediction interval | verdict |", 1)[1].split("\n\n", 1)[0]
    rows = table.strip().splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].endswith("| reproduced: inside the prediction interval |")
    e = recipe_epochs("lenet_tweakable")
    assert rows[1].endswith(f"| not comparable: trained 1 of {e} epochs |")
    assert f"{group.name} (fashion-mnist): 1 of 2 figures of" in section(md, "Summary")


def test_analysis_questions_answered_in_one_line() -> None:
    from report.d2l_answers import analysis_answer

    act = {"activations": {"classes": ["Pullover", "Coat"], "probe": {"pixels": {"mean": 0.8}},
                           "variants": {"a": {"over_seeds": {
                               "conv1": {"probe_acc": {"mean": 0.81, "n": 1}},
                               "conv2": {"probe_acc": {"mean": 0.83, "n": 1}}}}}}}
    line = analysis_answer("activations", act)
    assert "pullover vs coat" in line and "a 81.00% → 83.00%" in line
    assert "1 seed per network: descriptive, too few seeds to test" in line
    ood = {"ood": {"variants": {"a": {"over_seeds": {
        "in_distribution": {"msp_mean": {"mean": 0.9, "n": 3}},
        "gaussian_noise": {"msp_mean": {"mean": 0.4, "n": 3}}}}}}}
    assert "a 0.90 → 0.40" in analysis_answer("ood", ood)
    assert "means over 3 seeds per network" in analysis_answer("ood", ood)
    assert analysis_answer("ood", {}).startswith("answered by the analysis below")
