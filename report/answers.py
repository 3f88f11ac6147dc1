"""The report's opening: the answers, in a few lines, before any detail.

Every line is built from the very objects the sections below render (the significance tests,
the published-figure verdicts, the d2l questions), never recomputed, so the summary cannot say
anything the tables do not.
"""

from __future__ import annotations

from report.collect import Group
from report.d2l_answers import Question
from report.doc import Bullets, Code, Heading, Section, Text, text
from report.fmt import acc_cell, pct, pp, pp_interval, pval
from report.published import NOT_COMPARABLE, NOT_REPRODUCED, REPRODUCED, PubRow
from report.runsets import RunSet, Split
from report.significance import DatasetTest, p_better_text
from report.stats import MIN_SEEDS


def acc_of(g: Group) -> str:
    return acc_cell(g.accuracy(), g.values(), MIN_SEEDS)


def best_line(dt: DatasetTest) -> Text:
    """The dataset's best variant, its margin over the runner-up and how sure that is."""
    head = f"{dt.dataset} ({dt.runset.name}): "
    if dt.best is None:
        return text(head + "no variant has a finished run that trained.")
    best, runner = dt.best, dt.runner_up
    s = f"highest mean test accuracy {acc_of(best)}"
    if runner is None:
        return text(head, Code(best.label), f", {s}; no other variant to compare with.")
    margin = best.mean_acc() - runner.mean_acc()
    if margin < 0:  # seeds added after the first look moved the means; the comparisons stay
        s = (f"highest mean test accuracy over the first look's seeds (0–4), where the "
             f"comparisons are fixed; over all its seeds {acc_of(best)}, {-100 * margin:.2f} pp "
             "below ")
    else:
        s += f", {pp(margin)} over "
    tail = f" ({acc_of(runner)}); "
    c = dt.comparison(runner)
    if dt.short:
        g, why = dt.short[0]
        more = len(dt.short) - 1
        eg = f"{g.label} {why}" + (f", and {more} more variant{'s' if more > 1 else ''}"
                                   if more else "")
        tail += (f"not tested: the budgets were cut short ({eg}), so this lead measures early "
                 "training speed, not which network is better.")
    elif dt.absent:
        tail += f"not tested: {dt.absent}."
    elif runner.label not in dt.decisions:
        tail += "no verdict."
    else:
        d = dt.decisions[runner.label]
        v = d.verdict
        what = f"{d.words} than the best" if v.outcome in ("better", "worse") else d.words
        iv = (f", interval {pp_interval(v.lo, v.hi)} at {v.n} seeds"
              if v.lo is not None else "")
        pb = f", P(runner-up > best) {p_better_text(d)}" if d.p_better else ""
        welch = (f"; Welch, Holm p = {pval(c.p_holm)}" if c is not None and c.test is not None
                 else "")
        delta = v.delta if v.delta is not None else (c.diff if c is not None else None)
        tail += (f"the runner-up is {what} (Δ {pp(delta)}{iv}{pb}; sequential rule{welch}; "
                 "see Significance).")
    return text(head, Code(best.label), ", " + s, Code(runner.label), tail)


def published_lines(rows: list[PubRow]) -> tuple[str, list[Text]]:
    """The count of reproduced figures and one line per figure that was not, with why."""
    done = [r for r in rows if r.status == REPRODUCED]
    head = (f"{len(done)} of {len(rows)} published figures reproduced (inside our 95% "
            "prediction interval for one new run)")
    if done:
        head += ": " + ", ".join(r.group.label for r in done)
    lines = []
    for r in rows:
        if r.status == REPRODUCED:
            continue
        what = "error" if r.is_error else "accuracy"
        s = f" ({r.group.dataset}, published {what} {pct(r.published)}, ours {pct(r.mean)}): "
        s += r.verdict
        if r.status in (NOT_REPRODUCED, NOT_COMPARABLE) and r.why:
            s += "; " + "; ".join(r.why)
        lines.append(text(Code(r.group.label), s + "."))
    return head + ".", lines


def level_line(q: Question) -> Text:
    """A d2l group's per-level published figures: how many reproduced, why the others not."""
    done = [p.level for p in q.published if p.status == REPRODUCED]
    others = sorted({p.verdict for p in q.published if p.status != REPRODUCED})
    s = (f" {q.group} ({q.dataset}): {len(done)} of {len(q.published)} figures of {q.source} "
         "reproduced" + (f" ({', '.join(done)})" if done else ""))
    return text(Code(q.suite), s + ("; others: " + "; ".join(others) if others else "") + ".")


def d2l_line(q: Question, several_datasets: bool) -> Text:
    where = f" ({q.dataset})" if several_datasets else ""
    return text(Code(q.suite), where + " " + q.answer)


def summary_section(split: Split, tests: list[DatasetTest], pub: list[PubRow],
                    d2l: dict[RunSet, list[Question]]) -> Section:
    sec = Section("Summary", "summary")
    t = split.many_devices
    main = ", ".join(f"{rs.title(t)} ({len(split.records(rs))} runs)" for rs in split.lead)
    n = len(split.others)
    others = (f"; {n} other run set{'s' if n != 1 else ''} (less complete profiles or other "
              f"devices) {'are' if n != 1 else 'is'} in the appendix, never mixed with these"
              if n else "")
    sec.para(f"The answers, from the tables below and nothing else. Main run sets: {main or '–'}"
             f"{others}.")
    if tests:
        sec.add(Heading(3, "Best variant per dataset", "summary-best"))
        sec.add(Bullets(tuple(best_line(dt) for dt in tests)))
    qs = [q for rs in sorted(d2l) for q in d2l[rs]]
    level_pubs = [level_line(q) for q in qs if q.published]
    if pub or level_pubs:
        sec.add(Heading(3, "Published figures", "summary-published"))
    if pub:
        head, lines = published_lines(pub)
        sec.para(head)
        if lines:
            sec.add(Bullets(tuple(lines)))
    if level_pubs:
        sec.para("Per-level figures of the d2l exercises' sources:")
        sec.add(Bullets(tuple(level_pubs)))
    if qs:
        sec.add(Heading(3, "d2l questions", "summary-d2l"))
        multi = {(q.suite, q.group) for q in qs if sum((p.suite, p.group) == (q.suite, q.group)
                                                      for p in qs) > 1}
        sec.add(Bullets(tuple(d2l_line(q, (q.suite, q.group) in multi) for q in qs)))
    if not (tests or pub or qs):
        sec.para("No records yet: nothing to answer.")
    return sec
