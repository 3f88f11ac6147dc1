"""Helpers the d2l analyses share: rounding and summary statistics for the JSON, labels of
factor levels and override sets, the paired seed-by-seed comparison, configuration keys, and
reading a record's outcome.

Floats are rounded (`rnd`) and JSON-native (no NaN), so the same inputs give the same JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from bench.records import RunRecord

Record = RunRecord  # what the analyses read: records.read_records' schema
Log = Callable[[str], None]


def rnd(x: float | None, digits: int = 6) -> float | None:
    """Round for the JSON: stable across runs, JSON-native (no NaN)."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def stats_of(values: list[float]) -> dict[str, Any]:
    from bench.metrics import summarize

    s = summarize(values)
    return {k: (rnd(v) if isinstance(v, float) else v) for k, v in s.items()}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def mean_pm(s: dict[str, Any]) -> str:
    """'88.10 ± 0.30% (n=2)': ± is the sample std over seeds."""
    if s.get("mean") is None:
        return "no finished runs"
    if s.get("std") is None:
        return f"{100 * s['mean']:.2f}% (n={s['n']})"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}% (n={s['n']})"


def level_label(v: Any) -> str:
    """A factor level as text: lists as JSON ([6, 16]), None as 'default'."""
    if v is None:
        return "default"
    return v if isinstance(v, str) else json.dumps(v)


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """a − b over the seeds both have (same seed = same data order): mean, 95% CI, wins.

    Seeds move every configuration together (a slow-starting seed is slow for all), so the
    per-seed difference is far less noisy than the difference of two independent means.
    """
    from bench.metrics import summarize

    seeds = sorted(set(a) & set(b), key=int)
    diffs = [a[s] - b[s] for s in seeds]
    st = summarize(diffs)  # mean and the Student-t 95% CI of the mean
    out: dict[str, Any] = {"n": len(diffs), "mean": rnd(st["mean"]),
                           "higher_in": sum(d > 0 for d in diffs), "ci_low": None,
                           "ci_high": None, "resolved": False}
    if st["ci_low"] is not None:
        out.update(ci_low=rnd(st["ci_low"]), ci_high=rnd(st["ci_high"]),
                   resolved=bool(st["ci_low"] > 0 or st["ci_high"] < 0))
    return out


def paired_verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """a vs b (level rows): direction per seed and the paired 95% CI, in words."""
    d = paired_difference(a["test_acc_by_seed"], b["test_acc_by_seed"])
    if not d["n"]:
        return "no common finished seeds"
    text = f"higher in {d['higher_in']}/{d['n']} seeds"
    if d["n"] < 2:
        return text + " (one seed: no noise estimate)"
    ci = f"paired 95% CI [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] pp"
    return f"{text}, {ci}: " + ("beyond seed noise" if d["resolved"] else
                                f"not resolved with n={d['n']}")


def is_default(variant: str, overrides: dict[str, Any], ignore: Any = ()) -> bool:
    """Do these overrides (except keys in `ignore`) leave the recipe and defaults unchanged?"""
    from bench.config import resolve_config

    base = resolve_config(variant, None, 0)
    for k, v in overrides.items():
        if k in ignore:
            continue
        cur = base.model.get(k, getattr(base, k, None))
        if isinstance(cur, tuple):
            cur = list(cur)
        if isinstance(v, (int, float)) and isinstance(cur, (int, float)) \
                and not isinstance(v, bool):
            if float(v) != float(cur):
                return False
        elif v != cur:
            return False
    return True


def minimal_overrides(variant: str, overrides: dict[str, Any], ignore: Any = ()
                      ) -> dict[str, Any]:
    """The overrides that change something (the baseline asked for as kernel_size=5 → {})."""
    return {k: v for k, v in sorted(overrides.items())
            if k not in ignore and not is_default(variant, {k: v})}


def acc_of(r: Record) -> float | None:
    if r.get("status") != "ok":
        return None
    return (r.get("metrics") or {}).get("test_acc")
