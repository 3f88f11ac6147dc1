"""Markdown summary per suite/profile from the records alone (no retraining)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.metrics import summarize
from bench.records import all_runs_files, latest_by_id, read_records

HEADERS = [
    "variant", "dataset", "n", "test acc (mean ± std)", "95% CI", "top-3 err",
    "train ex/s", "params", "diverged", "failed",
]


def _fmt_pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def summary_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per (variant, dataset, overrides-free group), sorted by mean accuracy."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        label = r["variant"]
        if r.get("overrides"):
            label += " " + ",".join(f"{k}={v}" for k, v in sorted(r["overrides"].items()))
        groups[(label, r["dataset"], r.get("group", ""))].append(r)
    rows = []
    for (label, dataset, _group), recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok"]
        acc = summarize([r["metrics"]["test_acc"] for r in ok])
        top3 = summarize([r["metrics"]["top3_error"] for r in ok])
        eps = summarize([r["timing"]["train_examples_per_s"] for r in ok])
        params = recs[0]["metrics"].get("params_trainable") if recs[0].get("metrics") else None
        if acc["mean"] is None:
            acc_s, ci_s = "–", "–"
        elif acc["std"] is None:
            acc_s, ci_s = _fmt_pct(acc["mean"]), "–"
        else:
            acc_s = f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f}%"
            ci_s = f"[{100 * acc['ci_low']:.2f}, {100 * acc['ci_high']:.2f}]"
        rows.append([
            label, dataset, str(acc["n"]), acc_s, ci_s, _fmt_pct(top3["mean"]),
            "–" if eps["mean"] is None else f"{eps['mean']:,.0f}",
            "–" if params is None else f"{params:,}",
            str(sum(r["status"] == "diverged" for r in recs)),
            str(sum(r["status"] == "failed" for r in recs)),
            acc["mean"] if acc["mean"] is not None else -1.0,
        ])
    rows.sort(key=lambda row: (row[1], -row[-1], row[0]))
    return [row[:-1] for row in rows]


def render_summary(results: Path) -> str:
    """The Markdown summary of every suite/profile under `results`."""
    parts = [
        "# lenet-bench summary",
        "",
        "Test accuracy over seeds: mean ± sample standard deviation, and the 95% Student-t "
        "confidence interval of the mean. `train ex/s`: median over epochs of training "
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(render_summary(results))
    tmp.replace(out)
    return out
