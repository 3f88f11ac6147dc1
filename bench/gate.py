"""The CI regression gate: `check` trains (or reuses) a suite's runs and compares each
(variant, dataset)'s test accuracy with committed bounds, below (a regression) and above (too
good for this code: evaluation on other data, a leak); `calibrate` derives those bounds from
several seeds' spread and rewrites the file for a human to review.

Accuracy gates (exit 1 on any FAIL); speed never does: `check --perf` only prints warnings,
because CI CPUs are shared and noisy. A missing or failed run is a FAIL, never a silent pass.

The commands only: the thresholds file (format, loading, writing, the derivation rule) is
bench.thresholds, the `--perf` comparison of pytest-benchmark saves is bench.perf_baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import config_key
from bench.env import cpu_model
from bench.errors import UsageError, warn
from bench.perf_baseline import PERF_SLOWDOWN, print_perf, resolve_perf
from bench.thresholds import (
    FLOOR_STEP,
    K_SIGMA,
    METRIC,
    MIN_MARGIN,
    THRESHOLDS_FILE,
    UPPER_KEY,
    WEAK_BELOW,
    Threshold,
    Thresholds,
    derive_threshold,
    derive_upper,
    is_num,
    load_thresholds,
    no_false_alarm_k,
    write_thresholds,
)

if TYPE_CHECKING:
    from bench.records import RunRecord

# --- running the suite ------------------------------------------------------------------------

@dataclass
class Prepared:
    suite: Any
    profile: Any
    plan: list[Any]
    runs_file: Path
    trained: int
    reused: list[str]  # run ids whose existing records were used
    results: Path
    data_root: Path


def _prepare(args: argparse.Namespace, *, seeds: int | None, overrides: dict[str, Any],
             train: bool, fresh: bool = False) -> Prepared:
    """Expand the suite like `run` does, train what has no record yet (everything if `fresh`),
    and say what was reused."""
    from bench import device as dev
    from bench.data import ensure_dataset, resolve_data_root
    from bench.records import locked, runs_path
    from bench.runner import Reuse, claim_todo, execute_plan
    from bench.suites import expand, get_profile, load_suite

    device = dev.resolve(args.device)
    suite = load_suite(args.suite)
    profile = get_profile(args.profile)
    plan = expand(suite, profile, variants=args.variants, datasets=args.datasets, seeds=seeds,
                  overrides=overrides, device=device)
    _check_one_config_per_key(plan, suite.name)
    results = Path(args.results)
    path = runs_path(results, suite.name, profile.name)
    root = resolve_data_root(args.data_root)
    for ds in sorted({r.config.dataset for r in plan}):
        ensure_dataset(ds, root, log=lambda m: None if args.quiet else print(m))
    reuse = Reuse(root)  # only records made by this code stand in for a run
    todo = plan if fresh else reuse.todo(plan, path)
    if todo and train:
        print(f"suite {suite.name}, profile {profile.name}: {len(todo)} runs to train, "
              f"{len(plan) - len(todo)} reused from {path} (made by this code); device "
              f"{device}", flush=True)
        with locked(path, timeout=0.5):
            todo = claim_todo(todo, path, fresh=fresh, reuse=reuse)
            execute_plan(todo, results, root, quiet=args.quiet)
    todo_ids = {r.run_id for r in todo}
    return Prepared(suite, profile, plan, path, len(todo) if train else 0,
                    [r.run_id for r in plan if r.run_id not in todo_ids], results, root)


def _check_one_config_per_key(plan: list[Any], suite: str) -> None:
    """Thresholds are keyed by (variant, dataset): a suite with a grid would pool configs."""
    seen: dict[tuple[str, str], str] = {}
    for r in plan:
        blob = config_key(r.config.to_dict())
        key = (r.config.variant, r.config.dataset)
        if seen.setdefault(key, blob) != blob:
            raise UsageError(f"suite {suite!r} has several configurations of {key[0]} on "
                             f"{key[1]}; the gate keys thresholds by variant and dataset only, "
                             "so gate a suite with one configuration each (e.g. variants)")


def _groups(plan: list[Any]) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for r in plan:
        out.setdefault((r.config.variant, r.config.dataset), []).append(r)
    return out


# --- check ----------------------------------------------------------------------------------

@dataclass
class Row:
    variant: str
    dataset: str
    n: str
    value: float | None
    threshold: float | None
    status: str  # PASS | FAIL | WARN
    note: str = ""
    upper: float | None = None  # max_test_acc

    @property
    def margin(self) -> float | None:
        if self.value is None or self.threshold is None:
            return None
        return self.value - self.threshold


def judge(plan: list[Any], records: dict[str, RunRecord],
          thresholds: dict[tuple[str, str], Threshold]) -> list[Row]:
    """One row per planned (variant, dataset): missing, failed or diverged runs are FAILs."""
    rows = []
    for (variant, ds), runs in sorted(_groups(plan).items()):
        th = thresholds.get((variant, ds))
        recs = [records.get(r.run_id) for r in runs]
        problems = []
        missing = [r.config.seed for r, rec in zip(runs, recs, strict=True) if rec is None]
        if missing:
            problems.append(f"no record for seed {', '.join(map(str, missing))}")
        values = []
        for r, rec in zip(runs, recs, strict=True):
            if rec is None:
                continue
            if rec.get("status") != "ok":
                why = rec.get("error") or "no reason recorded"
                problems.append(f"seed {r.config.seed} {rec.get('status')}: {why}")
                continue
            v = (rec.get("metrics") or {}).get(METRIC)
            if not is_num(v):
                problems.append(f"seed {r.config.seed}: record has no {METRIC}")
                continue
            values.append(float(v))
        value = statistics.fmean(values) if values else None
        n = f"{len(values)}/{len(runs)}"
        upper = th.upper if th else None
        if problems:
            rows.append(Row(variant, ds, n, value, th.value if th else None, "FAIL",
                            "; ".join(problems), upper))
        elif th is None:
            rows.append(Row(variant, ds, n, value, None, "WARN", "uncalibrated: run calibrate"))
        elif value is not None and upper is not None and value > upper:
            rows.append(Row(variant, ds, n, value, th.value, "FAIL", TOO_GOOD, upper))
        elif value is not None and value >= th.value:
            notes = ["weak threshold (near chance)" if th.value < WEAK_BELOW else "",
                     "" if upper is not None else f"no {UPPER_KEY}: recalibrate"]
            rows.append(Row(variant, ds, n, value, th.value, "PASS",
                            "; ".join(x for x in notes if x), upper))
        else:
            rows.append(Row(variant, ds, n, value, th.value, "FAIL", "below threshold", upper))
    return rows


TOO_GOOD = "too good: above max"  # a row's note; the explanation is printed below the table


def too_good_message(row: Row, suite: str, profile: str) -> str:
    """Why a result above its upper bound fails, and what to do about it."""
    return (f"{row.variant} on {row.dataset}: {METRIC} {row.value:.4f} is above its upper "
            f"bound {row.upper:.3f}: too good for this code. Likely causes: evaluation on other "
            "data than the full test split (the training set, a test subset), or test images "
            "leaked into training. If it is a real improvement, recalibrate (`lenet-bench "
            f"calibrate --suite {suite} --profile {profile} --seeds 10 --variants "
            f"{row.variant}`) and let the review of that diff confirm it")


def contract_problems(plan: list[Any], records: dict[str, RunRecord], results: Path,
                      root: Path) -> dict[tuple[str, str], str]:
    """(variant, dataset) → what breaks the contracts of bench.contracts: the inputs as the
    engine holds them, the data every run trained on and scored, and the first seed's
    trained weights (re-evaluated on the raw test split; evaluated batch by batch)."""
    from bench.config import config_from_record
    from bench.contracts import (
        data_problem,
        evaluation_problem,
        input_problem,
        reevaluation_problem,
    )
    from bench.engine import load_weights
    from bench.records import weights_path
    from bench.resident import device_data
    from variants import LOSSES

    out: dict[tuple[str, str], str] = {}
    inputs: dict[str, str | None] = {}
    for (variant, ds), runs in sorted(_groups(plan).items()):
        cfg = runs[0].config
        key = f"{ds} {sorted(cfg.transform.items())}"
        if key not in inputs:
            inputs[key] = input_problem(ds, cfg.transform, root)
        problems = [f"inputs: {inputs[key]}"] if inputs[key] else []
        oks = [rec for r in runs if (rec := records.get(r.run_id)) and rec.get("status") == "ok"]
        problems += sorted({p for rec in oks if (p := data_problem(rec, root))})
        for r in runs:
            rec = records.get(r.run_id)
            wfile = weights_path(results, r.suite, r.profile, r.run_id)
            if rec is not None and rec.get("status") == "ok" and wfile.is_file():
                model = load_weights(config_from_record(rec["config"]), wfile)
                problem = reevaluation_problem(model, rec, root)
                if problem:
                    problems.append(problem)
                test = device_data(ds, "test", cfg.transform, "cpu", root)
                problem = evaluation_problem(model, test, LOSSES[cfg.loss])
                if problem:
                    problems.append(problem)
                break
        if problems:
            out[(variant, ds)] = "; ".join(problems)
    return out


def apply_contracts(rows: list[Row], problems: dict[tuple[str, str], str]) -> None:
    """A broken contract fails its row, whatever the accuracy says."""
    for r in rows:
        p = problems.get((r.variant, r.dataset))
        if p:
            keep = r.note if r.status == "FAIL" else ""
            r.status, r.note = "FAIL", "; ".join(x for x in (keep, p) if x)


def render_rows(rows: list[Row]) -> str:
    from tabulate import tabulate

    def f(x: float | None, sign: str = "") -> str:
        return "–" if x is None else f"{x:{sign}.4f}"

    table = [[r.variant, r.dataset, r.n, f(r.value), f(r.threshold), f(r.margin, "+"),
              f(r.upper), r.status, r.note] for r in rows]
    return tabulate(table, headers=["variant", "dataset", "seeds", METRIC, "threshold",
                                    "margin", "max", "status", "note"], tablefmt="simple",
                    disable_numparse=True)



def cmd_check(args: argparse.Namespace) -> int:
    """Gate a suite/profile's accuracy against the thresholds file, and the contracts of
    bench.contracts (inputs, evaluation); exit 1 on any FAIL."""
    from bench.config import parse_assignments
    from bench.records import latest_by_id, read_records

    if args.fresh and args.no_train:
        raise UsageError("--fresh retrains every run and --no-train trains none: pick one")
    perf = resolve_perf(Path(args.benchmarks), args.perf_baseline) if (
        args.perf or args.perf_only) else None
    if args.perf_only:
        print_perf(perf)
        return 0
    th_path = Path(args.thresholds)
    thresholds = load_thresholds(th_path)  # a bad file fails before anything trains
    overrides = parse_assignments(args.set)
    t0 = time.perf_counter()
    prep = _prepare(args, seeds=None, overrides=overrides, train=not args.no_train,
                    fresh=args.fresh)
    suite, prof = prep.suite.name, prep.profile.name
    mine = thresholds.for_profile(suite, prof)
    records = latest_by_id(read_records(prep.runs_file))
    rows = judge(prep.plan, records, mine)
    apply_contracts(rows, contract_problems(prep.plan, records, prep.results, prep.data_root))

    print(f"\ngate: suite {suite}, profile {prof}, metric {METRIC} (mean over the seeds), "
          f"thresholds {th_path}")
    if overrides:
        ov = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        print(f"note: overrides active ({ov}): these runs differ from the calibrated "
              "configuration but are compared with its thresholds")
    _note_environment(thresholds.meta.get((suite, prof)), prep.plan)
    _note_behaviour(mine, records, prep.plan)
    print(render_rows(rows))
    for r in rows:
        if r.note.startswith(TOO_GOOD):
            print(f"too good: {too_good_message(r, suite, prof)}")
        if r.status == "WARN":
            warn(f"{r.variant} on {r.dataset} is registered but has no threshold for suite "
                  f"{suite}, profile {prof} in {th_path}; add one with `lenet-bench calibrate "
                  f"--suite {suite} --profile {prof} --variants {r.variant}`")
    if not args.variants and not args.datasets:
        planned = {(r.variant, r.dataset) for r in rows}
        for v, d in sorted(set(mine) - planned):
            warn(f"threshold {suite}.{prof}.{v}.{d} in {th_path} is not checked: the suite "
                  "has no such run")
    fails = [r for r in rows if r.status == "FAIL"]
    nwarn = sum(r.status == "WARN" for r in rows)
    wall = time.perf_counter() - t0
    print(f"{len(rows) - len(fails) - nwarn} of {len(rows)} passed"
          + (f"; {nwarn} without threshold (not gated)" if nwarn else "")
          + (f"; FAIL: {', '.join(f'{r.variant}/{r.dataset}' for r in fails)}" if fails else "")
          + f" ({prep.trained} runs trained, {len(prep.reused)} reused, {wall:.1f} s)")
    if perf is not None:
        print_perf(perf)
    return 1 if fails else 0


def _note_environment(meta: dict[str, Any] | None, plan: list[Any]) -> None:
    """Say when this machine differs from the calibration one: a near miss may be that."""
    if not meta:
        return
    import torch

    here = {"device": plan[0].config.device, "torch": torch.__version__, "cpu": cpu_model()}
    diff = [f"{k} {meta[k]!r} → {v!r}" for k, v in here.items() if k in meta and meta[k] != v]
    if diff:
        print(f"note: calibrated elsewhere ({'; '.join(diff)}); small differences are expected")


def _note_behaviour(mine: dict[tuple[str, str], Threshold], records: dict[str, Any],
                    plan: list[Any]) -> None:
    """Bit-exact news, never a failure: variants whose code trains differently from the code
    that made the calibration records (their fingerprints differ). A pure refactor keeps every
    fingerprint; an intended change should be recalibrated."""
    changed = set()
    for r in plan:
        th = mine.get((r.config.variant, r.config.dataset))
        rec = records.get(r.run_id)
        made = ((rec or {}).get("code") or {}).get("fingerprint")
        if th is not None and th.fingerprint and made and made != th.fingerprint:
            changed.add(r.config.variant)
    if changed:
        names = ", ".join(sorted(changed))
        print(f"note: training behaviour changed since calibration for {names} (code "
              "fingerprint differs; a refactor that changes no number keeps it): if intended, "
              "recalibrate")


# --- calibrate ------------------------------------------------------------------------------

def cmd_calibrate(args: argparse.Namespace) -> int:
    """Train N seeds per (variant, dataset) (or, with --no-train, take the records already
    there), derive both bounds, rewrite the file for review."""
    from bench.records import latest_by_id, read_records

    if args.seeds < 2:
        raise UsageError(f"--seeds must be ≥ 2 (a spread needs two values), got {args.seeds}")
    if (args.k_sigma is not None and args.k_sigma < 0) or not 0 <= args.min_margin < 1:
        raise UsageError("--k-sigma must be ≥ 0 and --min-margin in [0, 1)")
    th_path = Path(args.thresholds)
    th = (load_thresholds(th_path, drop_unregistered=True) if th_path.exists()
          else Thresholds(path=th_path))
    for where in th.dropped:
        warn(f"dropping {where} from {th_path}: the variant is no longer registered")
    prep = _prepare(args, seeds=args.seeds, overrides={}, train=not args.no_train)
    suite, prof = prep.suite.name, prep.profile.name
    records = latest_by_id(read_records(prep.runs_file))
    if args.no_train:
        reused = set(prep.reused)
        other = [r.run_id for r in prep.plan if r.run_id in records and r.run_id not in reused]
        if other:
            warn(f"--no-train: {len(other)} of {len(prep.plan)} records are not recognised as "
                 "made by this code (bench.fingerprint); the bounds describe the code that made "
                 "them, whose fingerprints the file keeps")
    samples: dict[tuple[str, str], tuple[list[Any], list[RunRecord]]] = {}
    bad = 0
    for (variant, ds), runs in sorted(_groups(prep.plan).items()):
        recs = [records.get(r.run_id) for r in runs]
        not_ok = [(r.config.seed, rec.get("status") if rec else "missing")
                  for r, rec in zip(runs, recs, strict=True)
                  if rec is None or rec.get("status") != "ok"]
        if not_ok:
            bad += 1
            kept = "kept the old threshold" if (suite, prof, variant, ds) in th.entries else \
                "no threshold written"
            print(f"error: {variant} on {ds}: " + ", ".join(f"seed {s} {st}" for s, st in not_ok)
                  + f"; {kept}", file=sys.stderr)
            continue
        samples[(variant, ds)] = (runs, [rec for rec in recs if rec is not None])
    values_of = {key: [float(rec["metrics"][METRIC]) for rec in recs]
                 for key, (_, recs) in samples.items()}
    k = (args.k_sigma if args.k_sigma is not None
         else no_false_alarm_k(list(values_of.values())))
    k_up = (args.k_sigma if args.k_sigma is not None
            else no_false_alarm_k(list(values_of.values()), upper=True))
    rule = (f"mean − max({k:g}σ, {args.min_margin:g}) over {args.seeds} seeds, rounded down "
            f"to {FLOOR_STEP:g}; {UPPER_KEY} = mean + max({k_up:g}σ, {args.min_margin:g}), "
            "rounded up" + ("" if args.k_sigma is not None else
                            f"; k = {k:g} and {k_up:g}, the least half-integers ≥ {K_SIGMA:g} "
                            "with no false alarm on the calibration seeds"))
    table, alarms, alarms_up, weak = [], 0, 0, []
    for (variant, ds), (runs, done) in samples.items():
        values = values_of[(variant, ds)]
        value, mean, std = derive_threshold(values, k, args.min_margin)
        upper = derive_upper(values, k_up, args.min_margin)
        seeds = sorted(r.config.seed for r in runs)
        derived = (f"mean {mean:.4f} − max({k:g} × std {std:.4f}, {args.min_margin:g}), "
                   f"rounded down to {FLOOR_STEP:g}; {UPPER_KEY}: mean + max({k_up:g} × std, "
                   f"{args.min_margin:g}), rounded up to {FLOOR_STEP:g}; {len(values)} seeds "
                   f"({seeds[0]}–"
                   f"{seeds[-1]}) on {runs[0].config.device}")
        alarms += sum(v < value for v in values)
        alarms_up += sum(v > upper for v in values)
        if value < WEAK_BELOW:
            weak.append(variant)
            print(f"error: {variant} on {ds}: threshold {value:.3f} is under {WEAK_BELOW:g} "
                  "(chance is 0.1): its gate budget barely trains it; raise the `gate=` "
                  "budget in its register_variant", file=sys.stderr)
        prints = {(rec.get("code") or {}).get("fingerprint") for rec in done}
        th.entries[(suite, prof, variant, ds)] = Threshold(
            value=value, derived=derived, records=tuple(r.run_id for r in runs),
            mean=round(mean, 6), std=round(std, 6), n=len(values),
            min_seed=round(min(values), 6),
            fingerprint=prints.pop() if len(prints) == 1 and None not in prints else None,
            upper=upper, max_seed=round(max(values), 6),
        )
        table.append([variant, ds, len(values), f"{mean:.4f}", f"{std:.4f}",
                      f"{min(values):.4f}", f"{value:.3f}", f"{min(values) - value:+.4f}",
                      f"{max(values):.4f}", f"{upper:.3f}", f"{upper - max(values):+.4f}"])
    used = [rec for _, recs in samples.values() for rec in recs]
    env = _calibration_env(used if args.no_train else [], prep.plan[0].config.device)
    th.meta[(suite, prof)] = {
        "calibrated": env.pop("calibrated"),
        "seeds": args.seeds, "rule": rule, "k_sigma": float(k),
        "min_margin": float(args.min_margin), "false_alarms": alarms, **env,
        "k_sigma_upper": float(k_up), "false_alarms_upper": alarms_up,
    }
    write_thresholds(th)
    from tabulate import tabulate

    print(tabulate(table, headers=["variant", "dataset", "n", "mean", "std", "min seed",
                                   "threshold", "min − threshold", "max seed", "max",
                                   "max − max seed"], tablefmt="simple",
                   disable_numparse=True))
    n_runs = sum(map(len, values_of.values()))
    print(f"wrote {th_path} ({rule}; {alarms} of {n_runs} calibration runs below their "
          f"threshold, {alarms_up} above their {UPPER_KEY}; {prep.trained} runs trained, "
          f"{len(prep.reused)} reused); review it (git diff {th_path}) and commit")
    return 1 if bad or weak or alarms or alarms_up else 0


def _calibration_env(recs: list[RunRecord], device: str) -> dict[str, Any]:
    """Where and when the calibration runs were made: from their records when the bounds are
    derived from existing ones (`--no-train`; the values all records agree on), else this
    process, which has just trained or checked them."""
    import torch

    here: dict[str, Any] = {
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"), "device": device,
        "torch": torch.__version__, "cpu": cpu_model(), "threads": torch.get_num_threads(),
    }
    if not recs:
        return here
    envs = [rec.get("env") or {} for rec in recs]
    ended = [e["ended"] for e in envs if isinstance(e.get("ended"), str)]
    out = {"calibrated": max(ended) if len(ended) == len(envs) else here["calibrated"]}
    for key in ("device", "torch", "cpu", "threads"):
        seen = {e.get(key) for e in envs}
        if len(seen) == 1 and None not in seen:
            out[key] = seen.pop()
    return out

# --- argparse -------------------------------------------------------------------------------

def add_parsers(sub: Any) -> None:
    """Add `check` and `calibrate` to the CLI's subparsers (their parser class raises
    UsageError, so argparse mistakes are one line and exit 2 like the rest of the CLI)."""
    from bench.suites import PROFILES

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--suite", default="variants")
        p.add_argument("--profile", default="gate", help=", ".join(PROFILES))
        p.add_argument("--thresholds", default=str(THRESHOLDS_FILE), metavar="FILE")
        p.add_argument("--variants", default=None, metavar="PATTERN",
                       help="fnmatch, comma-sep")
        p.add_argument("--datasets", nargs="+", default=None, metavar="NAME")
        p.add_argument("--device", default="cpu",
                       help="cpu (default: thresholds are calibrated on the CPU), cuda, auto")
        p.add_argument("--results", default="results", metavar="DIR")
        p.add_argument("--data-root", default=None)
        p.add_argument("--quiet", action="store_true", help="no progress bars (CI logs)")

    ch = sub.add_parser("check", help="CI gate: train/reuse a profile's runs, compare accuracy "
                        "with the thresholds file (exit 1 on any FAIL)")
    common(ch)
    ch.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the config (new runs; compared with the plain thresholds)")
    ch.add_argument("--fresh", action="store_true",
                    help="retrain every run (records otherwise reused were made by the code of "
                    "their time: a run id hashes the config, not the code)")
    ch.add_argument("--no-train", action="store_true",
                    help="judge existing records only; a run without one is a FAIL")
    ch.add_argument("--perf", action="store_true",
                    help=f"also warn (never fail) on benchmarks > {100 * PERF_SLOWDOWN:.0f}%% "
                    "slower than the saved baseline of this machine")
    ch.add_argument("--perf-only", action="store_true", help="only the --perf comparison")
    ch.add_argument("--perf-baseline", default=None, metavar="FILE_OR_PREFIX")
    ch.add_argument("--benchmarks", default=".benchmarks", metavar="DIR",
                    help="pytest-benchmark storage (default .benchmarks)")

    ca = sub.add_parser("calibrate", help="derive the gate's thresholds from N seeds and "
                        "rewrite the thresholds file for review")
    common(ca)
    ca.add_argument("--seeds", type=int, default=5, metavar="N")
    ca.add_argument("--k-sigma", type=float, default=None, metavar="K",
                    help=f"default: the least half-integer ≥ {K_SIGMA:g} with no false alarm")
    ca.add_argument("--min-margin", type=float, default=MIN_MARGIN, metavar="M")
    ca.add_argument("--no-train", action="store_true",
                    help="derive the bounds from the records already in --results (nothing is "
                    "trained; a missing seed is an error, a record by other code a warning)")
