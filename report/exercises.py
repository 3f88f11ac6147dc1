"""Section: the d2l §7.6 exercises, one verdict per question, from the numbers.

Each group of a `d2l-*` suite's leading run set becomes a plot, a table and one answer: the
paired per-seed comparison of every level with the group's reference level (report.d2l_answers).
Questions about activations rather than accuracy (ex4, ex5) are answered by their analysis.
Files that analyses left under `<suite>/<profile>/analysis/` (PNGs, JSON summaries) are
embedded as they are; their own ablation and epochs answers are not repeated, so each question
has one verdict.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import pandas as pd

from report.budget import budget_of
from report.collect import Record
from report.d2l_answers import Level, Question, analysis_answer, judge_published, questions
from report.decisions import RULE
from report.doc import Bullets, Cell, Code, Figure, Heading, Section, Strong, Table, cell, text
from report.fmt import TOO_FEW, acc_cell, interval, pct, pp, pp_interval, pval, slug
from report.runsets import RunSet
from report.significance import p_better_text
from report.stats import MIN_SEEDS, confidence, summarize

MAX_JSON_ROWS = 60
#: Analysis kinds whose question is about accuracy: the paired verdict answers them.
ACCURACY_KINDS = ("ablation", "epochs")


def _read_summary(adir: Path | None) -> dict[str, Any] | None:
    p = adir / "summary.json" if adir else None
    if p is None or not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def suite_groups(suite: str) -> dict[str, Any]:
    """The suite definition's groups by name ({} for a suite this tree no longer has)."""
    from bench.suites import load_suite

    try:
        return {g.name: g for g in load_suite(suite).groups}
    except Exception:  # noqa: BLE001 — a missing or changed suite must not stop the report
        return {}


def group_kinds(suite: str, summary: dict[str, Any] | None) -> dict[str, str]:
    """Group → its analysis kind: from the suite definition, else from the summary.json."""
    defined = suite_groups(suite)
    if defined:
        return {name: g.extra.get("analysis") or "" for name, g in defined.items()}
    out: dict[str, str] = {}
    for g in (summary or {}).get("ablation", {}).get("groups", []) or []:
        if isinstance(g, dict) and g.get("group"):
            out[str(g["group"])] = "ablation"
    for kind in ("epochs", "activations", "ood"):
        for g in (summary or {}).get(kind, {}).get("groups", []) or []:
            out[str(g)] = kind
    return out


def suite_questions(rs: RunSet, records: list[Record], adir: Path | None) -> list[Question]:
    """The run set's questions, each judged once; analysis questions take their answer from
    the analysis summary."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        for m in memberships(r):
            groups[m["group"] or "default"].append(m)
    summary = _read_summary(adir)
    kinds = group_kinds(rs.suite, summary)
    qs = questions(rs.suite, rs.profile, dict(groups))
    defined = suite_groups(rs.suite)
    for q in qs:
        table = getattr(defined.get(q.group), "published", None)
        if isinstance(table, dict):
            judge_published(q, table)
        kind = kinds.get(q.group, "")
        if kind and kind not in ACCURACY_KINDS:
            q.comparisons, q.reference = [], None  # the accuracies are context here
            q.answer = f"{q.group}: " + (analysis_answer(kind, summary) if summary else
                                        "its analysis has not been written yet") + "."
    return qs


def paired_verdict(q: Question, lv: Level) -> tuple[Cell, Cell, Cell, Cell, Cell]:
    """Δ vs the reference, its interval, P(level > reference), Holm p and the verdict (the
    sequential rule's; for the epochs group, the plateau's test of that epoch)."""
    dash = Cell("–")
    if q.plateau is not None:
        return _plateau_cells(q, lv)
    if lv is q.reference:
        return Cell("reference"), dash, dash, dash, Cell("reference")
    if lv.by_seed and not lv.trained:
        return dash, dash, dash, dash, Cell("did not train")
    c = q.comparison(lv)
    if c is None or c.decision is None:
        return dash, dash, dash, dash, Cell(c.verdict() if c else "–")
    v, pb = c.decision.verdict, c.decision.p_better
    delta = v.delta if v.delta is not None else c.test.mean  # before the first look: all seeds
    return (cell(delta, pp(delta)),
            cell(v.lo, pp_interval(v.lo, v.hi) if v.lo is not None else "–"),
            cell(pb[0] if pb else None, p_better_text(c.decision)),
            cell(c.p_holm, pval(c.p_holm)), Cell(c.verdict()))


def _plateau_cells(q: Question, lv: Level) -> tuple[Cell, Cell, Cell, Cell, Cell]:
    """An epoch of the plateau test: Δ to the best later epoch and its TOST interval."""
    assert q.plateau is not None
    dash = Cell("–")
    m = f"±{100 * q.plateau.margin:.2f} pp"
    for epoch, ref, delta, lo, hi, ok in q.plateau.tested:
        if str(epoch) != lv.label:
            continue
        words = (f"equivalent within {m}" if ok else "worse" if hi < 0 else "better" if lo > 0
                 else f"undecided after {q.plateau.n_seeds} seeds")
        return (cell(delta, pp(delta) + f" vs epoch {ref}"), cell(lo, pp_interval(lo, hi)),
                dash, dash, Cell(words))
    if lv.label == str(q.plateau.epoch) or not lv.label.isdigit():
        return dash, dash, dash, dash, Cell("–")
    if not q.plateau.tested:  # fewer seeds than the first look: nothing tested yet
        return dash, dash, dash, dash, Cell(f"undecided after {q.plateau.n_seeds} seeds")
    return dash, dash, dash, dash, Cell("not tested: below the first epoch that failed")


def _table(qs: list[Question]) -> Table:
    rows = []
    for q in qs:
        for pos, lv in enumerate(q.levels):
            s = summarize(lv.values)
            dead = bool(lv.values) and not lv.trained
            iv = None if dead else confidence(lv.values)
            acc = acc_cell(s, lv.values, MIN_SEEDS)
            rows.append((
                Cell(q.dataset), Cell(lv.label, float(pos)), cell(s["n"], str(s["n"])),
                cell(lv.count("diverged"), str(lv.count("diverged"))),
                cell(lv.count("failed"), str(lv.count("failed"))),
                cell(len(lv.untrained), str(len(lv.untrained))),
                cell(s["mean"], f"did not train ({acc})" if dead else acc),
                cell(iv[0] if iv else None, interval(iv) if iv else
                     (TOO_FEW if lv.values and not dead else "–")),
                *paired_verdict(q, lv),
            ))
    factor = qs[0].factor if qs else "level"
    return Table(("dataset", factor, "n", "diverged", "failed", "did not train", "test acc",
                  "95% CI", "Δ vs reference (paired)", "interval of Δ (sequential)",
                  "P(level > reference) [95% CI]", "p (Holm, paired t)",
                  "verdict (sequential rule)"), tuple(rows),
                 (False, False, True, True, True, True, True, True, True, True, True, True,
                  False))


def _all_levels(qs: list[Question]) -> list[str]:
    """Every level of any dataset, in the factor's natural order (the plot's x axis)."""
    seen: dict[str, tuple[Any, ...]] = {}
    for q in qs:
        for lv in q.levels:
            seen.setdefault(lv.label, lv.order)
    return sorted(seen, key=lambda lab: (seen[lab], lab))


def _notes(qs: list[Question]) -> dict[tuple[str, str], str]:
    out = {}
    for q in qs:
        for lv in q.levels:
            parts = [f"{lv.count(s)} {s}" for s in ("diverged", "failed") if lv.count(s)]
            if lv.untrained:
                parts.append("did not train" if not lv.trained
                             else f"{len(lv.untrained)} did not train")
            if parts:
                out[(q.dataset, lv.label)] = ", ".join(parts)
    return out


def _group(sec: Section, rs: RunSet, qs: list[Question], out_dir: Path) -> None:
    from report import figures as F

    q0 = qs[0]
    title = q0.group if q0.group == q0.factor else f"{q0.group} ({q0.factor})"
    sec.add(Heading(4, title, slug(f"d2l-{rs.suite}-{rs.profile}-{q0.group}")))
    if q0.question:
        sec.para(Strong("Question:"), " " + q0.question)
    rows = [{"dataset": q.dataset, "level": lv.label, "order": i, "acc": v}
            for q in qs for i, lv in enumerate(q.levels) for v in lv.values]
    if rows:
        with F.style():
            path = F.factor_figure(pd.DataFrame(rows), slug(f"{rs.suite}-{rs.profile}-{q0.group}"),
                                   f"{rs.suite} {q0.group}: test accuracy vs {q0.factor}",
                                   q0.factor, out_dir, _notes(qs), _all_levels(qs))
        sec.add(Figure(path, f"{rs.name}, group {q0.group}: test accuracy per level of "
                             f"{q0.factor}; grey dots are seeds, bars the 95% t-interval of the "
                             f"mean (only from {MIN_SEEDS} seeds on, clipped to [0, 100]%).",
                       f"test accuracy vs {q0.factor}"))
    sec.add(_table(qs))
    pubs = [(q, p) for q in qs for p in q.published]
    if pubs:
        sec.para(f"Published by {pubs[0][0].source}, per level: each figure against the 95% "
                 "prediction interval for one new run of ours (only from "
                 f"{MIN_SEEDS} seeds on, clipped to [0, 100]%), unless our budget was shorter.")
        sec.add(Table(("dataset", q0.factor, "published", "ours", "95% prediction interval",
                       "verdict"), tuple(
            (Cell(q.dataset), Cell(p.level), cell(p.published, pct(p.published)),
             cell(summarize(list(p.values))["mean"],
                  acc_cell(summarize(list(p.values)), list(p.values), MIN_SEEDS)),
             cell(p.pi[0] if p.pi else None, interval(p.pi) if p.pi else "–"),
             Cell(p.verdict)) for q, p in pubs),
            (False, False, True, True, True, False)))
    for q in qs:
        if q.reference is not None and (q.comparisons or q.plateau is not None):
            sec.para(f"Reference ({q.dataset}): {q.reference.label}, {q.reference_why}.")
        sec.para(Strong(f"Answer ({q.dataset}):"), " " + q.answer)


# provenance, file lists, the analyses' answers (each question has its one answer above), and
# their unclipped intervals of any n (the report's tables carry the intervals it stands by)
SKIP_KEYS = ("inputs", "figures", "answer", "ci95", "ci_low", "ci_high")


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
    # a key a membership lacks reads as None (the callers fall back), not as the schema's str
    return [cast(Record, {**r, **{k: m.get(k) for k in keys}}) for m in ms]


def d2l_section(qs: dict[RunSet, list[Question]], results: Path, out_dir: Path,
                many_devices: bool = False) -> Section:
    """`qs`: the questions of each d2l suite's leading run set (d2l_questions)."""
    sec = Section("d2l exercises", "d2l")
    # analyses of a d2l suite that has no records here at all (never of a non-leading profile)
    orphans = sorted((p.parent.parent.name, p.parent.name)
                     for p in results.glob("d2l*/*/analysis") if p.is_dir()
                     and p.parent.parent.name not in {rs.suite for rs in qs})
    if not qs and not orphans:
        sec.para("No d2l exercise records yet (suites ", Code("d2l-ex1"), " … ", Code("d2l-ex5"),
                 "): nothing to answer.")
        return sec
    sec.para(
        "For each exercise group of each suite's leading run set: the question, test accuracy "
        "against the factor it varies, and one answer generated from the numbers. Every level "
        "trains with the same seeds (a seed fixes the initialization draw and the data order), "
        "so each level is compared with the group's reference level seed by seed: Δ is the "
        "mean of the per-seed differences (level − reference), with the paired t-test's 95% "
        f"interval and p-value, Holm-corrected over the family of that group's comparisons "
        f"with its reference on that dataset. The verdict is the {RULE}. It is one of four: "
        "better, worse, equivalent within ±m, or undecided after n seeds; its interval is the "
        "one of the look it stopped at, and P(level > reference) is the chance that a new seed "
        "of the level beats a new seed of the reference (95% stratified bootstrap CI). The "
        "epochs group is answered as a plateau: the fewest epochs whose accuracy is "
        "equivalent (paired TOST, its interval inside ±m) to the best of the longer runs' "
        "epochs, testing from the last epoch down and stopping at the first that fails, at the "
        "same looks (α/3 each, so seeds may be added to the longest runs until it decides). "
        "The reference is the baseline level (the variant's unchanged recipe), for "
        "the epochs group the longest training. Below "
        f"{MIN_SEEDS} common seeds nothing is tested: each seed's value is shown instead. A "
        "level whose every run predicts one class (at least 95% of the test images) did not "
        "train: its accuracy is that class's share of the test set, so it is neither ranked "
        "nor tested.")
    for rs, questions_ in sorted(qs.items()):
        sec.add(Heading(3, rs.title(many_devices), slug(f"d2l-{rs.suite}-{rs.profile}")))
        by_group: dict[str, list[Question]] = defaultdict(list)
        for q in questions_:
            by_group[q.group].append(q)
        for _, group_qs in sorted(by_group.items()):
            _group(sec, rs, group_qs, out_dir)
        sec.para(f"Budget of these runs: {_budgets(records_of(questions_))} (each group compares "
                 "its levels at one budget).")
        adir = analysis_dir(results, rs)
        if adir is not None:
            _analysis(sec, rs.suite, rs.profile, adir, out_dir)
    for suite, profile in orphans:
        sec.add(Heading(3, f"{suite}/{profile}", slug(f"d2l-{suite}-{profile}")))
        sec.para("No records of this suite here; its analysis files:")
        _analysis(sec, suite, profile, results / suite / profile / "analysis", out_dir)
    return sec


def records_of(qs: list[Question]) -> list[Record]:
    seen: dict[str, Record] = {}
    for q in qs:
        for lv in q.levels:
            for r in lv.records:
                seen.setdefault(r["run_id"], r)
    return [seen[k] for k in sorted(seen)]


def _budgets(records: list[Record]) -> str:
    """What the run set's runs trained, against their variant's recipe (d2l profiles cut it)."""
    seen: dict[str, int] = {}
    for r in records:
        b = budget_of(r)
        seen[b.shortfall() or f"the full recipe ({b.epochs} epochs on all "
                                 f"{b.full_train:,} training images)"] = 1
    return "; ".join(sorted(seen)) or "–"


def analysis_dir(results: Path, rs: RunSet) -> Path | None:
    p = results / rs.suite / rs.profile / "analysis"
    return p if p.is_dir() else None


def d2l_questions(lead: list[RunSet], records: dict[RunSet, list[Record]],
                  results: Path) -> dict[RunSet, list[Question]]:
    """The questions of every d2l suite's leading run set, judged."""
    from report.collect import is_d2l

    return {rs: suite_questions(rs, records[rs], analysis_dir(results, rs))
            for rs in lead if is_d2l(rs.suite)}
