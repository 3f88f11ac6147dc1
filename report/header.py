"""Section: what ran, on what, when, and how much compute it took; which run sets lead."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from bench import device as dev
from report.collect import Record
from report.doc import Bullets, Cell, Code, Heading, Section, Table, Text, cell, text
from report.fmt import DASH, duration
from report.provenance import THIS, UNCHECKED
from report.runsets import RunSet, Split, profile_rank, runset_of


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 4] → '0–2, 4'."""
    vals = sorted(set(values))
    out, start = [], None
    for i, v in enumerate(vals):
        start = v if start is None else start
        if i + 1 == len(vals) or vals[i + 1] != v + 1:
            out.append(str(v) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(out) or DASH


def run_seconds(r: Record) -> float | None:
    """A run's wall time: the engine's clock, else (failed runs) ended − started."""
    w = (r.get("timing") or {}).get("wall_seconds")
    if w is not None:
        return float(w)
    env = r.get("env") or {}
    try:
        return (datetime.fromisoformat(env["ended"])
                - datetime.fromisoformat(env["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def last_ended(records: list[Record]) -> str | None:
    ends = [r.get("env", {}).get("ended") for r in records]
    return max((e for e in ends if e), default=None)


def _runsets_table(records: list[Record], split: Split | None,
                   code: dict[int, str] | None) -> Table:
    sets: dict[RunSet, list[Record]] = defaultdict(list)
    for r in records:
        sets[runset_of(r)].append(r)
    lead = set(split.lead) if split else set(sets)
    rows = []
    for rs, recs in sorted(sets.items(), key=lambda kv: (kv[0].suite, profile_rank(
            kv[0].profile), kv[0].device)):
        st = Counter(r["status"] for r in recs)
        epochs = sorted({r["config"]["num_epochs"] for r in recs
                         if r["config"].get("num_epochs") is not None})
        rows.append((
            Cell(rs.suite), Cell(rs.profile), Cell(rs.device),
            Cell("main" if rs in lead else "appendix"),
            cell(len(recs), str(len(recs))),
            cell(st["ok"], str(st["ok"])), cell(st["diverged"], str(st["diverged"])),
            cell(st["failed"], str(st["failed"])),
            Cell(", ".join(sorted({r["variant"] for r in recs}))),
            Cell(", ".join(sorted({r["dataset"] for r in recs}))),
            Cell(_ranges([r["seed"] for r in recs])),
            Cell(", ".join(str(e) for e in epochs) or DASH),
            Cell(_code_cell([code.get(id(r), UNCHECKED) for r in recs]) if code else DASH),
        ))
    return Table(("suite", "profile", "device", "shown in", "runs", "ok", "diverged", "failed",
                  "variants", "datasets", "seeds", "epochs", "made by this code"), tuple(rows),
                 numeric=(False, False, False, False, True, True, True, True))


def _code_cell(kinds: list[str]) -> str:
    """'18 of 18', or '12 of 18 (6 other code ⚠)'."""
    c = Counter(kinds)
    rest = [f"{n} {k}" for k, n in sorted(c.items()) if k != THIS]
    return f"{c[THIS]} of {len(kinds)}" + (f" ({', '.join(rest)} ⚠)" if rest else "")


def _distinct(records: list[Record], key: str) -> str:
    """The values of an env field ('' when no run has it), with run counts when they differ."""
    c = Counter(str(r["env"][key]) for r in records
                if r.get("env") and r["env"].get(key) is not None)
    return "; ".join(f"{k} ({n} runs)" if len(c) > 1 else k for k, n in sorted(c.items()))


def _machine(records: list[Record]) -> list[Text]:
    devs = Counter((r["env"].get("device_name", "?"), r["env"].get("device", "?"))
                   for r in records if r.get("env"))
    items: list[Text] = [text("device: " + "; ".join(
        f"{name} ({kind}, {n} runs)" for (name, kind), n in sorted(devs.items())))]
    cpus = _distinct(records, "cpu")
    if cpus:
        items.append(text(f"CPU: {cpus}; threads: {_distinct(records, 'threads')}"))
    keys = ("python", "torch", "torchvision", *dev.VERSION_KEYS)
    sw = [f"{k} {_distinct(records, k)}" for k in keys if _distinct(records, k)]
    items.append(text("software: " + ", ".join(sw)))
    commits = Counter((r["env"].get("git_commit") or "unknown", r["env"].get("git_dirty"))
                      for r in records if r.get("env"))
    parts: list = ["git commit: "]
    for i, ((commit, dirty), n) in enumerate(sorted(commits.items(), key=str)):
        parts += ([", "] if i else []) + [Code(commit[:12])]
        parts.append(f" ({n} runs{', uncommitted changes' if dirty else ''})")
    items.append(tuple(parts))
    return items


def header_section(records: list[Record], variants: list[tuple[str, str, str]],
                   superseded: list[Record] | None = None, split: Split | None = None,
                   code: dict[int, str] | None = None) -> Section:
    """`variants`: (name, source, description) of every variant that has records;
    `superseded`: older records of the same run (left out, but said); `split`: which run sets
    lead and which are in the appendix."""
    sec = Section("What ran", "what-ran")
    if not records:
        sec.para("No records found: run ", Code("lenet-bench run --suite variants"), " first.")
        return sec
    starts = [r["env"]["started"] for r in records if r.get("env", {}).get("started")]
    secs = [s for s in map(run_seconds, records) if s is not None]
    sets = len({runset_of(r) for r in records})
    sec.para(f"{len(records)} runs in {sets} run set{'s' if sets > 1 else ''} (suite × profile "
             "× device); each suite's most complete one leads, the others are in the appendix:")
    sec.add(_runsets_table(records, split, code))
    when = f"{min(starts) if starts else DASH} → {last_ended(records) or DASH} (UTC)"
    items = tuple(_machine(records)) + (
        text(f"when: {when}"),
        text(f"total compute: {duration(sum(secs))} (sum of the runs' wall times, "
             f"{len(secs)} runs, data loading and evaluation included)"),
    )
    if superseded:
        items += (text(f"{len(superseded)} older records of the same runs (same suite, "
                       "profile, variant, dataset, overrides, device and seed, but an older "
                       "config schema or an earlier attempt) are superseded by the latest and "
                       "left out of everything below"),)
    sec.add(Bullets(items))
    sec.para("Over seeds, ", Code("a ± b"), " is the mean ± the sample standard deviation; "
             "95% CI is the Student-t confidence interval of the mean, given only from 3 seeds "
             "on and clipped to [0, 100]%. Accuracies and errors are on the test set; pp = "
             "percentage points.")
    sec.add(Heading(3, "Variants", "variants"))
    sec.add(Bullets(tuple(text(Code(n), f" — {src}. {desc}") for n, src, desc in variants)))
    return sec
