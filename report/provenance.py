"""Which code made each record: this tree's, other code, or unknown (bench.fingerprint).

A run id hashes the config, not the code, so a record can outlive the code that made it. The
report re-derives each configuration's behavioural fingerprint with the code it is rendered
by and marks every record whose fingerprint differs (made by code that trains differently) or
that has none (made before fingerprints were recorded).
"""

from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig, config_from_record
from bench.datasets import DataError
from bench.fingerprint import fingerprint, made_by_this_code, record_fingerprint
from report.collect import Record

THIS, OTHER, UNKNOWN, UNCHECKED = "this code", "other code", "unknown code", "not checked"


def code_of(records: list[Record], data_root: Path | None) -> dict[int, str]:
    """id(record) → THIS, OTHER, UNKNOWN (no fingerprint) or UNCHECKED (no data here to probe
    with). A variant this tree no longer registers cannot train: OTHER."""
    out: dict[int, str] = {}
    root = data_root or Path("data")
    checked: list[tuple[RunConfig, Record]] = []
    for r in records:
        if record_fingerprint(r) is None:
            out[id(r)] = UNKNOWN
            continue
        cfg = config_from_record(r["config"])
        try:
            fingerprint(cfg, root)  # cached: made_by_this_code reads it again for free
        except DataError:
            out[id(r)] = UNCHECKED
            continue
        checked.append((cfg, r))
    same = made_by_this_code(checked, root)
    for (_, r), yes in zip(checked, same, strict=True):
        out[id(r)] = THIS if yes else OTHER
    return out


def stale_sentence(records: list[Record], code: dict[int, str]) -> str | None:
    """One sentence for the top of the report when any record is not this tree's."""
    other = sum(code[id(r)] == OTHER for r in records)
    unknown = sum(code[id(r)] == UNKNOWN for r in records)
    if not other and not unknown:
        return None
    parts = []
    if other:
        parts.append(f"{other} made by code that trains differently from this tree")
    if unknown:
        parts.append(f"{unknown} made before records named their code")
    return (f"Warning: of {len(records)} records, {' and '.join(parts)} (column \"made by "
            "this code\" in What ran); `lenet-bench run` retrains them.")
