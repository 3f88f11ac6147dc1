"""`lenet-bench` command line: list, show, data, run, report.

User mistakes print one line `lenet-bench: error: …` and exit 2 before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from bench.errors import UsageError

PROG = "lenet-bench"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _fail(msg: str, code: int = 2) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    from bench.suites import PROFILES

    p = _Parser(prog=PROG, description="Train and compare LeNet-family networks reproducibly.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="variants (params, FLOPs, recipe), suites and profiles")
    ls.add_argument("pattern", nargs="?", help="fnmatch filter on variant names")
    fmt = ls.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument("--markdown", action="store_true",
                     help="the variant catalogue page (docs/catalogue.md) from the registry")

    sh = sub.add_parser("show", help="a variant's layer-by-layer shapes and parameters")
    sh.add_argument("variant")
    sh.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    da = sub.add_parser("data", help="fetch and verify both datasets")
    da.add_argument("--data-root", help="default ./data or $LENET_BENCH_DATA")
    da.add_argument("--verify", action="store_true", help="only verify, fetch nothing")
    da.add_argument("--datasets", nargs="+", default=None, metavar="NAME")

    ru = sub.add_parser("run", help="train a suite's runs and append their records")
    ru.add_argument("--suite", required=True)
    ru.add_argument("--profile", default="quick", help=", ".join(PROFILES))
    ru.add_argument("--variants", default=None, metavar="PATTERN", help="fnmatch, comma-sep")
    ru.add_argument("--datasets", nargs="+", default=None, metavar="NAME")
    ru.add_argument("--seeds", type=int, default=None, metavar="N")
    ru.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ru.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    ru.add_argument("--results", default="results", metavar="DIR")
    ru.add_argument("--data-root", default=None)
    ru.add_argument("--dry-run", action="store_true", help="list runs and which are done")
    ru.add_argument("--force", action="store_true", help="re-run runs that already have records")
    ru.add_argument("--keep-stale", action="store_true",
                    help="reuse records made by code that trains differently (default: retrain)")
    ru.add_argument("--yes", action="store_true", help="allow a very large grid")
    ru.add_argument("--quiet", action="store_true", help="no progress bars (CI logs)")
    ru.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local (this machine) or ray (one Ray task per run)")
    ru.add_argument("--jobs", default="auto", metavar="N|auto",
                    help="local worker processes, each with cores ÷ N threads (auto: 2 on a "
                         "CPU with 2+ cores, else 1)")
    ru.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                    help="Ray cluster to join (default: start a local Ray instance)")
    ru.add_argument("--gpus-per-run", type=float, default=None, metavar="F",
                    help="Ray GPUs per task, fractions allowed (default 1 on CUDA, else 0)")
    ru.add_argument("--cpus-per-run", type=float, default=None, metavar="N",
                    help="Ray CPUs per task (default: the torch threads each task uses)")

    rp = sub.add_parser("report", help="render report.md/.html and the summary from records")
    rp.add_argument("--results", default="results", metavar="DIR")
    rp.add_argument("--data-root", default=None, help="for the example-image figures")

    ex = sub.add_parser("export", help="records → a CSV/parquet table or MLflow runs (no training)")
    ex.add_argument("--results", default="results", metavar="DIR")
    ex.add_argument("--suite", default=None, metavar="PATTERN",
                    help="fnmatch, comma-sep (d2l = its five exercises); default all")
    ex.add_argument("--profile", default=None, metavar="PATTERN", help="default all")
    ex.add_argument("--to", choices=("table", "mlflow"), default="table")
    ex.add_argument("--format", choices=("csv", "parquet"), default=None, help="default csv")
    ex.add_argument("--out", default=None, metavar="DIR", help="default <results>/export")
    ex.add_argument("--tracking-uri", default=None, metavar="URI",
                    help="default: the local store <results>/mlflow/mlflow.db")
    ex.add_argument("--experiment", default=None, metavar="NAME", help="default lenet-bench")

    from bench.decide import add_parser as add_decide_parser
    from bench.gate import add_parsers
    from bench.gate_power import add_parser as add_gate_power_parser
    from bench.perf import add_parser as add_perf_parser

    add_parsers(sub)
    add_decide_parser(sub)
    add_gate_power_parser(sub)
    add_perf_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from bench.export import cmd_export
    from bench.gate import cmd_calibrate, cmd_check
    from bench.gate_power import cmd_gate_power
    from bench.perf import cmd_perf

    try:
        args = build_parser().parse_args(argv)
        handler = {
            "list": cmd_list,
            "show": cmd_show,
            "data": cmd_data,
            "run": cmd_run,
            "report": cmd_report,
            "check": cmd_check,
            "calibrate": cmd_calibrate,
            "gate-power": cmd_gate_power,
            "perf": cmd_perf,
            "export": cmd_export,
            "decide": _decide,
        }[args.command]
        return handler(args)
    except UsageError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted; finished runs are recorded, re-run to resume", 130)
    except BrokenPipeError:  # `lenet-bench list | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a data problem is the user's to fix, with the command to run
        from bench.data import DataError

        if isinstance(e, DataError):
            return _fail(str(e))
        raise


# --- list / show ----------------------------------------------------------------------------

def variant_info(name: str) -> dict[str, Any]:
    import torch

    from bench.metrics import flops_per_example
    from variants import count_total_params, count_trainable_params, create_variant, get_spec

    spec = get_spec(name)
    torch.manual_seed(0)
    model = create_variant(name)
    x = torch.zeros(1, 1, model.input_size, model.input_size)
    pub = spec.published
    return {
        "name": name,
        "family": spec.family,
        "params": count_trainable_params(model),
        "params_total": count_total_params(model),
        "params_declared": spec.params,
        "flops_per_example": flops_per_example(model, x),
        "input_size": model.input_size,
        "in_default_suites": spec.in_default_suites,
        "recipe": spec.recipe.to_dict(),
        "transform": spec.recipe.transform.describe(),
        "published": None if pub is None else {
            "metric": pub.metric, "value": pub.value, "dataset": pub.dataset, "note": pub.note
        },
        "source": spec.source,
        "description": spec.description,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.defaults.items()},
    }


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.suites import PROFILES, available_suites
    from variants import list_variants

    names = list_variants(args.pattern)
    if args.pattern and not names:
        raise UsageError(f"no variant matches {args.pattern!r}; variants: "
                         f"{', '.join(list_variants())}")
    if args.markdown:  # the registry as docs/catalogue.md shows it
        from report.catalogue import catalogue_markdown

        print(catalogue_markdown(names), end="")
        return 0
    infos = [variant_info(n) for n in names]
    if args.json:
        out = {
            "variants": infos,
            "suites": available_suites(),
            "profiles": {k: v.description for k, v in PROFILES.items()},
        }
        print(json.dumps(out, indent=2))
        return 0
    rows = []
    for i in infos:
        r = i["recipe"]
        pub = i["published"]
        pub_s = "–" if not pub or pub["value"] is None else f"{pub['metric']} {pub['value']:g}"
        rows.append([
            i["name"], f"{i['params']:,}", f"{i['flops_per_example']:,}",
            f"{i['input_size']}²", r["dataset"],
            f"{r['optimizer']} lr {r['lr']:g} bs {r['batch_size']} × {r['num_epochs']} ep",
            pub_s + ("" if i["in_default_suites"] else " (not in default suites)"),
        ])
    print(tabulate(rows, headers=["variant", "params", "FLOPs/ex", "input", "dataset",
                                  "recipe", "published"], tablefmt="simple"))
    print("\nFLOPs/ex: forward FLOPs per example, 2 per multiply-add (torch's FlopCounterMode); "
          "a masked layer (lenet5's partial C3)\ncounts only its connected weights.")
    print(f"\nsuites: {', '.join(available_suites())}")
    print("profiles: " + "; ".join(f"{k}: {v.description}" for k, v in PROFILES.items()))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import torch
    from tabulate import tabulate

    from bench.config import coerce as coerce_value
    from bench.config import model_param_types, parse_assignments
    from variants import count_trainable_params, create_variant
    from variants.base import count_own_params
    from variants.registry import VariantError

    overrides = parse_assignments(args.set)
    try:
        types = model_param_types(args.variant)
        kw = {}
        for k, v in overrides.items():
            if k not in types:
                raise UsageError(f"variant {args.variant!r} has no option {k!r}; valid: "
                                 f"{', '.join(types) or 'none'}")
            kw[k] = coerce_value(k, v, types[k])
        model = create_variant(args.variant, **kw)
    except VariantError as e:
        raise UsageError(str(e)) from None
    rows: list[list[str]] = []
    hooks = []
    x = torch.zeros(1, 1, model.input_size, model.input_size)
    rows.append(["input", "", str(tuple(x.shape[1:])), "0"])

    def make_hook(name: str, mod: torch.nn.Module) -> Any:
        def hook(_m: Any, _i: Any, out: torch.Tensor) -> None:
            own = count_own_params(mod)
            rows.append([name, type(mod).__name__, str(tuple(out.shape[1:])), f"{own:,}"])
        return hook

    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            hooks.append(mod.register_forward_hook(make_hook(name, mod)))
        elif name and any(True for _ in mod.parameters(recurse=False)):
            hooks.append(mod.register_forward_hook(make_hook(name, mod)))
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    print(f"{args.variant}: input {model.input_size}×{model.input_size}, "
          f"{count_trainable_params(model):,} trainable parameters")
    print(tabulate(rows, headers=["layer", "type", "output shape", "params"], tablefmt="simple"))
    return 0


# --- data -----------------------------------------------------------------------------------

def cmd_data(args: argparse.Namespace) -> int:
    from bench.data import DATASETS, ensure_dataset, resolve_data_root, verify_dataset

    root = resolve_data_root(args.data_root)
    names = args.datasets or list(DATASETS)
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise UsageError(f"unknown dataset {bad[0]!r}; valid: {', '.join(DATASETS)}")
    failed = False
    for name in names:
        if args.verify:
            status = verify_dataset(name, root)
            for f, s in status.items():
                print(f"{name}: {f}: {s}")
            failed |= any(s != "ok" for s in status.values())
        else:
            raw = ensure_dataset(name, root, log=lambda m: print(m, flush=True))
            print(f"{name}: ready in {raw}")
    if failed:
        return _fail(f"verification failed under {root}; fix with: lenet-bench data "
                     f"--data-root {root}")
    return 0


# --- run ------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    """Train a suite; a suite set (`--suite d2l`) runs its member suites in order."""
    from bench.suites import suite_names

    _check_executor(args)
    names = suite_names(args.suite)
    if len(names) == 1:
        return _run_suite(args, names[0])
    # Check every member before training any; one that picks its runs from an earlier one's
    # records (d2l-ex3 from d2l-ex2) is checked as far as it can be before those exist.
    for i, name in enumerate(names):
        _run_suite(args, name, check_only=True, earlier=names[:i])
    if args.dry_run:
        return 0
    for i, name in enumerate(names):
        print(f"=== suite {name} ({i + 1}/{len(names)}) ===", flush=True)
        _run_suite(args, name, earlier=names[:i])
    return 0


def _jobs(value: str, device: str) -> int:
    """--jobs: a positive integer, or auto (2 processes on a CPU with 2+ cores, after issue
    14's measurement there: 2 one-thread runs at a time trained lenet_modern 1.41× faster
    than one two-thread run; not yet re-measured on whole suites. 1 on a GPU, which seed
    packing fills instead)."""
    import os

    from bench import device as dev

    if value == "auto":
        return 2 if not dev.is_cuda(device) and (os.cpu_count() or 1) >= 2 else 1
    try:
        jobs = int(value)
    except ValueError:
        raise UsageError(f"--jobs must be a positive integer or auto, got {value!r}") from None
    if jobs < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {jobs}")
    return jobs


def _check_executor(args: argparse.Namespace) -> None:
    """Ray options are checked (and ray imported) before anything is planned or written."""
    if args.jobs != "auto":
        _jobs(args.jobs, "cpu")  # a bad value fails before anything is planned
        if args.executor == "ray":
            raise UsageError("--jobs is for the local executor; Ray sizes tasks with "
                             "--cpus-per-run")
    if args.executor != "ray":
        if args.address or args.gpus_per_run is not None or args.cpus_per_run is not None:
            raise UsageError("--address, --gpus-per-run and --cpus-per-run need --executor ray")
        return
    from bench.executor_ray import require_ray

    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise UsageError(f"--gpus-per-run must be ≥ 0, got {args.gpus_per_run:g}")
    if args.cpus_per_run is not None and args.cpus_per_run <= 0:
        raise UsageError(f"--cpus-per-run must be > 0, got {args.cpus_per_run:g}")
    if not args.dry_run:
        require_ray()


def _run_suite(args: argparse.Namespace, name: str, *, check_only: bool = False,
               earlier: Sequence[str] = (),
               extend: Callable[[list[Any]], list[Any]] | None = None) -> int:
    """One suite: expand, train what has no record, then its analyses (if it has any).

    `extend(plan) -> runs` trains those runs instead (`decide`'s extra seeds of planned
    configurations); the suite's analyses are then left as they are."""
    from bench.config import parse_assignments
    from bench.data import ensure_dataset, resolve_data_root
    from bench.records import locked, runs_path
    from bench.runner import (
        Reuse,
        claim_todo,
        copy_identical,
        execute_plan,
        identical_elsewhere,
    )
    from bench.suites import (
        MAX_RUNS_WITHOUT_YES,
        NeedsRecords,
        expand,
        get_profile,
        load_suite,
    )

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be ≥ 1, got {args.seeds}")
    from bench import device as dev

    device = dev.resolve(args.device)
    suite = load_suite(name)
    profile = get_profile(args.profile)
    overrides = parse_assignments(args.set)
    results = Path(args.results)
    try:
        plan = expand(suite, profile, variants=args.variants, datasets=args.datasets,
                      seeds=args.seeds, overrides=overrides, device=device, results=results)
        if extend is not None:
            plan = extend(plan)
    except NeedsRecords:
        if not earlier or not (check_only or args.dry_run):
            raise
        if args.dry_run:  # a preview: say what is not known yet
            ext = suite.extension
            srcs = sorted({s for g in suite.groups
                           for s in (ext.sources(g) if ext and ext.sources else [])})
            print(f"suite {name}: its runs are picked from the records of "
                  f"{', '.join(srcs)}, known once that has run")
        return 0
    if len(plan) > MAX_RUNS_WITHOUT_YES and not args.yes and not args.dry_run:
        raise UsageError(f"{len(plan)} runs is more than {MAX_RUNS_WITHOUT_YES}; "
                         "narrow it (--variants, --seeds) or pass --yes")
    if check_only and not args.dry_run:
        return 0
    path = runs_path(results, suite.name, profile.name)
    root = resolve_data_root(args.data_root)
    for ds in sorted({r.config.dataset for r in plan}):  # the fingerprints train on them
        ensure_dataset(ds, root, log=lambda m: None if args.quiet else print(m))
    reuse = Reuse(root, keep_stale=args.keep_stale)
    current, stale, _ = reuse.split(plan, path)
    again = {r.run_id for r in reuse.todo(plan, path)}
    todo = [r for r in plan if args.force or r.run_id in again]
    if args.dry_run:
        copies = {} if args.force else identical_elsewhere(todo, results, reuse)
        state = ({r.run_id: "done" for r in current} | {r.run_id: "stale" for r in stale}
                 | {rid: "copy" for rid in copies})
        todo = [r for r in todo if r.run_id not in copies]
        for r in plan:
            ov = ",".join(f"{k}={v}" for k, v in sorted(r.overrides.items()))
            print(f"{state.get(r.run_id, 'todo'):<5}  {r.run_id}  {r.config.variant:<16} "
                  f"{r.config.dataset:<14} seed={r.config.seed} epochs={r.config.num_epochs} "
                  f"{ov}")
        copy = f", {len(copies)} to copy from another profile" if copies else ""
        print(f"{len(plan)} runs: {len(plan) - len(todo) - len(copies)} done{copy}, "
              f"{len(todo)} to train (suite {suite.name}, profile {profile.name}, "
              f"device {device})")
        return 0
    if not args.force:
        _say_reuse(len(current), stale, reuse.verdicts, keep=args.keep_stale)
    if todo and not args.force:
        with locked(path, timeout=0.5):
            todo, copied = copy_identical(todo, results, reuse)
        if copied:
            print(f"copied {sum(copied.values())} runs with identical configs, made by this "
                  f"code, from profile {', '.join(sorted(copied))} (not trained again)")
    ext = suite.extension
    if todo and not args.force and ext is not None and ext.before_train is not None:
        from bench.fingerprint import fingerprints

        # one probe process for every record the extension may judge one by one (is_current)
        fingerprints([r.config for r in todo], root)
        with locked(path, timeout=0.5):
            todo, said = ext.before_train(todo, suite, profile.name, results, reuse.is_current)
        if said:
            print(said)
    if not todo:
        print(f"nothing to train: all {len(plan)} runs of suite {suite.name}, profile "
              f"{profile.name} already have records in {path} (use --force to re-run)")
    else:
        with locked(path, timeout=0.5):
            todo = claim_todo(todo, path, fresh=args.force, reuse=reuse)
            print(f"suite {suite.name}, profile {profile.name}: {len(todo)} to train, "
                  f"{len(plan) - len(todo)} already done; device {device}", flush=True)
            t0 = time.perf_counter()
            jobs = _jobs(args.jobs, device)
            if args.executor == "ray":
                from bench.executor_ray import execute_plan_ray

                counts = execute_plan_ray(
                    todo, results, root, quiet=args.quiet, address=args.address,
                    gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run)
            elif jobs > 1 and len(todo) > 1:
                from bench.executor_pool import execute_plan_pool

                counts = execute_plan_pool(todo, results, root, jobs=jobs, quiet=args.quiet)
            else:
                counts = execute_plan(todo, results, root, quiet=args.quiet)
            wall = time.perf_counter() - t0
        print(f"trained {len(todo)} runs in {wall:.1f} s: " +
              ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if ext is not None and ext.after_train is not None and extend is None:  # d2l analyses
        ext.after_train(suite, profile, plan, results, root, force=args.force,
                        user_overrides=overrides)
    from report.summary import summary_rows, write_summary

    out = write_summary(results)
    _print_suite_summary(path, summary_rows)
    print(f"records: {path}\nsummary: {out}")
    return 0


def _say_reuse(n_current: int, stale: list[Any], verdicts: dict[str, str], *,
               keep: bool) -> None:
    """Reuse is never silent: how many records were made by this code, and for the others,
    why not, in the fingerprint's own words (a changed code is said only when it is one)."""
    from bench.fingerprint import why_not

    if n_current:
        print(f"reused {n_current} records made by this code")
    by_why: dict[str, list[Any]] = {}
    for r in stale:
        by_why.setdefault(why_not(verdicts[r.run_id]), []).append(r)
    for why, runs in by_why.items():
        names = ", ".join(sorted({r.config.variant for r in runs}))
        if keep:
            print(f"kept {len(runs)} stale records ({names}): {why}, reused because of "
                  "--keep-stale")
        else:
            print(f"{len(runs)} records were {why} ({names}): training them again "
                  "(--keep-stale reuses them)")


def _print_suite_summary(path: Path, summary_rows: Any) -> None:
    from tabulate import tabulate

    from bench.records import latest_by_id, read_records
    from report.summary import HEADERS

    recs = list(latest_by_id(read_records(path)).values())
    if recs:
        print(tabulate(summary_rows(recs), headers=HEADERS, tablefmt="simple"))


def _decide(args: argparse.Namespace) -> int:
    """`decide`: the library trains, the report's comparisons judge (joined here alone)."""
    from bench.decide import cmd_decide
    from report.decisions import RULE
    from report.judged import current

    return cmd_decide(args, _run_suite, current, RULE, _jobs(args.jobs, "cpu"))


# --- report ---------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root
    from report.render import render_report
    from report.summary import write_summary

    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"no results directory {results}; run `lenet-bench run` first")
    summary = write_summary(results)
    md, html = render_report(results, data_root=resolve_data_root(args.data_root))
    print(f"wrote {md}\nwrote {html}\nwrote {summary}")
    return 0
