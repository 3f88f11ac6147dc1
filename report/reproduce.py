"""Section 7: the exact commands that regenerate every number of this report.

A command is only printed as exact after checking it: the suite is expanded with the same
options and device, and its planned run ids must equal the recorded ones.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Iterator
from typing import TypedDict

from report.collect import Record
from report.doc import CodeBlock, Section


class _Options(TypedDict):
    """The `lenet-bench run` options a candidate command sets (None: left at the default)."""

    variants: str | None
    datasets: list[str] | None
    seeds: int | None


def _plan_ids(suite: str, profile: str, device: str, opts: _Options) -> set[str] | None:
    from bench.errors import UsageError
    from bench.suites import expand, get_profile, load_suite

    try:
        plan = expand(load_suite(suite), get_profile(profile), device=device,
                      variants=opts.get("variants"), datasets=opts.get("datasets"),
                      seeds=opts.get("seeds"))
    except (UsageError, ValueError, TypeError, KeyError):
        return None
    return {r.run_id for r in plan}


def _candidates(recs: list[Record]) -> Iterator[_Options]:
    variants = ",".join(sorted({r["variant"] for r in recs}))
    datasets = sorted({r["dataset"] for r in recs})
    seeds = max(r["seed"] for r in recs) + 1
    for v in (None, variants):
        for d in (None, datasets):
            for s in (None, seeds):
                yield {"variants": v, "datasets": d, "seeds": s}


def run_command(suite: str, profile: str, recs: list[Record]) -> tuple[str, bool]:
    """The `lenet-bench run` line for these records, and whether it was verified exact."""
    device = recs[0]["config"].get("device", "cpu") if recs[0].get("config") else "cpu"
    ids = {r["run_id"] for r in recs}
    base = ["lenet-bench", "run", "--suite", suite, "--profile", profile, "--device", device]
    for opts in _candidates(recs):
        if _plan_ids(suite, profile, device, opts) == ids:
            args = list(base)
            if opts["variants"]:
                args += ["--variants", str(opts["variants"])]
            if opts["datasets"]:
                args += ["--datasets", *opts["datasets"]]
            if opts["seeds"]:
                args += ["--seeds", str(opts["seeds"])]
            return shlex.join(args), True
    return shlex.join(base), False


def reproduce_section(records: list[Record]) -> Section:
    sec = Section("Reproduce", "reproduce")
    if not records:
        sec.para("No records: nothing to reproduce.")
        return sec
    sets: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        sets[(r["suite"], r["profile"])].append(r)
    commits = sorted({r.get("env", {}).get("git_commit") or "" for r in records} - {""})
    lines = []
    if len(commits) == 1:
        lines.append(f"git checkout {commits[0]}")
    lines += ["make setup  # .venv from pyproject.toml", "lenet-bench data  # fetch and verify"]
    unverified = []
    for (suite, profile), recs in sorted(sets.items()):
        cmd, exact = run_command(suite, profile, recs)
        lines.append(cmd)
        if not exact:
            unverified.append(f"{suite}/{profile}")
    lines.append("lenet-bench report --results results")
    sec.para("From a clean checkout, on a machine like the one in section 1: timings differ "
             "elsewhere, and the engine is deterministic for a given config, seed and device "
             "type. Each command resumes where it stopped; records go to "
             "results/<suite>/<profile>/runs.jsonl.")
    sec.add(CodeBlock("\n".join(lines)))
    if len(commits) > 1:
        sec.para("The records come from several commits (" + ", ".join(c[:12] for c in commits)
                 + "); check out the one of each run set, as listed in its records' env.")
    if unverified:
        sec.para("Not verified against the current suite definitions (the suite is missing "
                 "here, or its plan no longer matches the recorded run ids): "
                 + ", ".join(unverified) + ". Run their suites at the recorded commit.")
    return sec
