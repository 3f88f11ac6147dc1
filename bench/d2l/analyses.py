"""The d2l analyses' entry point: a suite's records and saved weights in, its
`analysis/summary.json` and figures out, rewritten only when missing or out of date.

Every analysis is a pure function of the records, the weights and the datasets: images are
chosen by fixed rules, noise is seeded, the probe's folds are seeded, and floats are rounded,
so the same inputs give the same JSON. The summary keeps a digest of those inputs and of the
analysis code, so a re-run knows when it has nothing to redo.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.d2l.ablation import ablation_summary, epochs_summary
from bench.d2l.activations import activations_summary
from bench.d2l.common import Log, Record
from bench.d2l.ood import ood_summary
from bench.fsio import atomic_write

if TYPE_CHECKING:
    from bench.suites import PlannedRun, Profile, Suite

ANALYSIS_VERSION = 1
ANALYSES = ("ablation", "epochs", "activations", "ood")
#: Analyses that compute from the weights on this CPU (float32 forward passes, then a probe
#: or softmax), so their third decimal depends on its kernel set; the others only read records.
PER_CPU = ("activations", "ood")

#: The code an analysis is a function of (part of its digest): every module of this package,
#: its figure code (figures.py) included.
_PACKAGE_DIR = Path(__file__).parent


def analysis_dir(results: Path, suite: str, profile: str) -> Path:
    return results / suite / profile / "analysis"


def _plan_records(plan: list[PlannedRun], results: Path, suite: str, profile: str
                  ) -> list[Record]:
    """The latest record of every planned run that has one, in plan order."""
    from bench.records import latest_by_id, read_records, runs_path

    recs = latest_by_id(read_records(runs_path(results, suite, profile)))
    return [recs[r.run_id] for r in plan if r.run_id in recs]


def _digest(records: list[Record], plan: list[PlannedRun], kinds: list[str],
            user_overrides: dict[str, Any] | None) -> str:
    """What the analysis is a function of: the plan (groups, levels, picks), the records
    (whose outcomes and per-epoch history fingerprint the weights, which are not committed)
    and the analysis code itself."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": ANALYSIS_VERSION, "kinds": kinds,
                         "set": user_overrides or {}}, sort_keys=True).encode())
    for mod in sorted(_PACKAGE_DIR.glob("*.py")):
        h.update(mod.read_bytes())
    for run in plan:
        h.update(json.dumps([run.run_id, run.memberships], sort_keys=True).encode())
    for r in sorted(records, key=lambda r: r["run_id"]):
        h.update(json.dumps([r["run_id"], r.get("status"), r.get("metrics", {}).get("test_acc"),
                             r.get("history")], sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_analyses(
    suite: Suite,
    profile: Profile,
    plan: list[PlannedRun],
    results: Path,
    data_root: Path,
    *,
    force: bool = False,
    user_overrides: dict[str, Any] | None = None,
    log: Log = print,
) -> Path | None:
    """(Re)write the suite's analysis/summary.json and figures if missing or out of date."""
    kinds = [k for k in ANALYSES if any(g.extra.get("analysis") == k for g in suite.groups)]
    if not kinds:
        return None
    records = _plan_records(plan, results, suite.name, profile.name)
    out_dir = analysis_dir(results, suite.name, profile.name)
    summary_path = out_dir / "summary.json"
    if not records:
        log(f"analysis: no records of suite {suite.name} yet; nothing analysed")
        return None
    digest = _digest(records, plan, kinds, user_overrides)
    if summary_path.is_file() and not force:
        try:
            old = json.loads(summary_path.read_text())
        except ValueError:
            old = {}
        figs = old.get("figures", [])
        if old.get("inputs", {}).get("digest") == digest and all(
                (out_dir / f).is_file() for f in figs):
            log(f"analysis: up to date: {summary_path}")
            return summary_path
    if {"activations", "ood"} & set(kinds):
        from bench.records import weights_path

        missing = [r["run_id"] for r in records if r.get("status") == "ok"
                   and not weights_path(results, suite.name, profile.name, r["run_id"]).is_file()]
        if missing and summary_path.is_file():
            # Weights are not committed: a fresh checkout must not replace a good analysis
            # with one of fewer networks.
            log(f"analysis: weights of {len(missing)} run(s) are missing (they are not "
                f"committed); keeping {summary_path}; `--force` retrains and re-analyses")
            return summary_path
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = {g.name: g for g in suite.groups}
    summary: dict[str, Any] = {
        "suite": suite.name,
        "profile": profile.name,
        "description": suite.description,
        "analysis_version": ANALYSIS_VERSION,
        "inputs": {
            "digest": digest,
            "run_ids": sorted(r["run_id"] for r in records),
            "statuses": dict(sorted(Counter(r.get("status") for r in records).items())),
        },
    }
    figures: list[str] = []
    answers: list[str] = []
    for kind in kinds:
        names = [g.name for g in suite.groups if g.extra.get("analysis") == kind]
        if kind == "ablation":
            section = ablation_summary(records, plan, [groups[n] for n in names],
                                       user_overrides)
        elif kind == "epochs":
            section = epochs_summary(records, names)
        elif kind == "activations":
            section = activations_summary(records, names, results, suite.name, profile.name,
                                          data_root, out_dir)
        else:
            section = ood_summary(records, names, results, suite.name, profile.name,
                                  data_root, out_dir)
        figures += section.pop("figures", [])
        summary[kind] = section
        answers.append(section["answer"])
    summary["figures"] = figures
    summary["answer"] = " ".join(answers)
    per_cpu = [k for k in kinds if k in PER_CPU]
    if per_cpu:
        from bench.fingerprint import kernel_set

        summary["computed_on"] = {
            "kernels": kernel_set(), "per_cpu": per_cpu,
            "note": "these sections run the saved networks forward in float32 on this CPU: "
                    "another kernel set (AVX2, AVX-512) can move their numbers in the third "
                    "decimal; `inputs.digest` (up to date or not) never depends on the CPU"}
    atomic_write(summary_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    log(f"analysis: wrote {summary_path}" + (f" and {len(figures)} figures" if figures else ""))
    return summary_path
