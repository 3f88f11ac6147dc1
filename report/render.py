"""`lenet-bench report`: results/report.md and results/report.html from the records alone.

Deterministic: every collection is sorted, the only date shown is the latest record's end,
and figures are byte-stable PNGs, so the same records give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

from bench.fsio import atomic_write
from report.collect import Group, Record, dedupe, group_records, load_all
from report.d2l import d2l_section
from report.doc import Block, Figure, Para, Section, text
from report.figures import FIG_DIR
from report.gallery import figures_section
from report.header import header_section, last_ended
from report.html import to_html
from report.leaderboard import leaderboard_section
from report.markdown import to_markdown
from report.published import published_section
from report.reproduce import reproduce_section
from report.significance import significance_section
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
    """The report's blocks; writes its figures under out_dir/figures/ on the way."""
    records, superseded = dedupe(records)
    groups: list[Group] = group_records(records)
    end = last_ended(records)
    intro: list[Block] = [Para(text(
        f"Rendered from the run records under results/ (latest record: {end or 'none'}). "
        "Every number below is computed from those records; nothing is retrained."))]
    sections = [
        header_section(records, _variants(records), superseded),
        leaderboard_section(groups),
        published_section(groups),
        significance_section(groups),
        speed_section(results),
        figures_section(groups, results, out_dir, data_root),
        d2l_section(records, results, out_dir),
        reproduce_section(records),
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
