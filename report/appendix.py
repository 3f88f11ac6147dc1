"""The appendix: run sets the report does not lead with, each alone and said to be so.

A less complete profile of a suite (smoke beside quick, quick beside full) or the same profile
on another device is never mixed into the main tables; here it gets its own tables, with no
test, no published comparison and no verdict.
"""

from __future__ import annotations

from report.collect import group_records
from report.doc import Code, Heading, Section
from report.fmt import slug
from report.leaderboard import runset_tables
from report.runsets import Split


def appendix_section(split: Split) -> Section:
    sec = Section("Appendix: other run sets", "appendix")
    if not split.others:
        sec.para("Every suite has one run set: nothing here.")
        return sec
    sec.para("Run sets that the sections above leave out, because each suite's most complete "
             "run set leads (profile full > reference > quick > gate > smoke > others). Each is "
             "shown alone, never compared with another run set, and with no test or verdict: the "
             "same columns as the leaderboard.")
    t = split.many_devices
    for rs in split.others:
        sec.add(Heading(3, rs.title(t), slug(f"appendix-{rs.suite}-{rs.profile}-{rs.device}")))
        sec.para("Why here: ", Code(rs.title(t)), f": {split.why_not_lead(rs)}.")
        groups = group_records(split.records(rs), include_d2l=True)
        runset_tables(sec, rs, groups, "", slug(f"appendix-{rs.suite}-{rs.profile}-{rs.device}"),
                      level=4)
    return sec
