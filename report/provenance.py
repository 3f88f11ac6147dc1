"""Which code made each record: this tree's, other code, or unknown (bench.fingerprint).

A run id hashes the config, not the code, so a record can outlive the code that made it. The
report re-derives each configuration's behavioural fingerprint with the code it is rendered
by (one probe process for all of them) and marks every record this tree does not recognise,
in the fingerprint's own words: made by code that trains differently, made before records
named their code, fingerprinted by an older probe, or not checkable on this CPU.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig, config_from_record
from bench.datasets import DataError
from bench.fingerprint import (
    NO_FINGERPRINT,
    OLD_PROBE,
    OTHER,
    THIS,
    UNCHECKABLE,
    judge,
    record_fingerprint,
)
from report.collect import Record

UNKNOWN = NO_FINGERPRINT
UNCHECKED = "not checked"  # no data here to probe with
__all__ = ["OLD_PROBE", "OTHER", "THIS", "UNCHECKABLE", "UNCHECKED", "UNKNOWN", "code_of",
           "stale_sentence"]


def code_of(records: list[Record], data_root: Path | None) -> dict[int, str]:
    """id(record) → a verdict of bench.fingerprint.judge, or UNCHECKED (no data here to probe
    with)."""
    out: dict[int, str] = {}
    root = data_root or Path("data")
    checked: list[tuple[RunConfig, Record]] = []
    for r in records:
        if record_fingerprint(r) is None:
            out[id(r)] = UNKNOWN
        else:
            checked.append((config_from_record(r["config"]), r))
    try:
        said = judge(checked, root)
    except DataError:
        said = [UNCHECKED] * len(checked)
    for (_, r), verdict in zip(checked, said, strict=True):
        out[id(r)] = verdict
    return out


def stale_sentence(records: list[Record], code: dict[int, str]) -> str | None:
    """One sentence for the top of the report when any record is not this tree's."""
    words = {OTHER: "made by code that trains differently from this tree",
             UNKNOWN: "made before records named their code",
             OLD_PROBE: "fingerprinted by an older probe, which cannot be compared",
             UNCHECKABLE: "not checkable on this CPU (it lacks the probe's AVX2 kernels)"}
    parts = [f"{n} {words[k]}" for k in words
             if (n := sum(code[id(r)] == k for r in records))]
    if not parts:
        return None
    return (f"Warning: of {len(records)} records, {' and '.join(parts)} (column \"made by "
            "this code\" in What ran); `lenet-bench run` retrains them.")
