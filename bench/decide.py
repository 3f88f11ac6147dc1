"""`lenet-bench decide`: add seeds where a comparison is open, stop where it is decided.

The comparisons are the report's (report.decisions): per dataset and leaderboard the best
variant against each other one, and each d2l group's levels against its reference. Each is
judged by bench.sequential's group-sequential rule at fixed looks (5, 10, 15 seeds per arm);
a round trains, for every open comparison, the seeds its next look needs, both arms, until
every comparison is decided, has reached the cap, or the CPU-time budget is spent. The verdict
is replayed from the records, so an interrupted `decide` resumes where it stopped and the
report gives the same words.

For the d2l groups only the candidates get seeds by default: per group and dataset, the level
with the highest mean while it is open against the reference; the largest Δ so far goes
first. `--all-levels` adds seeds to every open level. Picking on the seeds is why each level
is judged at α/k (report.decisions splits α over the candidates of a pick).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import config_from_record
from bench.errors import UsageError
from bench.suites import PlannedRun

DECIDE_SUITES = ("variants", "equal-terms", "d2l-ex1", "d2l-ex2", "d2l-ex3")
#: The question of a leaderboard's comparisons (report.decisions asks it).
BEST_VS_OTHERS = "each variant vs the best"
#: A run's cost when its configuration has no timed record yet (seconds, on 2 cores).
DEFAULT_RUN_S = 300.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("decide", help="add seeds to open comparisons until each is decided "
                                      "(better / worse / equivalent) or reaches the cap")
    p.add_argument("--suite", required=True, help=", ".join(DECIDE_SUITES))
    p.add_argument("--profile", default="reference")
    p.add_argument("--budget-minutes", type=float, default=60.0, metavar="M",
                   help="train a comparison's next look only while the estimated time so far "
                        "stays within M minutes")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                   help="only the comparisons on these datasets")
    p.add_argument("--questions", default=None, metavar="PATTERN",
                   help="only the comparisons whose question (a d2l group, or "
                        f"'{BEST_VS_OTHERS}') matches (fnmatch, comma-sep)")
    p.add_argument("--all-levels", action="store_true",
                   help="d2l groups: add seeds to every open level, not only the best")
    p.add_argument("--results", default="results", metavar="DIR")
    p.add_argument("--data-root", default=None)
    p.add_argument("--jobs", default="auto", metavar="N|auto")
    p.add_argument("--dry-run", action="store_true",
                   help="print the verdicts and what the next round would train")
    p.add_argument("--quiet", action="store_true")


def selected(decisions: list[Any], datasets: list[str] | None,
             questions: str | None) -> list[Any]:
    """The comparisons the user narrowed `decide` to (all of them by default)."""
    pats = [q.strip() for q in questions.split(",") if q.strip()] if questions else None
    return [d for d in decisions if (datasets is None or d.dataset in datasets)
            and (pats is None or any(fnmatch.fnmatchcase(d.question, q) for q in pats))]


def candidates(decisions: list[Any], all_levels: bool) -> list[Any]:
    """The open comparisons that get seeds, the likeliest "better" (largest Δ over the seeds
    so far) first. A d2l group gets seeds only while its best level (highest mean, decided or
    not) is open against the reference, unless `all_levels`."""
    open_ = [d for d in decisions if d.verdict.outcome == "open"]
    if not all_levels:
        best: dict[tuple[str, str], Any] = {}
        for d in decisions:
            if d.question == BEST_VS_OTHERS:
                continue
            key = (d.question, d.dataset)
            if key not in best or _mean(d.a) > _mean(best[key].a):
                best[key] = d
        open_ = [d for d in open_ if d.question == BEST_VS_OTHERS
                 or best.get((d.question, d.dataset)) is d]
    return sorted(open_, key=lambda d: (-(_mean(d.a) - _mean(d.b)), d.dataset, d.question,
                                        d.a.label))


def _mean(arm: Any) -> float:
    vals = arm.values
    return sum(vals) / len(vals) if vals else float("-inf")


def seed_run(record: dict[str, Any], seed: int) -> PlannedRun:
    """One more seed of a recorded configuration: its identity and config, seed changed."""
    m0 = (record.get("memberships") or [record])[0]
    cfg = dataclasses.replace(config_from_record(record["config"]), seed=seed)
    return PlannedRun(suite=record["suite"], profile=record["profile"], group=m0["group"],
                      question=m0.get("question") or "", factor=m0.get("factor"),
                      factor_value=m0.get("factor_value"),
                      overrides=dict(record.get("overrides") or {}), config=cfg,
                      memberships=list(record.get("memberships") or []))


def round_runs(chosen: list[Any]) -> tuple[list[list[PlannedRun]], dict[str, float]]:
    """Per chosen comparison, the runs its next look needs (both arms; a run another
    comparison already asks for is listed once, with the first); and each run's estimated
    seconds (its configuration's recorded wall time)."""
    seen: set[str] = set()
    cost: dict[str, float] = {}
    out: list[list[PlannedRun]] = []
    for d in chosen:
        need = d.verdict.next_n
        mine: list[PlannedRun] = []
        for arm in (d.a, d.b):
            if arm.record is None:
                continue
            for s in range(need):
                if s in arm.by_seed:
                    continue
                run = seed_run(arm.record, s)
                if run.run_id in seen:
                    continue
                seen.add(run.run_id)
                mine.append(run)
                wall = (arm.record.get("timing") or {}).get("wall_seconds")
                cost[run.run_id] = float(wall) if wall else DEFAULT_RUN_S
        if mine:
            out.append(mine)
    return out, cost


def makespan(costs: list[float], jobs: int) -> float:
    """Seconds `jobs` workers take for runs of these costs, each run to the least loaded
    worker, longest first: the pool trains whole runs, so five equal runs on two workers take
    three runs' time, not two and a half."""
    loads = [0.0] * max(1, jobs)
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def _only(runs: list[PlannedRun]) -> Callable[[list[PlannedRun]], list[PlannedRun]]:
    """The plan `run` trains: these runs, whatever the suite's own plan holds."""
    return lambda _plan: list(runs)


def _pp(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def _table(decisions: list[Any]) -> str:
    from tabulate import tabulate

    rows = []
    for d in decisions:
        v = d.verdict
        p = d.p_better
        rows.append([d.dataset, d.question, f"{d.a.label} vs {d.b.label}", v.n, _pp(v.delta),
                     "–" if v.lo is None else f"[{_pp(v.lo)}, {_pp(v.hi)}]",
                     "–" if p is None else f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]", d.words])
    return tabulate(rows, headers=["dataset", "question", "A vs B", "seeds", "Δ (pp)",
                                   "interval", "P(A>B)", "verdict"], tablefmt="simple")


def cmd_decide(args: argparse.Namespace, run_suite: Callable[..., int],
               current: Callable[[str, str, Path], list[Any]], rule: str, jobs: int) -> int:
    """Rounds of seeds until decided, capped, or out of budget; prints the verdicts.

    `current(suite, profile, results)` gives the comparisons as the report makes them and
    `run_suite` trains (both from bench.cli, which alone joins the library and the report);
    `jobs`: the runs trained at once (the cost estimate schedules the runs on that many)."""

    if args.suite not in DECIDE_SUITES:
        raise UsageError(f"decide works on suites {', '.join(DECIDE_SUITES)}; got "
                         f"{args.suite!r}")
    if not args.budget_minutes > 0:
        raise UsageError(f"--budget-minutes must be > 0, got {args.budget_minutes:g}")
    results = Path(args.results)
    budget = 60.0 * args.budget_minutes
    spent = 0.0
    print(rule)
    while True:
        decisions = current(args.suite, args.profile, results)
        if not decisions:
            raise UsageError(f"no comparisons in {results}/{args.suite}/{args.profile}: run "
                             f"`lenet-bench run --suite {args.suite} --profile {args.profile}` "
                             "first (3 seeds or more)")
        decisions = selected(decisions, args.datasets, args.questions)
        if not decisions:
            raise UsageError("no comparison matches --datasets/--questions in "
                             f"{results}/{args.suite}/{args.profile}")
        chosen = candidates(decisions, args.all_levels)
        per, cost = round_runs(chosen)
        runs = [r for rs in per for r in rs]
        if not runs:
            why = "every comparison is decided or at its cap" if not chosen else "nothing to run"
            break
        # whole comparisons (both arms' seeds of their next look), the likeliest "better"
        # first, while the estimate fits the budget: a half-trained look decides nothing
        fits: list[PlannedRun] = []
        est = 0.0
        for rs in per:
            c = makespan([cost[r.run_id] for r in fits + rs], jobs)
            if spent + c > budget:
                break
            fits.extend(rs)
            est = c
        if args.dry_run:
            total = makespan(list(cost.values()), jobs)
            print(f"next round: {len(runs)} runs (~{total / 60:.0f} min); "
                  f"{len(fits)} fit the budget of {args.budget_minutes:g} min")
            why = "dry run"
            break
        if not fits:
            why = (f"the budget ({args.budget_minutes:g} min) cannot fit the next look of the "
                   "first open comparison")
            break
        print(f"round: {len(fits)} of {len(runs)} runs (~{est / 60:.0f} min) for "
              f"{len(chosen)} open comparisons", flush=True)
        ns = argparse.Namespace(
            suite=args.suite, profile=args.profile, variants=None, datasets=None, seeds=None,
            set=[], device="cpu", results=args.results, data_root=args.data_root,
            dry_run=False, force=False, keep_stale=False, yes=True, quiet=args.quiet,
            executor="local", jobs=args.jobs, address=None, gpus_per_run=None,
            cpus_per_run=None)
        t0 = time.perf_counter()
        rc = run_suite(ns, args.suite, extend=_only(fits))
        spent += time.perf_counter() - t0
        if rc != 0:
            return rc
        if len(fits) < len(runs):
            why = f"the budget ({args.budget_minutes:g} min) is spent"
            decisions = selected(current(args.suite, args.profile, results), args.datasets,
                                 args.questions)
            break
    print(_table(decisions))
    n_open = sum(d.verdict.outcome == "open" for d in decisions)
    print(f"{len(decisions)} comparisons: " + ", ".join(
        f"{sum(d.verdict.outcome == o for d in decisions)} {o}"
        for o in ("better", "worse", "equivalent", "undecided", "open")) +
        f"; stopped: {why}; {spent / 60:.1f} min trained" +
        (f" ({n_open} open: `lenet-bench decide` again resumes)" if n_open else ""))
    return 0
