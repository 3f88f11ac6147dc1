"""`lenet-bench report`: results/report.md and results/report.html from the records alone.

Deterministic: every collection is sorted, the only date shown is the latest record's end,
and figures are byte-stable PNGs, so the same records give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

from bench.fsio import atomic_write
from report.answers import summary_section
from report.appendix import appendix_section
from report.collect import Group, Record, dedupe, group_records, is_d2l, load_all
from report.doc import Block, Figure, Para, Section, text
from report.equal import PUBLISHED_SUITE, equal_terms_section, is_selection
from report.exercises import d2l_questions, d2l_section
from report.figures import FIG_DIR
from report.gallery import figures_section
from report.header import header_section, last_ended
from report.html import to_html
from report.leaderboard import leaderboard_section
from report.markdown import to_markdown
from report.provenance import code_of, stale_sentence
from report.published import published_rows, published_section
from report.reproduce import reproduce_section
from report.runsets import RunSet, split_runsets
from report.significance import significance_section, significance_tests
from report.speed import speed_section

TITLE = "lenet-bench report"


def _variants(records: list[Record]) -> list[tuple[str, str, str]]:
    from variants import get_spec
    from variants.registry import VariantError

    out = []
    for name in sorted({r["variant"] for r in records}):
        try:
            spec = get_spec(name)
            out.append((name, spec.source, spec.description))
        except VariantError:
            out.append((name, "not registered in this checkout", ""))
    return out


def build(records: list[Record], results: Path, out_dir: Path,
          data_root: Path | None) -> tuple[list[Block], list[Section]]:
    """The report's blocks; writes its figures under out_dir/figures/ on the way.

    Every section reads each suite's leading run set only (the appendix the rest), and the
    summary is built from the same objects the sections render.
    """
    records, superseded = dedupe(records)
    split = split_runsets(records)
    # The leaderboards: "as published" (suite variants) first, then the others (equal terms);
    # selection run sets (validation scores, no test numbers) have their own table.
    leads = sorted((rs for rs in split.lead if not is_d2l(rs.suite)
                    and not is_selection(split.records(rs))),
                   key=lambda rs: (rs.suite != PUBLISHED_SUITE, rs.suite))
    main: list[tuple[RunSet, list[Group]]] = [
        (rs, group_records(split.records(rs))) for rs in leads]
    main_groups = [g for _, gs in main for g in gs]
    tests = significance_tests(main)
    pub = published_rows(main_groups)
    d2l = d2l_questions(split.lead, split.sets, results)
    end = last_ended(records)
    t = split.many_devices
    code = code_of(records, data_root)
    intro: list[Block] = [Para(text(
        f"Rendered from the run records under results/ (latest record: {end or 'none'}). "
        "Every number below is computed from those records; nothing is retrained."))]
    stale = stale_sentence(records, code)
    if stale:
        intro.append(Para(text(stale)))
    sections = [
        summary_section(split, tests, pub, d2l),
        leaderboard_section(main, t),
        equal_terms_section(split, main, out_dir),
        published_section(main_groups, pub),
        significance_section(tests, t),
        d2l_section(d2l, results, out_dir, t),
        figures_section(main, results, out_dir, data_root, t),
        speed_section(results, data_root),
        header_section(records, _variants(records), superseded, split, code),
        reproduce_section(records),
        appendix_section(split),
    ]
    return intro, sections


def render_report(results: Path, out_dir: Path | None = None,
                  data_root: Path | None = None) -> tuple[Path, Path]:
    """Render report.md and report.html (figures in out_dir/figures/); returns both paths.

    `out_dir` defaults to `results`; `data_root` (for the test images figure) defaults to
    $LENET_BENCH_DATA or ./data. PNGs in out_dir/figures/ that this render did not write are
    removed, so a figure of a run that no longer exists cannot linger.
    """
    from bench.data import resolve_data_root

    results = Path(results)
    out_dir = Path(out_dir) if out_dir is not None else results
    data_root = Path(data_root) if data_root is not None else resolve_data_root(None)
    fig_dir = out_dir / FIG_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in fig_dir.glob("*.png")}
    intro, sections = build(load_all(results), results, out_dir, data_root)
    used = {b.path.rsplit("/", 1)[-1] for s in sections for b in s.blocks
            if isinstance(b, Figure)}
    for name in sorted(before - used):
        (fig_dir / name).unlink(missing_ok=True)
    md, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write(md, to_markdown(TITLE, intro, sections))
    atomic_write(html_path, to_html(TITLE, intro, sections, out_dir))
    return md, html_path
