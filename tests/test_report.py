"""The rendered report from a fixed set of records: sections, golden Markdown, determinism,
escaping, self-contained HTML, and the numbers the generated sentences quote."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from pathlib import Path

import pytest
from scipy import stats

from bench.config import resolve_config
from report.collect import dedupe, group_records, load_all
from report.doc import Para, Section
from report.exercises import d2l_section
from report.fmt import pval
from report.gallery import _examples
from report.markdown import block
from report.render import render_report
from report.runsets import split_runsets
from report.stats import compare, holm
from tests.report_records import EVIL, REFERENCE, Rendered, evil_description, write_fixture

GOLDEN = Path(__file__).parent / "golden" / "report.md"
SECTIONS = ["Summary", "Leaderboard", "Equal terms: the lr pick, and recipe against network",
            "Published vs reproduced", "Significance", "d2l exercises",
            "Figures", "Speed: the engine against the usual loop", "What ran", "Reproduce",
            "Appendix: other run sets"]
ANCHORS = ["summary", "leaderboard", "equal-terms", "published", "significance", "d2l",
           "figures", "speed", "what-ran", "reproduce", "appendix"]


def _md(r: Rendered) -> str:
    return r.md.read_text()


def test_every_section_present_in_order(rendered_report: Rendered) -> None:
    md, html = _md(rendered_report), rendered_report.html.read_text()
    heads = re.findall(r"^## (\d+)\. (.+)$", md, flags=re.M)
    assert heads == [(str(i), t) for i, t in enumerate(SECTIONS, 1)]
    pos = [html.index(f'<h2 id="{a}">') for a in ANCHORS]
    assert pos == sorted(pos)


def _normalize(md: str) -> str:
    """Run ids hash the whole RunConfig, so they change with its schema, not with the report."""
    return re.sub(r"\b[0-9a-f]{16}\b", "<run-id>", md)


def test_golden_markdown(rendered_report: Rendered) -> None:
    """UPDATE_GOLDEN=1 rewrites tests/golden/report.md (review the diff before committing)."""
    got = _normalize(_md(rendered_report))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
    want = GOLDEN.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            "golden", "rendered", n=1))
        pytest.fail(f"report.md differs from {GOLDEN} (UPDATE_GOLDEN=1 to accept):\n"
                    + diff[:6000])


def test_same_records_same_bytes(rendered_report: Rendered, tmp_path: Path,
                                 data_root: Path) -> None:
    """A second render (elsewhere) is byte-identical: Markdown, HTML and every PNG."""
    with evil_description():
        md, html = render_report(rendered_report.results, tmp_path, data_root)
    assert md.read_bytes() == rendered_report.md.read_bytes()
    assert html.read_bytes() == rendered_report.html.read_bytes()
    first = rendered_report.results / "figures"
    names = sorted(p.name for p in first.glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    for n in names:
        assert (first / n).read_bytes() == (tmp_path / "figures" / n).read_bytes(), n


def test_every_string_is_escaped(rendered_report: Rendered) -> None:
    html, md = rendered_report.html.read_text(), _md(rendered_report)
    assert html.count("<script>") == 1  # the sortable-table script, nothing from the records
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # description and failed error
    assert "&lt;b&gt;120&lt;/b&gt;) &amp; &lt;script" in html
    assert "<b>" not in html and "<i>generated" not in html  # summary.json value too
    assert EVIL not in md and r"\<script\>alert(1)\</script\>" in md


def test_html_is_self_contained(rendered_report: Rendered) -> None:
    html = rendered_report.html.read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    srcs = re.findall(r'<img src="([^"]{0,40})', html)
    figures = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", _md(rendered_report), flags=re.M)
    assert len(srcs) == len(figures) >= 9
    assert all(s.startswith("data:image/png;base64,") for s in srcs)


def test_markdown_figures_are_relative_links_that_exist(rendered_report: Rendered) -> None:
    md = _md(rendered_report)
    links = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", md, flags=re.M)
    assert links and all(link.startswith("figures/") for link in links)
    for link in links:
        assert (rendered_report.md.parent / link).is_file(), link
    assert re.search(r"^\|---\|", md, flags=re.M)  # pipe tables


def section(md: str, title: str) -> str:
    """The Markdown of one numbered section, by its title."""
    m = re.search(rf"^## \d+\. {re.escape(title)}\n(.*?)(?=^## \d+\. |\Z)", md,
                  flags=re.M | re.S)
    assert m, title
    return m.group(1)


def test_leaderboard_leads_with_the_reference_run_set(rendered_report: Rendered) -> None:
    lead = section(_md(rendered_report), "Leaderboard")
    assert "Run set `variants/reference`." in lead and "variants/quick" not in lead
    # sorted by accuracy within each dataset; epochs and optimizer steps of the recipe
    mnist = lead.split("### mnist", 1)[1]
    order = re.findall(r"^\| (lenet5_bn|lenet5|mlp) \|", mnist, flags=re.M)
    assert order == ["lenet5_bn", "lenet5", "mlp"]
    lenet5 = resolve_config("lenet5", "mnist", 0)
    steps = lenet5.num_epochs * math.ceil(60_000 / lenet5.batch_size)
    assert re.search(rf"^\| lenet5 \| 3 \| 0 \| 0 \| 0 \| [\d.]+ ± [\d.]+% \| \[[\d.]+, "
                     rf"[\d.]+\] \| {lenet5.num_epochs} \| {steps:,} \(sgd\) \|", mnist, flags=re.M)


def test_appendix_counts_unfinished_runs(rendered_report: Rendered) -> None:
    app = section(_md(rendered_report), "Appendix: other run sets")
    quick = app.split("### variants/quick", 1)[1].split("### variants/smoke", 1)[0]
    assert "profile quick is less complete than variants/reference" in quick
    assert re.search(r"^\| lenet5_bn \| 2 \| 0 \| 1 \| 0 \| 98\.67% \(seeds: 98\.62, 98\.71\) "
                     r"\| too few seeds to test \| 2 of 10 \|", quick, flags=re.M)
    assert re.search(r"^\| mlp \| 2 \| 1 \| 0 \| 0 \| 96\.61% \(seeds: ", quick, flags=re.M)
    assert "`lenet5_bn`, seed 0 (variants/quick), failed: RuntimeError" in quick
    assert "`mlp`, seed 2 (variants/quick), diverged at epoch 2" in quick
    assert "profile smoke is less complete" in app.split("### variants/smoke", 1)[1]


def test_published_vs_reproduced(rendered_report: Rendered) -> None:
    pub = section(_md(rendered_report), "Published vs reproduced")
    rows = {m.group(1): m.group(0) for m in
            re.finditer(r"^\| (\w+) \| [\w-]+ \| test (?:accuracy|error) \|.*$", pub, flags=re.M)}
    assert "| reproduced: inside the prediction interval | – |" in rows["lenet_d2l"]
    assert "| 0.95% |" in rows["lenet5"] and "| test error |" in rows["lenet5"]
    assert "not reproduced: outside the prediction interval" in rows["lenet_modern"]
    # lenet5_bn's interval reaches past 100%: clipped
    assert "| [97.62, 100.00] |" in rows["lenet5_bn"] and "reproduced" in rows["lenet5_bn"]
    assert "too few seeds to test (n = 2)" in rows["mlp"] and "softmax over dim 0" in rows["mlp"]


def test_significance_against_the_best(rendered_report: Rendered) -> None:
    sig = section(_md(rendered_report), "Significance")
    assert "Best: `lenet_modern`" in sig and "Best: `lenet5_bn`" in sig
    d2l, modern = REFERENCE["lenet_d2l"][1], REFERENCE["lenet_modern"][1]
    p = compare(modern, {"d": d2l})[0].p_holm
    # Welch and Holm as before; the verdict is the sequential rule's: 3 seeds, before its
    # first look (5), so undecided whatever the p-value says
    assert re.search(rf"^\| lenet_d2l \| 3 \|.*\| {re.escape(pval(p))} \| [-\d.]+ \| "
                     r"0\.00 \[0\.00, 0\.00\] \| 3 \| – \| undecided after 3 seeds \|$",
                     sig, flags=re.M)
    assert re.search(r"^\| mlp \| 2 \|.*\| – \| – \| – \| 2 \| – \| undecided after 2 seeds \|$",
                     sig, flags=re.M)
    assert "undecided after 3 seeds: lenet_d2l" in sig and "(sequential rule" in sig


def test_d2l_answers_are_generated(rendered_report: Rendered) -> None:
    md = _md(rendered_report)
    d2l = section(md, "d2l exercises")
    assert "**Question:** Does the convolution window size (3…7) change accuracy?" in d2l
    k3, k5 = [0.8512, 0.8540, 0.8498], [0.8571, 0.8549, 0.8590]
    k7 = [0.8530, 0.8561, 0.8519]
    ps = holm([stats.ttest_rel(k3, k5).pvalue, stats.ttest_rel(k7, k5).pvalue])
    assert f"kernel_size 3 ({100 * sum(k3) / 3:.2f}%)" not in d2l  # not the highest mean
    assert re.search(rf"^\| fashion-mnist \| 3 \| 3 \|.*\| {re.escape(pval(ps[0]))} \| "
                     r"undecided after 3 seeds \|$", d2l, flags=re.M)
    assert "kernel_size: the reference kernel_size 5 (85.70%) has the highest mean; " \
           "undecided after 3 seeds: kernel_size 3 -0.53 pp, kernel_size 7 -0.33 pp " \
           "(sequential rule)" in d2l
    assert "not resolved" not in md and "(significant)" not in md
    assert "runs that did not finish: 0.5 (2 diverged, 0 failed)" in d2l
    assert "figures/d2l-ex2-quick-kernel-size.png" in d2l
    assert "figures/d2l-ex4-quick-analysis-activations-layer1.png" in d2l
    assert "| activations.layer1.mean_activation.coat | 0.2311 |" in d2l
    assert "Answer (from the analysis)" not in md and "conv2 separates" not in md
    assert "| activations.layer1.runs | 1 entries (details in the file) |" in d2l
    assert "digest" not in d2l and "not repeated" not in d2l


def test_reproduce_commands_are_verified(rendered_report: Rendered) -> None:
    md = _md(rendered_report)
    assert ("lenet-bench run --suite variants --profile quick --device cpu --variants "
            "lenet5,lenet5_bn,lenet_d2l,lenet_modern,mlp --seeds 3\n") in md
    assert "git checkout 3f2c1a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39" in md
    assert "suite definitions (the suite is missing here" in md and "d2l-ex2/quick" in md


def test_header_says_what_ran(rendered_report: Rendered) -> None:
    what = section(_md(rendered_report), "What ran")
    for s in ("| variants | quick | cpu | appendix | 15 | 13 | 1 | 1 |",
              "| variants | reference | cpu | main | 14 | 14 | 0 | 0 |",
              "| variants | smoke | cpu | appendix | 2 | 2 | 0 | 0 |",
              "| d2l-ex2 | quick | cpu | main | 21 | 19 | 2 | 0 |",
              "Intel(R) Xeon(R) CPU @ 2.20GHz", "torch 2.11.0+cpu", "`3f2c1a9e8b7d`",
              "2026-01-15T10:00:00+00:00"):
        assert s in what, s


def test_empty_results_still_render(tmp_path: Path) -> None:
    md, html = render_report(tmp_path / "results", tmp_path / "out", tmp_path / "nodata")
    text = md.read_text()
    assert re.findall(r"^## \d+\. (.+)$", text, flags=re.M) == SECTIONS
    assert "No records found" in text and "No d2l exercise records yet" in text
    assert "No records yet: nothing to answer." in section(text, "Summary")
    assert html.read_text().count("<img") == 0


def test_sparse_records_do_not_crash(tmp_path: Path) -> None:
    """Old or cut-short records (no timing, history, metrics or env) still render."""
    path = tmp_path / "results" / "variants" / "quick" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": "a" * 16}) + "\n" + json.dumps(
        {"run_id": "b" * 16, "status": "ok", "variant": "lenet5", "dataset": "mnist", "seed": 0,
         "metrics": {"test_acc": 0.98}, "timing": None}) + "\n")
    md, _ = render_report(tmp_path / "results", tmp_path / "out", tmp_path / "nodata")
    text = md.read_text()
    assert re.findall(r"^## \d+\. (.+)$", text, flags=re.M) == SECTIONS
    assert "| lenet5 | 1 | 0 | 0 | 0 | 98.00% | too few seeds to test |" in text


def _examples_md(results: Path, data_root: Path, out: Path) -> str:
    split = split_runsets(load_all(results))
    lead = next(rs for rs in split.lead if rs.suite == "variants")
    groups = [g for g in group_records(split.records(lead)) if g.dataset == "mnist"]
    sec = Section("x", "x")
    _examples(sec, groups, "mnist", results, out, data_root)
    assert len(sec.blocks) == 1 and isinstance(sec.blocks[0], Para)
    return block(sec.blocks[0])


def test_missing_weights_are_said(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_fixture(results, weights=False)
    text = _examples_md(results, tmp_path / "nodata", tmp_path)
    assert "skipped, no saved weights for lenet5_bn in variants/reference/weights/" in text
    no_d2l = d2l_section({}, tmp_path / "elsewhere", tmp_path)
    assert "No d2l exercise records yet" in block(no_d2l.blocks[0])


def test_missing_data_is_said(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_fixture(results)
    text = _examples_md(results, tmp_path / "nodata", tmp_path)
    assert "skipped, the test data could not be loaded (DataError" in text
    assert "`lenet-bench data`" in text


def test_rendering_time_is_reported(rendered_report: Rendered) -> None:
    """Not a benchmark (the CPU is shared), a guard against a pathological slowdown."""
    assert rendered_report.seconds < 120, rendered_report.seconds


def test_superseded_records_do_not_double_a_seed() -> None:
    """Same run under a newer config schema (new run id): only the latest counts."""
    def rec(rid: str, ended: str, device: str = "cpu") -> dict:
        return {"run_id": rid, "suite": "variants", "profile": "quick", "variant": "mlp",
                "dataset": "mnist", "seed": 0, "overrides": {}, "config": {"device": device},
                "env": {"ended": ended}, "status": "ok", "metrics": {"test_acc": 0.9}}

    old, new, gpu = rec("a" * 16, "2026-01-01T00:00:00"), rec("b" * 16, "2026-01-02T00:00:00"), \
        rec("c" * 16, "2026-01-01T00:00:00", "cuda")
    kept, superseded = dedupe([new, old, gpu])
    assert kept == [new, gpu] and superseded == [old]
    labels = sorted(g.label for g in group_records(kept))
    assert labels == ["mlp (cpu)", "mlp (cuda)"]  # devices are never pooled
    # the table `run` prints and summary.md count that seed once too, as the report does
    from report.summary import summary_rows

    old["metrics"], new["metrics"] = {"test_acc": 0.7}, {"test_acc": 0.8}
    rows = {r[0]: r for r in summary_rows([new, old, gpu])}
    assert rows["mlp (cpu)"][2:4] == ["1", "80.00%"]


def test_run_summary_and_leaderboard_agree(rendered_report: Rendered) -> None:
    """summary.md (and the table `run` prints) comes from the report's own grouping and cells,
    so the two never quote different accuracies for the same group of seeds."""
    from bench.records import all_runs_files, latest_by_id, read_records
    from report.leaderboard import row
    from report.summary import summary_rows

    split = split_runsets(load_all(rendered_report.results))
    checked = 0
    for path in all_runs_files(rendered_report.results):
        rs = next(rs for rs in split.sets if (rs.suite, rs.profile) == (
            path.parent.parent.name, path.parent.name))
        leader = {(r[0].text, g.dataset): r for g, r in
                  ((g, row(g)) for g in group_records(split.records(rs), include_d2l=True))}
        for srow in summary_rows(list(latest_by_id(read_records(path)).values())):
            lrow = leader[(srow[0], srow[1])]
            assert (srow[2], srow[3], srow[4], srow[10]) == (
                lrow[1].text, lrow[5].text, lrow[6].text, lrow[4].text)
            checked += 1
    assert checked >= 12


def test_speed_section_shows_latest_perf_record_per_device(rendered_report: Rendered) -> None:
    md = _md(rendered_report)
    speed = section(md, "Speed: the engine against the usual loop")
    assert "### Test CPU (cpu)" in speed and "### Test GPU (cuda)" in speed
    assert "perf-cpu-2026-01-02.json" in speed and "perf-cpu-2026-01-01.json" not in speed
    # the later CPU record: per-round ratios 3.00, 2.91, 2.75 → median 2.91, range 2.75–3.00
    assert "| lenet_d2l | 128 | 3,300 | 9,600 | 2.91× (2.75–3.00) | = | = |" in speed
    # an old-schema record (one float per ratio) still renders, with its levers and note
    assert "20.00×" in speed and "30.00×" in speed and "2,000,000 (K=5)" in speed
    assert "levers: compile=true" in speed and "torch.compile failed (X); ran eagerly" in speed
    # measured at batch 128; lenet_d2l's recipe is batch 256 now: the record is not this tree's
    assert ("⚠ Not all measured by this tree's code and recipes: lenet_d2l: measured at "
            "batch_size 128 (now 256)") in speed
