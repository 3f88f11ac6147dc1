"""Run sets: which records may share a table, and which set of each suite the report leads with.

A run set is (suite, profile, device): records of one profile were trained to one budget on one
kind of machine, so only they may enter one statistic, table or figure. Each suite is led by its
most complete run set (profile `full` > `reference` > `quick` > `gate` > `smoke` > any other
name: full trains every variant on both datasets, reference only on its recipe's, and full
copies reference's identical runs); the others go to the appendix, which says why they are
there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from report.collect import Record

#: Most complete first. Unknown profile names rank after these, alphabetically.
PROFILE_ORDER = ("full", "reference", "quick", "gate", "smoke")


def profile_rank(profile: str) -> tuple[int, str]:
    """Sort key: a known profile by its place in PROFILE_ORDER, an unknown one last."""
    known = PROFILE_ORDER.index(profile) if profile in PROFILE_ORDER else len(PROFILE_ORDER)
    return known, profile


@dataclass(frozen=True, order=True)
class RunSet:
    suite: str
    profile: str
    device: str

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.profile}"

    def title(self, with_device: bool) -> str:
        return self.name + (f" ({self.device})" if with_device else "")


def runset_of(r: Record) -> RunSet:
    return RunSet(r["suite"], r["profile"], str(r["config"].get("device") or "?"))


@dataclass
class Split:
    """The records cut into run sets: each suite's leading one and the rest (appendix)."""

    sets: dict[RunSet, list[Record]]
    lead: list[RunSet]  # one per suite, sorted by suite
    others: list[RunSet]  # most complete first within each suite
    many_devices: bool

    def records(self, rs: RunSet) -> list[Record]:
        return self.sets.get(rs, [])

    def why_not_lead(self, rs: RunSet) -> str:
        lead = next(x for x in self.lead if x.suite == rs.suite)
        t = self.many_devices
        if lead.profile != rs.profile:
            return (f"profile {rs.profile} is less complete than {lead.title(t)}, which the "
                    "report leads with")
        return (f"the same suite and profile on another device ({rs.device}); "
                f"{lead.title(t)} has more finished runs and leads")


def _finished(recs: list[Record]) -> int:
    return sum(r["status"] == "ok" for r in recs)


def split_runsets(records: list[Record]) -> Split:
    """Group records into run sets and pick each suite's leader: the most complete profile with
    a finished run (any run where none has one), then the device with the most finished runs."""
    sets: dict[RunSet, list[Record]] = defaultdict(list)
    for r in records:
        sets[runset_of(r)].append(r)
    by_suite: dict[str, list[RunSet]] = defaultdict(list)
    for rs in sets:
        by_suite[rs.suite].append(rs)
    lead, others = [], []
    for suite in sorted(by_suite):
        ranked = sorted(by_suite[suite], key=lambda rs: (
            _finished(sets[rs]) == 0, profile_rank(rs.profile), -_finished(sets[rs]),
            -len(sets[rs]), rs.device))
        lead.append(ranked[0])
        others.extend(ranked[1:])
    devices = {rs.device for rs in sets}
    return Split(dict(sets), lead, others, len(devices) > 1)
