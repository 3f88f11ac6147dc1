"""Markdown summary per suite/profile from the records alone (no retraining)."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from bench.fsio import atomic_write
from bench.records import all_runs_files, latest_by_id, read_records
from report.collect import Record, dedupe, group_records
from report.fmt import count, pct
from report.leaderboard import row

HEADERS = [
    "variant", "dataset", "n", "test acc", "95% CI", "top-3 err",
    "train ex/s", "params", "diverged", "failed", "did not train",
]


def summary_rows(records: list[Record]) -> list[list[str]]:
    """One row per (variant, overrides, dataset) group of seeds, sorted by mean accuracy.

    The same grouping and statistics as the report's leaderboard (report.collect), so the
    table printed after a run and the report never disagree."""
    records, _ = dedupe(records)  # a seed recorded under two config schemas counts once
    rows = []
    for g in group_records(records, include_d2l=True):
        lead = row(g)  # the leaderboard's own cells: mean or seeds, CI only from 3 seeds on
        rows.append([
            g.label, g.dataset, lead[1].text, lead[5].text, lead[6].text,
            pct(g.mean("metrics", "top3_error")), count(g.mean("timing", "train_examples_per_s")),
            count(g.first("metrics", "params_trainable")),
            str(g.count("diverged")), str(g.count("failed")), lead[4].text,
        ])
    return rows


def render_summary(results: Path) -> str:
    """The Markdown summary of every suite/profile under `results`."""
    parts = [
        "# lenet-bench summary",
        "",
        "Test accuracy over seeds: mean ± sample standard deviation and the 95% Student-t "
        "confidence interval of the mean (clipped to [0, 100]%), from 3 seeds on; below that "
        "each seed's value and no interval. `did not train`: runs whose predictions collapsed "
        "onto one class. `train ex/s`: median over epochs of training "
        "examples per second (timed steps only), averaged over seeds; CPU figures are only "
        "comparable within one run on one machine.",
    ]
    files = all_runs_files(results)
    if not files:
        parts += ["", "_No records yet: run `lenet-bench run --suite variants`._"]
    for path in files:
        suite, profile = path.parent.parent.name, path.parent.name
        records = list(latest_by_id(read_records(path)).values())
        envs = {(r["env"]["device_name"], r["env"]["torch"]) for r in records if "env" in r}
        parts += ["", f"## suite `{suite}`, profile `{profile}` ({len(records)} runs)", ""]
        for dev, tv in sorted(envs):
            parts.append(f"- device: {dev}; torch {tv}")
        parts += ["", tabulate(summary_rows(records), headers=HEADERS, tablefmt="github"), ""]
    return "\n".join(parts).rstrip() + "\n"


def write_summary(results: Path) -> Path:
    out = results / "summary.md"
    atomic_write(out, render_summary(results))
    return out
