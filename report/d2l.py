"""Section 6: the d2l §7.6 exercises, answered from the numbers.

Generic over whatever the exercise suites (`d2l-*`) recorded: each group's levels of its factor
become a plot, a table and an answer generated from Welch + Holm tests of the best level
against each other one. Files that analyses left under `<suite>/<profile>/analysis/` (PNGs,
JSON summaries) are embedded as they are.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from report.collect import Record, is_d2l, overrides_label
from report.doc import Bullets, Cell, Code, Figure, Heading, Section, Strong, Table, cell, text
from report.fmt import acc_pm, ci, level, level_key, num, pp, pval, slug
from report.stats import ALPHA, compare, summarize

MAX_JSON_ROWS = 60


@dataclass
class Level:
    label: str
    order: tuple[Any, ...]
    records: list[Record] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [float(r["metrics"]["test_acc"]) for r in sorted(self.records, key=_seed)
                if r["status"] == "ok" and r["metrics"].get("test_acc") is not None]

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


def _seed(r: Record) -> int:
    return int(r.get("seed", 0))


def _level_of(r: Record) -> tuple[str, tuple[Any, ...]]:
    v = r.get("factor_value")
    if v is None:  # the group varies the variant itself (e.g. d2l vs modern)
        lab = r["variant"] + (" " + overrides_label(r.get("overrides")) if r.get("overrides")
                              else "")
        return lab, (5, lab)
    return level(v), level_key(v)


def levels_by_dataset(records: list[Record]) -> dict[str, list[Level]]:
    out: dict[str, dict[str, Level]] = defaultdict(dict)
    for r in records:
        lab, order = _level_of(r)
        out[r["dataset"]].setdefault(lab, Level(lab, order)).records.append(r)
    return {ds: sorted(lv.values(), key=lambda x: (x.order, x.label))
            for ds, lv in sorted(out.items())}


def answer(factor: str, levels: list[Level]) -> str:
    """The answer the data supports: best level vs each other one, Welch + Holm at α."""
    name = factor.replace("_", " ")
    scored = [lv for lv in levels if lv.values]
    notes = [f"{lv.label}: {lv.count('diverged')} of {len(lv.records)} runs diverged"
             for lv in levels if lv.count("diverged")]
    notes += [f"{lv.label}: {lv.count('failed')} of {len(lv.records)} runs failed"
              for lv in levels if lv.count("failed")]
    tail = ("; ".join(notes) + ".") if notes else ""
    if not scored:
        return f"{name}: no finished runs, no answer. {tail}".strip()
    best = max(scored, key=lambda lv: summarize(lv.values)["mean"])  # ties: the first level
    b = summarize(best.values)
    if len(scored) == 1:
        return f"{name}: only {best.label} has finished runs ({acc_pm(b)}); nothing to " \
               f"compare. {tail}".strip()
    comps = compare(best.values, {lv.label: lv.values for lv in scored if lv is not best})
    means = [summarize(lv.values)["mean"] for lv in scored]
    span = f"the level means span {100 * (max(means) - min(means)):.2f} pp"
    sig = [c for c in comps if c.significant]
    same = [c for c in comps if c.test is not None and not c.significant]
    untested = [c for c in comps if c.test is None]
    head = f"best level {best.label} ({acc_pm(b)})"
    if sig:
        s = (f"{name}: significant effect (Welch, Holm α = {ALPHA}); {head}; significantly "
             "worse: " + ", ".join(f"{c.name} ({pp(c.diff)}, p = {pval(c.p_holm)})"
                                    for c in sig))
        if same:
            s += "; not distinguishable from the best: " + ", ".join(
                f"{c.name} (p = {pval(c.p_holm)})" for c in same)
    elif same:
        low = min(same, key=lambda c: (c.p_holm, c.name))
        s = (f"{name}: no significant effect, p = {pval(low.p_holm)} (smallest Holm-adjusted "
             f"p, {best.label} vs {low.name}); {head}; {span}")
    else:
        s = f"{name}: cannot tell, fewer than 2 finished seeds per level; {head}; {span}"
    if untested and (sig or same):
        s += "; not tested (n < 2 or zero variance): " + ", ".join(c.name for c in untested)
    return f"{s}. {tail}".strip()


def _table(by_ds: dict[str, list[Level]], factor: str) -> Table:
    rows = []
    for ds, levels in by_ds.items():
        scored = [lv for lv in levels if lv.values]
        best = max(scored, key=lambda lv: summarize(lv.values)["mean"]) if scored else None
        comps = ({c.name: c for c in compare(best.values, {lv.label: lv.values for lv in scored
                                                           if lv is not best})} if best else {})
        for pos, lv in enumerate(levels):
            s, c = summarize(lv.values), comps.get(lv.label)
            rows.append((
                Cell(ds), Cell(lv.label, float(pos)), cell(s["n"], str(s["n"])),
                cell(lv.count("diverged"), str(lv.count("diverged"))),
                cell(lv.count("failed"), str(lv.count("failed"))),
                cell(s["mean"], acc_pm(s)), cell(s["ci_low"], ci(s)),
                cell(c.diff if c else None, "best" if lv is best else pp(c.diff if c else None)),
                cell(c.p_holm if c else None, pval(c.p_holm if c else None)),
                cell(c.g if c else None, num(c.g if c else None)),
            ))
    return Table(("dataset", factor, "n", "diverged", "failed", "test acc (mean ± std)",
                  "95% CI", "Δ vs best", "p (Holm) vs best", "Hedges' g"), tuple(rows),
                 (False, False, True, True, True, True, True, True, True, True))


def _all_levels(by_ds: dict[str, list[Level]]) -> list[str]:
    """Every level of any dataset, in the factor's natural order (the plot's x axis)."""
    seen: dict[str, tuple[Any, ...]] = {}
    for levels in by_ds.values():
        for lv in levels:
            seen.setdefault(lv.label, lv.order)
    return sorted(seen, key=lambda lab: (seen[lab], lab))


def _group(sec: Section, suite: str, profile: str, gname: str, recs: list[Record],
           out_dir: Path) -> None:
    from report import figures as F

    first = min(recs, key=lambda r: r["run_id"])
    factor = first.get("factor") or "configuration"
    title = gname if gname == factor else f"{gname} ({factor})"
    sec.add(Heading(4, title, slug(f"d2l-{suite}-{profile}-{gname}")))
    if first.get("question"):
        sec.para(Strong("Question:"), " " + first["question"])
    by_ds = levels_by_dataset(recs)
    rows = [{"dataset": ds, "level": lv.label, "order": i, "acc": v}
            for ds, levels in by_ds.items() for i, lv in enumerate(levels) for v in lv.values]
    notes = {(ds, lv.label): ", ".join(f"{lv.count(s)} {s}" for s in ("diverged", "failed")
                                       if lv.count(s))
             for ds, levels in by_ds.items() for lv in levels
             if lv.count("diverged") or lv.count("failed")}
    if rows:
        with F.style():
            path = F.factor_figure(pd.DataFrame(rows), slug(f"{suite}-{profile}-{gname}"),
                                   f"{suite} {gname}: test accuracy vs {factor}", factor,
                                   out_dir, notes, _all_levels(by_ds))
        sec.add(Figure(path, f"{suite}/{profile}, group {gname}: test accuracy per level of "
                             f"{factor}; grey dots are seeds, bars the 95% t-interval of the "
                             "mean.", f"test accuracy vs {factor}"))
    sec.add(_table(by_ds, factor))
    for ds, levels in by_ds.items():
        sec.para(Strong(f"Answer ({ds}):"), " " + answer(factor, levels))


SKIP_KEYS = ("inputs", "figures", "answer")  # provenance, file lists, answers (shown apart)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """JSON → (dotted key, short value) rows; per-run lists collapse to a count."""
    if isinstance(obj, dict):
        return [kv for k in sorted(obj, key=str) if str(k) not in SKIP_KEYS for kv in
                _flatten(obj[k], f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        return [(prefix, f"{len(obj)} entries (details in the file)")]
    if isinstance(obj, float):
        return [(prefix, f"{obj:.4g}")]
    if isinstance(obj, list):
        shown = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in obj[:12])
        return [(prefix, f"[{shown}{', …' if len(obj) > 12 else ''}]")]
    return [(prefix, str(obj))]


def _summary_json(sec: Section, p: Path, rel: str) -> None:
    try:
        data = json.loads(p.read_text())
    except (ValueError, OSError) as e:
        sec.para(f"{rel}: could not be read ({type(e).__name__}).")
        return
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        sec.para(Strong("Answer (from the analysis):"), " " + data["answer"])
    kv = _flatten(data)
    shown = tuple((Cell(k), Cell(v)) for k, v in kv[:MAX_JSON_ROWS])
    more = f"; {len(kv) - MAX_JSON_ROWS} more entries in the file" \
        if len(kv) > MAX_JSON_ROWS else ""
    if shown:
        sec.add(Table(("key", "value"), shown, caption=f"{rel}{more}"))


def _listed_figures(files: list[Path]) -> list[str]:
    """The order an analysis gave its figures in (a "figures" list in its JSON), if any."""
    for p in files:
        if p.suffix.lower() == ".json":
            try:
                figs = json.loads(p.read_text()).get("figures")
            except (ValueError, OSError, AttributeError):
                continue
            if isinstance(figs, list):
                return [str(f) for f in figs]
    return []


def _file_order(p: Path, adir: Path, listed: list[str]) -> tuple[int, int, str]:
    """JSON summaries first, then figures in the analysis's own order, then the rest."""
    rel = p.relative_to(adir).as_posix()
    if p.suffix.lower() == ".json":
        return (0, 0, rel)
    return (1, listed.index(rel) if rel in listed else len(listed), rel)


def _analysis(sec: Section, suite: str, profile: str, adir: Path, out_dir: Path) -> None:
    files = sorted((p for p in adir.rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(adir).as_posix())
    if not files:
        return
    sec.add(Heading(4, f"Analysis files ({suite}/{profile}/analysis)",
                    slug(f"analysis-{suite}-{profile}")))
    others = []
    listed = _listed_figures(files)
    for p in sorted(files, key=lambda f: _file_order(f, adir, listed)):
        name_in = p.relative_to(adir).as_posix()
        rel = f"{suite}/{profile}/analysis/{name_in}"
        if p.suffix.lower() == ".png":
            name = f"{slug(f'{suite}-{profile}-analysis')}-{slug(name_in[:-4])}.png"
            dest = out_dir / "figures" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if p.resolve() != dest.resolve():
                shutil.copyfile(p, dest)
            sec.add(Figure(f"figures/{name}", rel, f"{suite} analysis: {name_in}"))
        elif p.suffix.lower() == ".json":
            _summary_json(sec, p, rel)
        elif not p.name.startswith(".") and p.suffix not in (".tmp", ".lock"):
            others.append(text(Code(rel)))
    if others:
        sec.para("Other analysis files:")
        sec.add(Bullets(tuple(others)))


def memberships(r: Record) -> list[Record]:
    """The record once per group it answers: a shared baseline (kernel 5 = lr 0.1 = …) is
    trained once but is a level of several groups, each with its own factor value."""
    keys = ("group", "question", "factor", "factor_value")
    ms = r.get("memberships") or [{k: r.get(k) for k in keys}]
    return [{**r, **{k: m.get(k) for k in keys}} for m in ms]


def d2l_section(records: list[Record], results: Path, out_dir: Path) -> Section:
    sec = Section("d2l exercises", "d2l")
    sets: dict[tuple[str, str], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if is_d2l(r["suite"]):
            for m in memberships(r):
                sets[(r["suite"], r["profile"])][m["group"] or "default"].append(m)
    adirs = {(p.parent.parent.name, p.parent.name): p
             for p in sorted(results.glob("*/*/analysis")) if p.is_dir()}
    keys = sorted(set(sets) | set(adirs))
    if not keys:
        sec.para("No d2l exercise records yet (suites ", Code("d2l-ex1"), " … ", Code("d2l-ex5"),
                 "): nothing to answer.")
        return sec
    sec.para("For each exercise group: the question, test accuracy against the factor it "
             "varies, and an answer generated from the numbers: the best level against each "
             "other level with Welch's t-test, Holm-corrected, at α = 0.05 (the best level is "
             "picked after seeing the data, so read borderline p-values with care). Hedges' g "
             "is the effect size; Δ = level − best.")
    for suite, profile in keys:
        sec.add(Heading(3, f"{suite} ({profile})", slug(f"d2l-{suite}-{profile}")))
        for gname, recs in sorted(sets.get((suite, profile), {}).items()):
            _group(sec, suite, profile, gname, recs, out_dir)
        if (suite, profile) in adirs:
            _analysis(sec, suite, profile, adirs[(suite, profile)], out_dir)
    return sec
