"""The d2l exercises as a suite extension: the group keys `best_of`, `analysis` and `reuse`.

Registered with bench.suites when bench.d2l is imported (a suite file that says
`extension = "d2l"` imports it); the core calls these hooks and knows nothing else of d2l.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.d2l.analyses import ANALYSES, run_analyses
from bench.d2l.rules import RULES, best_of_choices, reuse_finished
from bench.errors import UsageError
from bench.records import RunRecord
from bench.suites import Choices, Extension, Group, PlannedRun, Profile, Suite

KEYS = frozenset({"best_of", "analysis", "reuse"})


def _expect(where: str, value: Any, tp: type, what: str) -> Any:
    if not isinstance(value, tp) or isinstance(value, bool):
        raise UsageError(f"{where} must be {what}, got {value!r}")
    return value


def parse(where: str, g: dict[str, Any]) -> dict[str, Any]:
    """Validate the d2l keys of one group table; every problem is a one-line UsageError."""
    out: dict[str, Any] = {}
    if "analysis" in g:
        a = _expect(f"{where}.analysis", g["analysis"], str, "a string")
        if a not in ANALYSES:
            raise UsageError(f"{where}.analysis must be one of {', '.join(ANALYSES)}; got {a!r}")
        out["analysis"] = a
    if "reuse" in g:
        out["reuse"] = _expect(f"{where}.reuse", g["reuse"], str, "a suite name")
    if "best_of" in g:
        b = _expect(f"{where}.best_of", g["best_of"], dict, "a table {suite, rule, text}")
        unknown = sorted(set(b) - {"suite", "rule", "text"})
        if unknown:
            raise UsageError(f"{where}.best_of: unknown key(s) {', '.join(unknown)}; valid: "
                             "rule, suite, text")
        _expect(f"{where}.best_of.suite", b.get("suite"), str, "a suite name")
        rule = _expect(f"{where}.best_of.rule", b.get("rule"), str, "a rule name")
        if rule not in RULES:
            raise UsageError(f"{where}.best_of.rule must be one of {', '.join(RULES)}; "
                             f"got {rule!r}")
        _expect(f"{where}.best_of.text", b.get("text", ""), str, "a string")
        if g.get("grid"):
            raise UsageError(f"{where}: best_of and grid cannot be combined")
        out["best_of"] = dict(b)
    return out


def choices(group: Group, suite_name: str, profile: Profile, **kw: Any) -> Choices | None:
    """A `best_of` group's configurations (None: the group's own grid applies)."""
    if not group.extra.get("best_of"):
        return None
    return list(best_of_choices(group, suite_name, profile, **kw))


def sources(group: Group) -> list[str]:
    return [group.extra["best_of"]["suite"]] if group.extra.get("best_of") else []


def before_train(todo: list[PlannedRun], suite: Suite, profile: str, results: Path,
                 current: Callable[[PlannedRun, RunRecord], bool]
                 ) -> tuple[list[PlannedRun], str | None]:
    """Copy finished runs, made by this code, from the suite a `reuse` group names."""
    names = sorted({g.extra["reuse"] for g in suite.groups if g.extra.get("reuse")})
    if not names:
        return todo, None
    todo, reused = reuse_finished(todo, suite, profile, results, current=current)
    if not reused:
        return todo, None
    return todo, (f"reused {len(reused)} finished runs with identical configs, made by this "
                  f"code, from {', '.join(names)}")


def after_train(suite: Suite, profile: Profile, plan: list[PlannedRun], results: Path,
                data_root: Path, **kw: Any) -> None:
    """The groups' analyses (summary.json and figures), when any group asks for one."""
    if any(g.extra.get("analysis") for g in suite.groups):
        run_analyses(suite, profile, plan, results, data_root, **kw)


EXTENSION = Extension(name="d2l", keys=KEYS, parse=parse, choices=choices, sources=sources,
                      before_train=before_train, after_train=after_train)
