"""The gate's thresholds file (bench/thresholds.toml): its schema, strict loading, atomic
rewriting, and the rule that derives the accuracy bounds from several calibration seeds:
a lower one (a regression) and an upper one (a result too good for this code: evaluation on
other data, a leak).

`check` only reads it and `calibrate` rewrites it (bench.gate); keeping the format here means
one place knows what a valid file is, and every problem with it is one UsageError line.
"""

from __future__ import annotations

import json
import math
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from bench.errors import UsageError
from bench.fsio import atomic_write

THRESHOLDS_FILE = Path(__file__).parent / "thresholds.toml"
SCHEMA = 1
METRIC = "test_acc"
THRESHOLD_KEY = f"min_{METRIC}"
UPPER_KEY = f"max_{METRIC}"
K_SIGMA = 3.0  # the least margin in sample standard deviations over the calibration seeds …
MIN_MARGIN = 0.005  # … and never less than this (covers other CPUs / BLAS builds)
FLOOR_STEP = 0.001  # lower bounds are rounded down to this, upper ones up, to read cleanly
WEAK_BELOW = 0.2  # a threshold under 2× chance (10 classes) can catch little but a crash
RESERVED = ("schema", "meta")  # top-level keys that are not suite names

# Every key an entry may have: (type check, what the message says it must be, required).
ENTRY_KEYS: dict[str, tuple[Any, str, bool]] = {
    THRESHOLD_KEY: (lambda v: is_num(v) and 0.0 < v <= 1.0, "a number in (0, 1]", True),
    "derived": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string", True),
    "records": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                "a list of run-id strings", True),
    "mean": (lambda v: is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]", False),
    "std": (lambda v: is_num(v) and v >= 0.0, "a number ≥ 0", False),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "an integer ≥ 1", False),
    "min_seed": (lambda v: is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]", False),
    UPPER_KEY: (lambda v: is_num(v) and 0.0 < v <= 1.0, "a number in (0, 1]", False),
    "max_seed": (lambda v: is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]", False),
    "fingerprint": (lambda v: isinstance(v, str), "a code fingerprint (string)", False),
}
META_KEYS: dict[str, tuple[Any, str]] = {
    "calibrated": (lambda v: isinstance(v, str), "a string"),
    "seeds": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
              "an integer ≥ 1"),
    "rule": (lambda v: isinstance(v, str), "a string"),
    "k_sigma": (lambda v: is_num(v) and v >= 0, "a number ≥ 0"),
    "false_alarms": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                     "an integer ≥ 0"),
    "k_sigma_upper": (lambda v: is_num(v) and v >= 0, "a number ≥ 0"),
    "false_alarms_upper": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                           "an integer ≥ 0"),
    "min_margin": (lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "torch": (lambda v: isinstance(v, str), "a string"),
    "cpu": (lambda v: isinstance(v, str), "a string"),
    "threads": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
}


def is_num(v: Any) -> TypeGuard[int | float]:
    """A finite real number (bools excluded, though Python counts them as ints)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Threshold:
    value: float
    derived: str
    records: tuple[str, ...]
    mean: float | None = None
    std: float | None = None
    n: int | None = None
    min_seed: float | None = None
    fingerprint: str | None = None  # the code that made the calibration records
    upper: float | None = None  # max_test_acc: above it the result is too good for this code
    max_seed: float | None = None


Key = tuple[str, str, str, str]  # suite, profile, variant, dataset


@dataclass
class Thresholds:
    """The parsed file: entries keyed by (suite, profile, variant, dataset), plus metadata."""

    path: Path
    entries: dict[Key, Threshold] = field(default_factory=dict)
    meta: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # unregistered variants (calibrate only)

    def for_profile(self, suite: str, profile: str) -> dict[tuple[str, str], Threshold]:
        return {(k[2], k[3]): t for k, t in self.entries.items() if k[:2] == (suite, profile)}


def _table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{path}: {where} must be a table, got {value!r}")
    return value


def load_thresholds(path: Path, *, drop_unregistered: bool = False) -> Thresholds:
    """Parse and strictly validate a thresholds file; every problem is one UsageError line.

    Names are checked against what exists (suites, profiles, variants, datasets) so that a
    typo is an error, not a threshold that silently never applies. `calibrate` passes
    `drop_unregistered` to forget variants removed from the registry instead of failing.
    """
    from bench.config import DATASET_NAMES
    from bench.suites import PROFILES, available_suites
    from variants import list_variants

    if not path.is_file():
        raise UsageError(f"thresholds file {path} not found; create it with `lenet-bench "
                         "calibrate --suite variants --profile gate --seeds 10`")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    schema = raw.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise UsageError(f"{path}: schema must be {SCHEMA}, got {schema!r}")
    out = Thresholds(path=path)
    suites, variants = available_suites(), set(list_variants())
    for key in raw:
        if key not in RESERVED and key not in suites:
            raise UsageError(f"{path}: unknown key or suite {key!r}; valid: "
                             f"{', '.join(list(RESERVED) + suites)}")
    for suite, profiles in _table(path, "meta", raw.get("meta", {})).items():
        if suite not in suites:
            raise UsageError(f"{path}: meta.{suite}: unknown suite; valid: {', '.join(suites)}")
        for prof, meta in _table(path, f"meta.{suite}", profiles).items():
            where = f"meta.{suite}.{prof}"
            if prof not in PROFILES:
                raise UsageError(f"{path}: {where}: unknown profile; valid: {', '.join(PROFILES)}")
            _check_fields(path, where, _table(path, where, meta),
                          {k: (ok, what, False) for k, (ok, what) in META_KEYS.items()})
            out.meta[(suite, prof)] = dict(meta)
    for suite in (k for k in raw if k not in RESERVED):
        for prof, by_variant in _table(path, suite, raw[suite]).items():
            if prof not in PROFILES:
                raise UsageError(f"{path}: {suite}.{prof}: unknown profile; valid: "
                                 f"{', '.join(PROFILES)}")
            for variant, by_ds in _table(path, f"{suite}.{prof}", by_variant).items():
                where = f"{suite}.{prof}.{variant}"
                if variant not in variants:
                    if drop_unregistered:
                        out.dropped.append(where)
                        continue
                    raise UsageError(f"{path}: {where}: unknown variant {variant!r} (a typo, or "
                                     "removed from the registry? then delete its table); valid: "
                                     f"{', '.join(sorted(variants))}")
                for ds, entry in _table(path, where, by_ds).items():
                    ew = f"{where}.{ds}"
                    if ds not in DATASET_NAMES:
                        raise UsageError(f"{path}: {ew}: unknown dataset {ds!r}; valid: "
                                         f"{', '.join(DATASET_NAMES)}")
                    _check_fields(path, ew, _table(path, ew, entry), ENTRY_KEYS)
                    if UPPER_KEY in entry and entry[UPPER_KEY] <= entry[THRESHOLD_KEY]:
                        raise UsageError(f"{path}: {ew}.{UPPER_KEY} must be above "
                                         f"{THRESHOLD_KEY} ({entry[THRESHOLD_KEY]!r}), got "
                                         f"{entry[UPPER_KEY]!r}")
                    out.entries[(suite, prof, variant, ds)] = Threshold(
                        value=float(entry[THRESHOLD_KEY]), derived=entry["derived"],
                        records=tuple(entry["records"]),
                        mean=None if "mean" not in entry else float(entry["mean"]),
                        std=None if "std" not in entry else float(entry["std"]),
                        n=entry.get("n"),
                        min_seed=None if "min_seed" not in entry else float(entry["min_seed"]),
                        fingerprint=entry.get("fingerprint"),
                        upper=None if UPPER_KEY not in entry else float(entry[UPPER_KEY]),
                        max_seed=None if "max_seed" not in entry else float(entry["max_seed"]),
                    )
    return out


def _check_fields(path: Path, where: str, got: dict[str, Any],
                  spec: dict[str, tuple[Any, str, bool]]) -> None:
    unknown = sorted(set(got) - set(spec))
    if unknown:
        raise UsageError(f"{path}: {where}: unknown key {unknown[0]!r}; valid: "
                         f"{', '.join(sorted(spec))}")
    for key, (ok, what, required) in spec.items():
        if key not in got:
            if required:
                raise UsageError(f"{path}: {where}: missing key {key!r} ({what})")
            continue
        if not ok(got[key]):
            raise UsageError(f"{path}: {where}.{key} must be {what}, got {got[key]!r}")


_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _tkey(k: str) -> str:
    return k if k and set(k) <= _BARE else json.dumps(k, ensure_ascii=False)


def _tval(v: Any) -> str:
    """A TOML value; JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_tval(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


HEADER = """\
# CI regression-gate thresholds: `lenet-bench check` fails when a (variant, dataset)'s mean
# test accuracy over the profile's seeds falls below min_test_acc (a regression) or rises
# above max_test_acc (too good for this code: evaluation on other data than the test set, a
# train/test leak, a test subset; a real improvement means recalibrating). Keyed
# [<suite>.<profile>.<variant>.<dataset>]; each entry says how it was derived and from which
# run records (results/<suite>/<profile>/runs.jsonl).
#
# Written by `lenet-bench calibrate --suite S --profile P --seeds N` (`--no-train`: from the
# records already there): review the diff, then commit. Rule: min_test_acc = mean −
# max(k·σ, MIN_MARGIN), rounded down to 0.001, and max_test_acc = mean + max(k'·σ,
# MIN_MARGIN), rounded up, where mean and σ (sample std) are over N seeds (0…N−1) trained on
# the CPU, and k (k') is the smallest half-integer ≥ 3 for which no calibration seed of any
# variant is below (above) its bound (0 false alarms). A check run trains seed 0 only; on
# another machine its numbers differ slightly (float rounding), which MIN_MARGIN covers where
# the seeds agree closely. `fingerprint` names the code that made the records
# (bench.fingerprint): check notes when training has changed. Hand edits are fine: keep
# `derived` honest. max_test_acc is optional (without it nothing is too good); unknown keys,
# wrong types and names that are not a suite / profile / registered variant / dataset are
# errors.
"""


def write_thresholds(th: Thresholds) -> None:
    """Rewrite the whole file (atomically), sorted, with the header; then re-validate it."""
    lines = [HEADER, f"schema = {SCHEMA}", ""]
    for (suite, prof), meta in sorted(th.meta.items()):
        lines.append(f"[meta.{_tkey(suite)}.{_tkey(prof)}]")
        lines += [f"{_tkey(k)} = {_tval(v)}" for k, v in meta.items()]
        lines.append("")
    for (suite, prof, variant, ds), t in sorted(th.entries.items()):
        lines.append(f"[{'.'.join(_tkey(k) for k in (suite, prof, variant, ds))}]")
        lines.append(f"{THRESHOLD_KEY} = {_tval(t.value)}")
        if t.upper is not None:
            lines.append(f"{UPPER_KEY} = {_tval(t.upper)}")
        for k in ("mean", "std", "n", "min_seed", "max_seed", "fingerprint"):
            v = getattr(t, k)
            if v is not None:
                lines.append(f"{k} = {_tval(v)}")
        lines.append(f"derived = {_tval(t.derived)}")
        lines.append(f"records = {_tval(list(t.records))}")
        lines.append("")
    # What we wrote must be what we read, checked before it replaces the committed file.
    atomic_write(th.path, "\n".join(lines), check=load_thresholds)


def no_false_alarm_k(samples: list[list[float]], least: float = K_SIGMA, *,
                     upper: bool = False) -> float:
    """The smallest half-integer k ≥ `least` at which every seed of every sample is at least
    mean − k·σ (with `upper`: at most mean + k·σ): the gate's k, so that none of the
    calibration seeds would have failed."""
    z = 0.0
    for values in samples:
        std = statistics.stdev(values)
        if std > 0:
            far = max(values) - statistics.fmean(values) if upper else \
                statistics.fmean(values) - min(values)
            z = max(z, far / std)
    return max(least, math.ceil(2 * z - 1e-9) / 2)


def derive_threshold(values: list[float], k_sigma: float = K_SIGMA,
                     min_margin: float = MIN_MARGIN) -> tuple[float, float, float]:
    """(threshold, mean, std) from the calibration seeds' accuracies (at least 2)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values)
    margin = max(k_sigma * std, min_margin)
    value = math.floor((mean - margin) / FLOOR_STEP + 1e-9) * FLOOR_STEP
    return max(round(value, 6), FLOOR_STEP), mean, std


def derive_upper(values: list[float], k_sigma: float = K_SIGMA,
                 min_margin: float = MIN_MARGIN) -> float:
    """The upper bound from the calibration seeds' accuracies (at least 2): mean +
    max(k·σ, min_margin), rounded up to FLOOR_STEP, at most 1. A run above it is too good for
    the code that was calibrated: evaluation on other data, a leak, or a real improvement
    that wants recalibrating."""
    mean = statistics.fmean(values)
    margin = max(k_sigma * statistics.stdev(values), min_margin)
    value = math.ceil((mean + margin) / FLOOR_STEP - 1e-9) * FLOOR_STEP
    return min(round(value, 6), 1.0)
