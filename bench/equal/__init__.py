"""The equal-terms suites as a suite extension: the group key `pick_lr`.

Registered with bench.suites when imported (a suite file that says `extension = "equal"`
imports it). `pick_lr = {suite, rule, text}` makes a group train each variant × dataset at the
lr a written rule (bench.equal.rules.RULES) picks from another suite's validation records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.equal.rules import RULES, pick_lr_choices
from bench.errors import UsageError
from bench.suites import Choices, Extension, Group, Profile, register_extension

KEYS = frozenset({"pick_lr"})


def parse(where: str, g: dict[str, Any]) -> dict[str, Any]:
    """Validate a group's pick_lr table; every problem is a one-line UsageError."""
    if "pick_lr" not in g:
        return {}
    p = g["pick_lr"]
    if not isinstance(p, dict):
        raise UsageError(f"{where}.pick_lr must be a table {{suite, rule, text}}, got {p!r}")
    unknown = sorted(set(p) - {"suite", "rule", "text"})
    if unknown:
        raise UsageError(f"{where}.pick_lr: unknown key(s) {', '.join(unknown)}; valid: rule, "
                         "suite, text")
    for key in ("suite", "rule"):
        if not isinstance(p.get(key), str):
            raise UsageError(f"{where}.pick_lr.{key} must be a string, got {p.get(key)!r}")
    if p["rule"] not in RULES:
        raise UsageError(f"{where}.pick_lr.rule must be one of {', '.join(RULES)}; "
                         f"got {p['rule']!r}")
    if not isinstance(p.get("text", ""), str):
        raise UsageError(f"{where}.pick_lr.text must be a string")
    if "lr" in g.get("grid", {}) or "lr" in g.get("set", {}):
        raise UsageError(f"{where}: pick_lr picks lr; the group cannot also set it")
    return {"pick_lr": dict(p)}


def choices(group: Group, suite_name: str, profile: Profile, **kw: Any
            ) -> Callable[[str, str], Choices] | None:
    """A pick_lr group's configurations per cell (None: the group's own grid applies)."""
    if not group.extra.get("pick_lr"):
        return None
    kw.pop("n_seeds", None)
    return pick_lr_choices(group.extra["pick_lr"], suite_name, profile, **kw)


def sources(group: Group) -> list[str]:
    return [group.extra["pick_lr"]["suite"]] if group.extra.get("pick_lr") else []


EXTENSION = register_extension(Extension(name="equal", keys=KEYS, parse=parse,
                                         choices=choices, sources=sources))
