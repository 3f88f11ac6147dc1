"""Records → groups of seeds: what every section of the report is computed from.

A group is one (suite, profile, dataset, variant, overrides) cell; its seeds are the sample.
Every ordering here is explicit so the same records always give the same report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import overrides_label
from bench.records import Record, all_runs_files, latest_by_id, read_records
from report.stats import summarize


def is_d2l(suite: str) -> bool:
    """The d2l exercise suites get their own section; every other suite is on the leaderboard."""
    return suite.startswith("d2l")


def load_all(results: Path) -> list[Record]:
    """Latest record per run id of every runs.jsonl, sorted by (suite, profile, run id)."""
    out: list[Record] = []
    for path in all_runs_files(results):
        out.extend(latest_by_id(read_records(path)).values())
    return sorted(out, key=lambda r: (r["suite"], r["profile"], r["run_id"]))


def dedupe(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """One record per (suite, profile, variant, dataset, overrides, device, seed): the latest.

    A run id hashes the whole config, so a schema change (a new config field) gives the same
    experiment a new id and the records file keeps both; counting both would double a seed.
    Returns (kept, superseded).
    """
    best: dict[tuple[Any, ...], Record] = {}
    for r in records:
        key = (r["suite"], r["profile"], r["variant"], r["dataset"],
               overrides_label(r.get("overrides"), empty=""), r["config"].get("device"), r["seed"])
        old = best.get(key)
        if old is None or (_ended(r), r["run_id"]) > (_ended(old), old["run_id"]):
            best[key] = r
    kept = {id(r) for r in best.values()}
    return ([r for r in records if id(r) in kept], [r for r in records if id(r) not in kept])


def _ended(r: Record) -> str:
    return str(r["env"].get("ended") or "")


@dataclass
class Group:
    suite: str
    profile: str
    dataset: str
    variant: str
    overrides: str
    device: str = "?"
    records: list[Record] = field(default_factory=list)
    label: str = ""

    @property
    def runset(self) -> str:
        return f"{self.suite}/{self.profile}"

    @property
    def ok(self) -> list[Record]:
        return sorted((r for r in self.records if r["status"] == "ok"), key=lambda r: r["seed"])

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    def values(self, key: str = "test_acc") -> list[float]:
        return [float(r["metrics"][key]) for r in self.ok if r["metrics"].get(key) is not None]

    def accuracy(self) -> dict[str, Any]:
        return summarize(self.values())

    def mean_acc(self) -> float:
        m = self.accuracy()["mean"]
        return -1.0 if m is None else m

    def mean(self, *path: str) -> float | None:
        """Mean over the finished seeds of a nested numeric field (None where no seed has it)."""
        vals = []
        for r in self.ok:
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                vals.append(float(v))
        return summarize(vals)["mean"]

    def first(self, *path: str) -> Any:
        """A field that is the same for every seed (params, FLOPs): from the first record."""
        for r in sorted(self.records, key=lambda r: r["seed"]):
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None and v != {}:
                return v
        return None


def _shared_recipe(groups: list[Group]) -> dict[str, set[str]]:
    """Per run set, the override keys every one of its records sets (equal terms' shared
    recipe): the recipe column shows them, so a label need not repeat them."""
    out: dict[str, set[str]] = {}
    for g in groups:
        for r in g.records:
            keys = set(r.get("overrides") or {})
            out[g.runset] = keys if g.runset not in out else out[g.runset] & keys
    return out


def _short_label(g: Group, keys: set[str]) -> str:
    """The variant and its overrides less `keys`."""
    ov = {k: v for k, v in (g.records[0].get("overrides") or {}).items() if k not in keys}
    rest = overrides_label(ov, empty="")
    return g.variant + (f" {rest}" if rest else "")


def group_records(records: list[Record], *, include_d2l: bool = False) -> list[Group]:
    """Groups of seeds, labelled; sorted by dataset then accuracy. The leaderboard leaves out
    the d2l suites (they have their own section); the run summary keeps them."""
    cells: dict[tuple[str, ...], Group] = {}
    for r in records:
        if is_d2l(r["suite"]) and not include_d2l:
            continue
        key = (r["suite"], r["profile"], r["dataset"], r["variant"],
               overrides_label(r.get("overrides"), empty=""), str(r["config"].get("device") or "?"))
        if key not in cells:
            cells[key] = Group(*key)
        cells[key].records.append(r)
    groups = list(cells.values())
    multi = len({g.runset for g in groups}) > 1
    devices = len({g.device for g in groups}) > 1
    shared = _shared_recipe(groups)
    short = {id(g): _short_label(g, shared.get(g.runset, set())) for g in groups}
    alike = Counter((g.runset, g.dataset, short[id(g)]) for g in groups)
    for g in groups:
        g.label = g.variant + (f" {g.overrides}" if g.overrides else "")
        # unless two groups of its run set and dataset would then read alike
        if shared.get(g.runset) and alike[(g.runset, g.dataset, short[id(g)])] == 1:
            g.label = short[id(g)]
        if devices:
            g.label += f" ({g.device})"
        if multi:
            g.label += f" [{g.runset}]"
    return sorted(groups, key=lambda g: (g.dataset, -g.mean_acc(), g.label))


def by_dataset(groups: list[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        out[g.dataset].append(g)
    return dict(sorted(out.items()))


REFERENCE = {"fashion-mnist": "lenet_d2l", "mnist": "lenet5"}


def reference_group(groups: list[Group]) -> Group | None:
    """The dataset's baseline (lenet_d2l / lenet5, recipe as is) if it has results, else best."""
    scored = [g for g in groups if g.ok]
    if not scored:
        return None
    name = REFERENCE.get(scored[0].dataset)
    for g in scored:
        if g.variant == name and not g.overrides:
            return g
    return min(scored, key=lambda g: (-g.mean_acc(), g.label))
