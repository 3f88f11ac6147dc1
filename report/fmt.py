"""Number formatting shared by every section, so one quantity always reads the same way."""

from __future__ import annotations

import json
import math
import re
from typing import Any

DASH = "–"


def pct(x: float | None, digits: int = 2) -> str:
    return DASH if x is None else f"{100 * x:.{digits}f}%"


def pp(x: float | None, digits: int = 2) -> str:
    """A difference of proportions in percentage points, signed."""
    return DASH if x is None else f"{100 * x:+.{digits}f} pp"


def acc_pm(s: dict[str, Any]) -> str:
    """mean ± sample std in percent (the std is omitted for n = 1)."""
    if s["mean"] is None:
        return DASH
    if s["std"] is None:
        return pct(s["mean"])
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}%"


def pval(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def num(x: float | None, digits: int = 2) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def count(x: float | None) -> str:
    return DASH if x is None else f"{round(x):,}"


def mega(x: float | None) -> str:
    return DASH if x is None else f"{x / 1e6:.3f} M"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def level(v: Any) -> str:
    """A factor value as a short label: 0.1, [6, 16], relu, pool=max activation=relu."""
    if v is None:
        return "default"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return " ".join(f"{k}={level(x)}" for k, x in sorted(v.items()))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(level(x) for x in v) + "]"
    return str(v)


def level_key(v: Any) -> tuple[Any, ...]:
    """Natural order of factor values: numbers by value, lists by length then elements."""
    if v is None:
        return (0,)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, float(v))
    if isinstance(v, (list, tuple)):
        return (2, len(v), tuple(level_key(x) for x in v))
    if isinstance(v, dict):
        return (3, json.dumps(v, sort_keys=True, default=str))
    return (4, str(v))


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


TOO_FEW = "too few seeds to test"


def interval(iv: tuple[float, float] | None) -> str:
    """An accuracy interval in percent, [lo, hi]; the caller has clipped it to [0, 100]%."""
    return DASH if iv is None else f"[{100 * iv[0]:.2f}, {100 * iv[1]:.2f}]"


def pp_interval(lo: float | None, hi: float | None) -> str:
    return DASH if lo is None or hi is None else f"[{pp(lo)}, {pp(hi)}]"


def acc_cell(s: dict[str, Any], values: list[float], min_n: int = 3) -> str:
    """mean ± std from `min_n` seeds on; below that the seeds themselves, never a spread."""
    if s["mean"] is None:
        return DASH
    if s["n"] >= min_n:
        return acc_pm(s)
    return f"{pct(s['mean'])} (seeds: {', '.join(f'{100 * v:.2f}' for v in values)})" \
        if s["n"] > 1 else pct(s["mean"])
