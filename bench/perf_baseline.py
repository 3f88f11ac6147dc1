"""`check --perf`: compare the newest pytest-benchmark autosave (`make perf-micro`) with a
baseline from the same machine and report slowdowns as warnings only.

Speed never fails the gate: CI CPUs are shared and noisy, so a slower run is worth a look,
not a red build. Kept apart from the accuracy gate (bench.gate), which only prints the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError, warn
from bench.thresholds import is_num

PERF_SLOWDOWN = 0.25  # `check --perf` warns when a benchmark is this much slower
PERF_STAT = "min"  # the least noise-sensitive pytest-benchmark statistic


@dataclass
class PerfReport:
    lines: list[str]
    warnings: list[str]


def _load_bench(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            return None
        return data
    except (OSError, ValueError):
        return None


def _fingerprint(data: dict[str, Any]) -> tuple[Any, ...]:
    """Same machine: host name, CPU model and count (pytest-benchmark's machine_info)."""
    mi = data.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    return (mi.get("node"), cpu.get("brand_raw") or mi.get("processor"), cpu.get("count"))


def _saves(bench_dir: Path) -> list[Path]:
    return sorted(bench_dir.glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def resolve_perf(bench_dir: Path, baseline: str | None = None,
                 slowdown: float = PERF_SLOWDOWN) -> PerfReport:
    """Latest autosave vs `baseline` (a path or a file-name prefix such as 0003) or else the
    newest earlier save of the same machine; a named baseline that does not exist is an error.
    """
    saves = _saves(bench_dir)
    named: Path | None = None
    if baseline:
        if Path(baseline).is_file():
            named = Path(baseline)
        else:
            hits = [p for p in saves if p.name.startswith(baseline)]
            if len(hits) != 1:
                raise UsageError(f"--perf-baseline {baseline!r} matches {len(hits)} saved "
                                 f"benchmark files under {bench_dir}; give a path or a unique "
                                 "prefix such as 0001")
            named = hits[0]
    loaded = [(p, d) for p in saves if (d := _load_bench(p)) is not None]
    bad = [p for p in saves if p not in {q for q, _ in loaded}]
    warnings = [f"perf: {p} is not a pytest-benchmark JSON file; skipped" for p in bad]
    if not loaded:
        return PerfReport([f"perf: no saved benchmarks under {bench_dir}; run `make perf-micro` "
                           "(twice, to have a baseline)"], warnings)
    # newest by the time pytest-benchmark wrote into the file, then by its counter
    loaded.sort(key=lambda pd: (str(pd[1].get("datetime", "")), pd[0].parent.name, pd[0].name))
    latest_p, latest = loaded[-1]
    if named is not None:
        base = _load_bench(named)
        if base is None:
            raise UsageError(f"--perf-baseline {named} is not a pytest-benchmark JSON file")
        base_p = named
        if _fingerprint(base) != _fingerprint(latest):
            warnings.append(f"perf: baseline {named.name} was saved on another machine "
                            f"{_fingerprint(base)}; differences may be the machine's")
    else:
        same = [(p, d) for p, d in loaded[:-1] if _fingerprint(d) == _fingerprint(latest)
                and p.parent == latest_p.parent]
        if not same:
            return PerfReport([f"perf: {latest_p.name} has no earlier save from this machine "
                               "to compare with; nothing to warn about"], warnings)
        base_p, base = same[-1]
    return PerfReport(*_compare(latest_p, latest, base_p, base, slowdown, warnings))


def _compare(latest_p: Path, latest: dict[str, Any], base_p: Path, base: dict[str, Any],
             slowdown: float, warnings: list[str]) -> tuple[list[str], list[str]]:
    def stats(d: dict[str, Any]) -> dict[str, tuple[float, Any]]:
        out = {}
        for b in d["benchmarks"]:
            v = (b.get("stats") or {}).get(PERF_STAT) if isinstance(b, dict) else None
            if isinstance(b, dict) and is_num(v) and v > 0:
                threads = (b.get("extra_info") or {}).get("threads")
                out[str(b.get("fullname") or b.get("name"))] = (float(v), threads)
        return out

    now_t, then_t = stats(latest), stats(base)
    both = set(now_t) & set(then_t)
    other_threads = {n for n in both if now_t[n][1] != then_t[n][1]}
    if other_threads:
        warnings.append(f"perf: {len(other_threads)} benchmarks ran with another thread count "
                        f"than in {base_p.name}; not compared")
    now = {n: t for n, (t, _) in now_t.items()}
    then = {n: t for n, (t, _) in then_t.items()}
    common = sorted(both - other_threads)
    slower = 0
    for name in common:
        ratio = now[name] / then[name]
        if ratio > 1 + slowdown:
            slower += 1
            warnings.append(f"perf: {name} is {100 * (ratio - 1):.0f}% slower than baseline "
                            f"{base_p.name} ({PERF_STAT} {_fmt_s(now[name])} vs "
                            f"{_fmt_s(then[name])})")
    lines = [f"perf: {latest_p.name} vs {base_p.name}: {len(common)} benchmarks compared "
             f"({PERF_STAT} time), {slower} more than {100 * slowdown:.0f}% slower"
             + (f", {len(set(now) - set(then))} new" if set(now) - set(then) else "")
             + "; speed never fails the gate"]
    return lines, warnings


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def print_perf(perf: PerfReport | None) -> None:
    if perf is None:
        return
    for line in perf.lines:
        print(line)
    for w in perf.warnings:
        warn(w)

