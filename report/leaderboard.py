"""Section 2: the leaderboard per dataset; diverged and failed runs are counted and listed."""

from __future__ import annotations

from report.collect import Group, by_dataset
from report.doc import Bullets, Cell, Code, Heading, Section, Table, cell, text
from report.fmt import acc_pm, ci, count, duration, mega, pct

HEADERS = (
    "variant", "n", "diverged", "failed", "test acc (mean ± std)", "95% CI", "top-1 err",
    "top-3 err", "top-5 err", "params", "FLOPs/ex", "train ex/s", "infer ex/s (bs 1024)",
    "infer ex/s (bs 1)", "wall/run",
)
NUMERIC = (False,) + (True,) * (len(HEADERS) - 1)


def row(g: Group) -> tuple[Cell, ...]:
    a = g.accuracy()
    errs = [g.mean("metrics", f"top{k}_error") for k in (1, 3, 5)]
    params, flops = g.first("metrics", "params_trainable"), g.first("metrics", "flops_per_example")
    train = g.mean("timing", "train_examples_per_s")
    inf = [g.mean("timing", "inference_examples_per_s", bs) for bs in ("1024", "1")]
    wall = g.mean("timing", "wall_seconds")
    return (
        Cell(g.label),
        cell(a["n"], str(a["n"])),
        cell(g.count("diverged"), str(g.count("diverged"))),
        cell(g.count("failed"), str(g.count("failed"))),
        cell(a["mean"], acc_pm(a)),
        cell(a["ci_low"], ci(a)),
        *(cell(e, pct(e)) for e in errs),
        cell(params, count(params)),
        cell(flops, mega(flops)),
        cell(train, count(train)),
        *(cell(x, count(x)) for x in inf),
        cell(wall, duration(wall)),
    )


def _unfinished(groups: list[Group]) -> list[tuple]:
    items = []
    for g in groups:
        for r in sorted(g.records, key=lambda r: r["seed"]):
            if r["status"] == "ok":
                continue
            what = (f"diverged at epoch {r.get('diverged_epoch')}" if r["status"] == "diverged"
                    else "failed")
            items.append(text(Code(g.label), f", seed {r['seed']} ({g.runset}), {what}: "
                              f"{r.get('error') or 'no error recorded'} (run ",
                              Code(r["run_id"]), ")"))
    return items


def leaderboard_section(groups: list[Group]) -> Section:
    sec = Section("Leaderboard", "leaderboard")
    if not groups:
        sec.para("No records of the variant suites yet.")
        return sec
    sec.para(
        "One row per variant (and overrides) and dataset, sorted by mean test accuracy. n: runs "
        "that finished; diverged and failed runs are counted beside it and listed below, never "
        "dropped, but only finished runs enter the statistics. Top-k error: the label is not "
        "among the k highest scores. FLOPs per example: forward pass, torch's FlopCounterMode "
        "(2 per multiply-add). train ex/s: median over epochs of training examples per second "
        "over the timed steps only (forward, loss, backward, optimizer step; no evaluation, no "
        "warm-up), mean over seeds; infer ex/s: forward passes at a fixed batch size after "
        "warm-up. Throughput and wall time compare only within one machine. d2l exercise runs "
        "are in their own section."
    )
    for ds, gs in by_dataset(groups).items():
        sec.add(Heading(3, ds, f"leaderboard-{ds}"),
                Table(HEADERS, tuple(row(g) for g in gs), NUMERIC))
        bad = _unfinished(gs)
        if bad:
            sec.para(f"Runs that did not finish on {ds}:")
            sec.add(Bullets(tuple(bad)))
    return sec
