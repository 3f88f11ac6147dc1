"""The CI regression gate: `check` trains (or reuses) a suite's runs and compares each
(variant, dataset)'s test accuracy with a committed threshold; `calibrate` derives those
thresholds from several seeds' spread and rewrites the file for a human to review.

Accuracy gates (exit 1 on any FAIL); speed never does: `check --perf` only prints warnings,
because CI CPUs are shared and noisy. A missing or failed run is a FAIL, never a silent pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.env import cpu_model
from bench.errors import UsageError

THRESHOLDS_FILE = Path(__file__).parent / "thresholds.toml"
SCHEMA = 1
METRIC = "test_acc"
THRESHOLD_KEY = f"min_{METRIC}"
K_SIGMA = 3.0  # margin in sample standard deviations over the calibration seeds …
MIN_MARGIN = 0.02  # … but never less than this (covers other CPUs / BLAS builds)
FLOOR_STEP = 0.001  # thresholds are rounded down to this, so they read cleanly
WEAK_BELOW = 0.2  # a threshold under 2× chance (10 classes) can catch little but a crash
PERF_SLOWDOWN = 0.25  # `check --perf` warns when a benchmark is this much slower
PERF_STAT = "min"  # the least noise-sensitive pytest-benchmark statistic
RESERVED = ("schema", "meta")  # top-level keys that are not suite names

# Every key an entry may have: (type check, what the message says it must be, required).
ENTRY_KEYS: dict[str, tuple[Any, str, bool]] = {
    THRESHOLD_KEY: (lambda v: _is_num(v) and 0.0 < v <= 1.0, "a number in (0, 1]", True),
    "derived": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string", True),
    "records": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                "a list of run-id strings", True),
    "mean": (lambda v: _is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]", False),
    "std": (lambda v: _is_num(v) and v >= 0.0, "a number ≥ 0", False),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "an integer ≥ 1", False),
}
META_KEYS: dict[str, tuple[Any, str]] = {
    "calibrated": (lambda v: isinstance(v, str), "a string"),
    "seeds": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
              "an integer ≥ 1"),
    "rule": (lambda v: isinstance(v, str), "a string"),
    "k_sigma": (lambda v: _is_num(v) and v >= 0, "a number ≥ 0"),
    "min_margin": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "torch": (lambda v: isinstance(v, str), "a string"),
    "cpu": (lambda v: isinstance(v, str), "a string"),
    "threads": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- the thresholds file --------------------------------------------------------------------

@dataclass(frozen=True)
class Threshold:
    value: float
    derived: str
    records: tuple[str, ...]
    mean: float | None = None
    std: float | None = None
    n: int | None = None


Key = tuple[str, str, str, str]  # suite, profile, variant, dataset


@dataclass
class Thresholds:
    """The parsed file: entries keyed by (suite, profile, variant, dataset), plus metadata."""

    path: Path
    entries: dict[Key, Threshold] = field(default_factory=dict)
    meta: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # unregistered variants (calibrate only)

    def for_profile(self, suite: str, profile: str) -> dict[tuple[str, str], Threshold]:
        return {(k[2], k[3]): t for k, t in self.entries.items() if k[:2] == (suite, profile)}


def _table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{path}: {where} must be a table, got {value!r}")
    return value


def load_thresholds(path: Path, *, drop_unregistered: bool = False) -> Thresholds:
    """Parse and strictly validate a thresholds file; every problem is one UsageError line.

    Names are checked against what exists (suites, profiles, variants, datasets) so that a
    typo is an error, not a threshold that silently never applies. `calibrate` passes
    `drop_unregistered` to forget variants removed from the registry instead of failing.
    """
    from bench.config import DATASET_NAMES
    from bench.suites import PROFILES, available_suites
    from variants import list_variants

    if not path.is_file():
        raise UsageError(f"thresholds file {path} not found; create it with `lenet-bench "
                         "calibrate --suite variants --profile smoke --seeds 5`")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    schema = raw.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise UsageError(f"{path}: schema must be {SCHEMA}, got {schema!r}")
    out = Thresholds(path=path)
    suites, variants = available_suites(), set(list_variants())
    for key in raw:
        if key not in RESERVED and key not in suites:
            raise UsageError(f"{path}: unknown key or suite {key!r}; valid: "
                             f"{', '.join(list(RESERVED) + suites)}")
    for suite, profiles in _table(path, "meta", raw.get("meta", {})).items():
        if suite not in suites:
            raise UsageError(f"{path}: meta.{suite}: unknown suite; valid: {', '.join(suites)}")
        for prof, meta in _table(path, f"meta.{suite}", profiles).items():
            where = f"meta.{suite}.{prof}"
            if prof not in PROFILES:
                raise UsageError(f"{path}: {where}: unknown profile; valid: {', '.join(PROFILES)}")
            _check_fields(path, where, _table(path, where, meta),
                          {k: (ok, what, False) for k, (ok, what) in META_KEYS.items()})
            out.meta[(suite, prof)] = dict(meta)
    for suite in (k for k in raw if k not in RESERVED):
        for prof, by_variant in _table(path, suite, raw[suite]).items():
            if prof not in PROFILES:
                raise UsageError(f"{path}: {suite}.{prof}: unknown profile; valid: "
                                 f"{', '.join(PROFILES)}")
            for variant, by_ds in _table(path, f"{suite}.{prof}", by_variant).items():
                where = f"{suite}.{prof}.{variant}"
                if variant not in variants:
                    if drop_unregistered:
                        out.dropped.append(where)
                        continue
                    raise UsageError(f"{path}: {where}: unknown variant {variant!r} (a typo, or "
                                     "removed from the registry? then delete its table); valid: "
                                     f"{', '.join(sorted(variants))}")
                for ds, entry in _table(path, where, by_ds).items():
                    ew = f"{where}.{ds}"
                    if ds not in DATASET_NAMES:
                        raise UsageError(f"{path}: {ew}: unknown dataset {ds!r}; valid: "
                                         f"{', '.join(DATASET_NAMES)}")
                    _check_fields(path, ew, _table(path, ew, entry), ENTRY_KEYS)
                    out.entries[(suite, prof, variant, ds)] = Threshold(
                        value=float(entry[THRESHOLD_KEY]), derived=entry["derived"],
                        records=tuple(entry["records"]),
                        mean=None if "mean" not in entry else float(entry["mean"]),
                        std=None if "std" not in entry else float(entry["std"]),
                        n=entry.get("n"),
                    )
    return out


def _check_fields(path: Path, where: str, got: dict[str, Any],
                  spec: dict[str, tuple[Any, str, bool]]) -> None:
    unknown = sorted(set(got) - set(spec))
    if unknown:
        raise UsageError(f"{path}: {where}: unknown key {unknown[0]!r}; valid: "
                         f"{', '.join(sorted(spec))}")
    for key, (ok, what, required) in spec.items():
        if key not in got:
            if required:
                raise UsageError(f"{path}: {where}: missing key {key!r} ({what})")
            continue
        if not ok(got[key]):
            raise UsageError(f"{path}: {where}.{key} must be {what}, got {got[key]!r}")


_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _tkey(k: str) -> str:
    return k if k and set(k) <= _BARE else json.dumps(k, ensure_ascii=False)


def _tval(v: Any) -> str:
    """A TOML value; JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_tval(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


HEADER = """\
# CI regression-gate thresholds: `lenet-bench check` fails when a (variant, dataset)'s mean
# test accuracy over the profile's seeds falls below min_test_acc. Keyed
# [<suite>.<profile>.<variant>.<dataset>]; each entry says how it was derived and from which
# run records (results/<suite>/<profile>/runs.jsonl).
#
# Written by `lenet-bench calibrate --suite S --profile P --seeds N`: review the diff, then
# commit. Rule: min_test_acc = mean − max(K·σ, MIN_MARGIN), rounded down to 0.001, where mean
# and σ (sample std) are over N seeds trained on the CPU. A check run trains seed 0 only, on
# another machine its numbers differ slightly (float rounding); the K·σ term covers that with
# the seed spread, MIN_MARGIN keeps a floor when the seeds happen to agree closely.
# Hand edits are fine: keep `derived` honest. Unknown keys, wrong types and names that are not
# a suite / profile / registered variant / dataset are errors.
"""


def write_thresholds(th: Thresholds) -> None:
    """Rewrite the whole file (atomically), sorted, with the header; then re-validate it."""
    lines = [HEADER, f"schema = {SCHEMA}", ""]
    for (suite, prof), meta in sorted(th.meta.items()):
        lines.append(f"[meta.{_tkey(suite)}.{_tkey(prof)}]")
        lines += [f"{_tkey(k)} = {_tval(v)}" for k, v in meta.items()]
        lines.append("")
    for (suite, prof, variant, ds), t in sorted(th.entries.items()):
        lines.append(f"[{'.'.join(_tkey(k) for k in (suite, prof, variant, ds))}]")
        lines.append(f"{THRESHOLD_KEY} = {_tval(t.value)}")
        for k in ("mean", "std", "n"):
            v = getattr(t, k)
            if v is not None:
                lines.append(f"{k} = {_tval(v)}")
        lines.append(f"derived = {_tval(t.derived)}")
        lines.append(f"records = {_tval(list(t.records))}")
        lines.append("")
    th.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = th.path.with_name(f".{th.path.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, th.path)
    load_thresholds(th.path)  # what we wrote must be what we read


def derive_threshold(values: list[float], k_sigma: float = K_SIGMA,
                     min_margin: float = MIN_MARGIN) -> tuple[float, float, float]:
    """(threshold, mean, std) from the calibration seeds' accuracies (at least 2)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values)
    margin = max(k_sigma * std, min_margin)
    value = math.floor((mean - margin) / FLOOR_STEP + 1e-9) * FLOOR_STEP
    return max(round(value, 6), FLOOR_STEP), mean, std


# --- running the suite ------------------------------------------------------------------------

@dataclass
class Prepared:
    suite: Any
    profile: Any
    plan: list[Any]
    runs_file: Path
    trained: int
    reused: list[str]  # run ids whose existing records were used


def _prepare(args: argparse.Namespace, *, seeds: int | None, overrides: dict[str, Any],
             train: bool, fresh: bool = False) -> Prepared:
    """Expand the suite like `run` does, train what has no record yet (everything if `fresh`),
    and say what was reused."""
    from bench.data import ensure_dataset, resolve_data_root
    from bench.engine import resolve_device
    from bench.records import finished_ids, locked, remove_records, runs_path
    from bench.runner import execute_plan
    from bench.suites import expand, get_profile, load_suite

    device = resolve_device(args.device)
    suite = load_suite(args.suite)
    profile = get_profile(args.profile)
    plan = expand(suite, profile, variants=args.variants, datasets=args.datasets, seeds=seeds,
                  overrides=overrides, device=device)
    _check_one_config_per_key(plan, suite.name)
    results = Path(args.results)
    path = runs_path(results, suite.name, profile.name)
    done = finished_ids(path)
    todo = [r for r in plan if fresh or r.run_id not in done]
    if todo and train:
        root = resolve_data_root(args.data_root)
        for ds in sorted({r.config.dataset for r in todo}):
            ensure_dataset(ds, root, log=lambda m: None if args.quiet else print(m))
        print(f"suite {suite.name}, profile {profile.name}: {len(todo)} runs to train, "
              f"{len(plan) - len(todo)} reused from {path}; device {device}", flush=True)
        with locked(path, timeout=0.5):
            if fresh:
                remove_records(path, {r.run_id for r in todo})
            execute_plan(todo, results, root, quiet=args.quiet)
    todo_ids = {r.run_id for r in todo}
    return Prepared(suite, profile, plan, path, len(todo) if train else 0,
                    [r.run_id for r in plan if r.run_id not in todo_ids])


def _check_one_config_per_key(plan: list[Any], suite: str) -> None:
    """Thresholds are keyed by (variant, dataset): a suite with a grid would pool configs."""
    seen: dict[tuple[str, str], str] = {}
    for r in plan:
        cfg = {k: v for k, v in r.config.to_dict().items() if k != "seed"}
        blob = json.dumps(cfg, sort_keys=True, default=str)
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

    @property
    def margin(self) -> float | None:
        if self.value is None or self.threshold is None:
            return None
        return self.value - self.threshold


def judge(plan: list[Any], records: dict[str, dict[str, Any]],
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
            if not _is_num(v):
                problems.append(f"seed {r.config.seed}: record has no {METRIC}")
                continue
            values.append(float(v))
        value = statistics.fmean(values) if values else None
        n = f"{len(values)}/{len(runs)}"
        if problems:
            rows.append(Row(variant, ds, n, value, th.value if th else None, "FAIL",
                            "; ".join(problems)))
        elif th is None:
            rows.append(Row(variant, ds, n, value, None, "WARN", "no threshold"))
        elif value is not None and value >= th.value:
            weak = "weak threshold (near chance)" if th.value < WEAK_BELOW else ""
            rows.append(Row(variant, ds, n, value, th.value, "PASS", weak))
        else:
            rows.append(Row(variant, ds, n, value, th.value, "FAIL", "below threshold"))
    return rows


def render_rows(rows: list[Row]) -> str:
    from tabulate import tabulate

    def f(x: float | None, sign: str = "") -> str:
        return "–" if x is None else f"{x:{sign}.4f}"

    table = [[r.variant, r.dataset, r.n, f(r.value), f(r.threshold), f(r.margin, "+"),
              r.status, r.note] for r in rows]
    return tabulate(table, headers=["variant", "dataset", "seeds", METRIC, "threshold",
                                    "margin", "status", "note"], tablefmt="simple",
                    disable_numparse=True)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    """Gate a suite/profile's accuracy against the thresholds file; exit 1 on any FAIL."""
    from bench.config import parse_assignments
    from bench.records import latest_by_id, read_records

    if args.fresh and args.no_train:
        raise UsageError("--fresh retrains every run and --no-train trains none: pick one")
    perf = resolve_perf(Path(args.benchmarks), args.perf_baseline) if (
        args.perf or args.perf_only) else None
    if args.perf_only:
        _print_perf(perf)
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

    print(f"\ngate: suite {suite}, profile {prof}, metric {METRIC} (mean over the seeds), "
          f"thresholds {th_path}")
    if overrides:
        ov = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        print(f"note: overrides active ({ov}): these runs differ from the calibrated "
              "configuration but are compared with its thresholds")
    _note_environment(thresholds.meta.get((suite, prof)), prep.plan)
    _note_stale(prep.reused, records)
    print(render_rows(rows))
    for r in rows:
        if r.status == "WARN":
            _warn(f"{r.variant} on {r.dataset} is registered but has no threshold for suite "
                  f"{suite}, profile {prof} in {th_path}; add one with `lenet-bench calibrate "
                  f"--suite {suite} --profile {prof} --variants {r.variant}`")
    if not args.variants and not args.datasets:
        planned = {(r.variant, r.dataset) for r in rows}
        for v, d in sorted(set(mine) - planned):
            _warn(f"threshold {suite}.{prof}.{v}.{d} in {th_path} is not checked: the suite "
                  "has no such run")
    fails = [r for r in rows if r.status == "FAIL"]
    n_warn = sum(r.status == "WARN" for r in rows)
    wall = time.perf_counter() - t0
    print(f"{len(rows) - len(fails) - n_warn} of {len(rows)} passed"
          + (f"; {n_warn} without threshold (not gated)" if n_warn else "")
          + (f"; FAIL: {', '.join(f'{r.variant}/{r.dataset}' for r in fails)}" if fails else "")
          + f" ({prep.trained} runs trained, {len(prep.reused)} reused, {wall:.1f} s)")
    if perf is not None:
        _print_perf(perf)
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


def _note_stale(reused: list[str], records: dict[str, dict[str, Any]]) -> None:
    """A run id hashes the config, not the code: reused records may predate a code change."""
    from bench.env import git_info

    here = git_info()
    if here.get("git_commit") is None:
        return
    stale = {}
    for rid in reused:
        env = (records.get(rid) or {}).get("env") or {}
        if env.get("git_commit") != here["git_commit"] or env.get("git_dirty") is not False:
            stale[rid] = str(env.get("git_commit") or "unknown")[:10] + (
                "+dirty" if env.get("git_dirty") else "")
    if stale:
        print(f"note: {len(stale)} reused records may predate the current code (made at "
              f"{', '.join(sorted(set(stale.values())))}; now {here['git_commit'][:10]}"
              f"{'+dirty' if here.get('git_dirty') else ''}); `--fresh` retrains them")


# --- calibrate ------------------------------------------------------------------------------

def cmd_calibrate(args: argparse.Namespace) -> int:
    """Train N seeds per (variant, dataset), derive thresholds, rewrite the file for review."""
    import torch

    from bench.records import latest_by_id, read_records

    if args.seeds < 2:
        raise UsageError(f"--seeds must be ≥ 2 (a spread needs two values), got {args.seeds}")
    if args.k_sigma < 0 or not 0 <= args.min_margin < 1:
        raise UsageError("--k-sigma must be ≥ 0 and --min-margin in [0, 1)")
    th_path = Path(args.thresholds)
    th = (load_thresholds(th_path, drop_unregistered=True) if th_path.exists()
          else Thresholds(path=th_path))
    for where in th.dropped:
        _warn(f"dropping {where} from {th_path}: the variant is no longer registered")
    prep = _prepare(args, seeds=args.seeds, overrides={}, train=True)
    suite, prof = prep.suite.name, prep.profile.name
    records = latest_by_id(read_records(prep.runs_file))
    rule = (f"mean − max({args.k_sigma:g}σ, {args.min_margin:g}) over {args.seeds} seeds, "
            f"rounded down to {FLOOR_STEP:g}")
    table, bad = [], 0
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
        values = [float(rec["metrics"][METRIC]) for rec in recs if rec is not None]
        value, mean, std = derive_threshold(values, args.k_sigma, args.min_margin)
        seeds = sorted(r.config.seed for r in runs)
        derived = (f"mean {mean:.4f} − max({args.k_sigma:g} × std {std:.4f}, "
                   f"{args.min_margin:g}), rounded down to {FLOOR_STEP:g}; {len(values)} seeds "
                   f"({seeds[0]}–{seeds[-1]}) on {runs[0].config.device}")
        if value < WEAK_BELOW:
            derived += (f"; WEAK: under {WEAK_BELOW:g} (chance is 0.1), profile {prof} barely "
                        "trains this variant, so only a missing, failed or diverged run fails")
            _warn(f"{variant} on {ds}: threshold {value:.3f} is weak ({derived.split('; ')[-1]})")
        th.entries[(suite, prof, variant, ds)] = Threshold(
            value=value,
            derived=derived,
            records=tuple(r.run_id for r in runs), mean=round(mean, 6), std=round(std, 6),
            n=len(values),
        )
        table.append([variant, ds, len(values), f"{mean:.4f}", f"{std:.4f}",
                      f"{min(values):.4f}", f"{value:.3f}"])
    th.meta[(suite, prof)] = {
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"),
        "seeds": args.seeds, "rule": rule, "k_sigma": float(args.k_sigma),
        "min_margin": float(args.min_margin), "device": prep.plan[0].config.device,
        "torch": torch.__version__, "cpu": cpu_model(), "threads": torch.get_num_threads(),
    }
    write_thresholds(th)
    from tabulate import tabulate

    print(tabulate(table, headers=["variant", "dataset", "n", "mean", "std", "min seed",
                                   "threshold"], tablefmt="simple", disable_numparse=True))
    print(f"wrote {th_path} ({rule}; {prep.trained} runs trained, {len(prep.reused)} reused); "
          f"review it (git diff {th_path}) and commit")
    return 1 if bad else 0


# --- speed: compare pytest-benchmark autosaves, warn only -----------------------------------

@dataclass
class PerfReport:
    lines: list[str]
    warnings: list[str]


def _load_bench(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            return None
        return data
    except (OSError, ValueError):
        return None


def _fingerprint(data: dict[str, Any]) -> tuple[Any, ...]:
    """Same machine: host name, CPU model and count (pytest-benchmark's machine_info)."""
    mi = data.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    return (mi.get("node"), cpu.get("brand_raw") or mi.get("processor"), cpu.get("count"))


def _saves(bench_dir: Path) -> list[Path]:
    return sorted(bench_dir.glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def resolve_perf(bench_dir: Path, baseline: str | None = None,
                 slowdown: float = PERF_SLOWDOWN) -> PerfReport:
    """Latest autosave vs `baseline` (a path or a file-name prefix such as 0003) or else the
    newest earlier save of the same machine; a named baseline that does not exist is an error.
    """
    saves = _saves(bench_dir)
    named: Path | None = None
    if baseline:
        if Path(baseline).is_file():
            named = Path(baseline)
        else:
            hits = [p for p in saves if p.name.startswith(baseline)]
            if len(hits) != 1:
                raise UsageError(f"--perf-baseline {baseline!r} matches {len(hits)} saved "
                                 f"benchmark files under {bench_dir}; give a path or a unique "
                                 "prefix such as 0001")
            named = hits[0]
    loaded = [(p, d) for p in saves if (d := _load_bench(p)) is not None]
    bad = [p for p in saves if p not in {q for q, _ in loaded}]
    warnings = [f"perf: {p} is not a pytest-benchmark JSON file; skipped" for p in bad]
    if not loaded:
        return PerfReport([f"perf: no saved benchmarks under {bench_dir}; run `make perf-micro` "
                           "(twice, to have a baseline)"], warnings)
    # newest by the time pytest-benchmark wrote into the file, then by its counter
    loaded.sort(key=lambda pd: (str(pd[1].get("datetime", "")), pd[0].parent.name, pd[0].name))
    latest_p, latest = loaded[-1]
    if named is not None:
        base = _load_bench(named)
        if base is None:
            raise UsageError(f"--perf-baseline {named} is not a pytest-benchmark JSON file")
        base_p = named
        if _fingerprint(base) != _fingerprint(latest):
            warnings.append(f"perf: baseline {named.name} was saved on another machine "
                            f"{_fingerprint(base)}; differences may be the machine's")
    else:
        same = [(p, d) for p, d in loaded[:-1] if _fingerprint(d) == _fingerprint(latest)
                and p.parent == latest_p.parent]
        if not same:
            return PerfReport([f"perf: {latest_p.name} has no earlier save from this machine "
                               "to compare with; nothing to warn about"], warnings)
        base_p, base = same[-1]
    return PerfReport(*_compare(latest_p, latest, base_p, base, slowdown, warnings))


def _compare(latest_p: Path, latest: dict[str, Any], base_p: Path, base: dict[str, Any],
             slowdown: float, warnings: list[str]) -> tuple[list[str], list[str]]:
    def stats(d: dict[str, Any]) -> dict[str, tuple[float, Any]]:
        out = {}
        for b in d["benchmarks"]:
            v = (b.get("stats") or {}).get(PERF_STAT) if isinstance(b, dict) else None
            if isinstance(b, dict) and _is_num(v) and v > 0:
                threads = (b.get("extra_info") or {}).get("threads")
                out[str(b.get("fullname") or b.get("name"))] = (float(v), threads)
        return out

    now_t, then_t = stats(latest), stats(base)
    both = set(now_t) & set(then_t)
    other_threads = {n for n in both if now_t[n][1] != then_t[n][1]}
    if other_threads:
        warnings.append(f"perf: {len(other_threads)} benchmarks ran with another thread count "
                        f"than in {base_p.name}; not compared")
    now = {n: t for n, (t, _) in now_t.items()}
    then = {n: t for n, (t, _) in then_t.items()}
    common = sorted(both - other_threads)
    slower = 0
    for name in common:
        ratio = now[name] / then[name]
        if ratio > 1 + slowdown:
            slower += 1
            warnings.append(f"perf: {name} is {100 * (ratio - 1):.0f}% slower than baseline "
                            f"{base_p.name} ({PERF_STAT} {_fmt_s(now[name])} vs "
                            f"{_fmt_s(then[name])})")
    lines = [f"perf: {latest_p.name} vs {base_p.name}: {len(common)} benchmarks compared "
             f"({PERF_STAT} time), {slower} more than {100 * slowdown:.0f}% slower"
             + (f", {len(set(now) - set(then))} new" if set(now) - set(then) else "")
             + "; speed never fails the gate"]
    return lines, warnings


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def _print_perf(perf: PerfReport | None) -> None:
    if perf is None:
        return
    for line in perf.lines:
        print(line)
    for w in perf.warnings:
        _warn(w)


# --- argparse -------------------------------------------------------------------------------

def add_parsers(sub: Any) -> None:
    """Add `check` and `calibrate` to the CLI's subparsers (their parser class raises
    UsageError, so argparse mistakes are one line and exit 2 like the rest of the CLI)."""
    from bench.suites import PROFILES

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--suite", default="variants")
        p.add_argument("--profile", default="smoke", help=", ".join(PROFILES))
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
    ca.add_argument("--k-sigma", type=float, default=K_SIGMA, metavar="K")
    ca.add_argument("--min-margin", type=float, default=MIN_MARGIN, metavar="M")
