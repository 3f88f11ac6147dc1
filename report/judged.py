"""Every comparison of one run set as the report judges it, for `lenet-bench decide`.

Kept apart from report.decisions (which the sections import) so that no section imports it:
it reads the run set's records and asks the sections' own code, so `decide` and the report
can never judge one comparison two ways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report.decisions import Decision, plateau_decision


def current(suite: str, profile: str, results: Path) -> list[Decision]:
    """The suite's decisions from its records as they are now, exactly as the report makes
    them (report.significance for a leaderboard, report.d2l_answers for a d2l suite)."""
    from bench.records import latest_by_id, read_records, runs_path
    from report.collect import dedupe, group_records, is_d2l

    recs, _ = dedupe(list(latest_by_id(read_records(runs_path(results, suite, profile)))
                          .values()))
    if not recs:
        return []
    if not is_d2l(suite):
        from report.runsets import runset_of
        from report.significance import significance_tests

        tests = significance_tests([(runset_of(recs[0]), group_records(recs))])
        return [d for dt in tests for d in dt.decisions.values()]
    from report.d2l_answers import questions
    from report.exercises import memberships

    groups: dict[str, list[Any]] = {}
    for r in recs:
        for m in memberships(r):
            groups.setdefault(m["group"] or "default", []).append(m)
    out: list[Decision] = []
    for q in questions(suite, profile, groups):
        out += [c.decision for c in q.comparisons if c.decision is not None]
        if q.plateau is not None:  # the epochs question: seeds for the long runs' next look
            out.append(plateau_decision(suite, profile, q.dataset, q.group, q.levels,
                                        q.plateau))
    return out
