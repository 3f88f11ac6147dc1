"""Section: how fast the engine trains against the usual DataLoader loop (`lenet-bench perf`).

Reads the JSON records under results/perf/ and shows the latest one per device: on a shared
CPU only the ratios measured within one run mean anything, so the table leads with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.fingerprint import NO_FINGERPRINT, THIS
from report.doc import Cell, Code, Heading, Section, Table, cell
from report.fmt import DASH, count, slug
from report.provenance import UNCHECKED

HEADERS = ("variant", "batch", "usual loop ex/s", "engine ex/s", "engine ÷ usual",
           "+ levers ex/s", "+ levers ÷ usual", "packed ex/s", "packed ÷ usual",
           "infer ex/s @1 / 128 / 4096")
NUMERIC = (False,) + (True,) * (len(HEADERS) - 1)


def load_perf(results: Path) -> list[dict[str, Any]]:
    """Every readable perf record, each tagged with its file name; unreadable ones skipped."""
    out = []
    for path in sorted((results / "perf").glob("perf-*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("rows"), list):
            out.append({**rec, "_file": path.name})
    return out


def latest_per_device(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in records:
        env = r.get("env") or {}
        key = f"{env.get('device_name', '?')} ({r.get('device', '?')})"
        if key not in best or (env.get("ended") or "", r["_file"]) > (
                best[key]["env"].get("ended") or "", best[key]["_file"]):
            best[key] = {**r, "env": env}
    return [best[k] for k in sorted(best)]


def _ratio(r: Any) -> tuple[float | None, str]:
    """A ratio as recorded: {median, min, max} over rounds, or one float (older records)."""
    if isinstance(r, dict) and r.get("median") is not None:
        lo, hi = r.get("min"), r.get("max")
        spread = "" if lo is None or lo == hi else f" ({lo:.2f}–{hi:.2f})"
        return float(r["median"]), f"{r['median']:.2f}×{spread}"
    if isinstance(r, int | float):
        return float(r), f"{r:.2f}×"
    return None, DASH


def _row(row: dict[str, Any], levers: bool) -> tuple:
    infer = row.get("inference_examples_per_s") or {}
    cells = [Cell(str(row.get("variant"))),
             cell(row.get("batch_size"), str(row.get("batch_size")))]
    for key in ("usual_loop_examples_per_s", "engine_plain_examples_per_s"):
        cells.append(cell(row.get(key), count(row.get(key))))
    cells.append(cell(*_ratio(row.get("plain_engine_vs_usual"))))
    if levers:
        cells += [cell(row.get("engine_examples_per_s"), count(row.get("engine_examples_per_s"))),
                  cell(*_ratio(row.get("engine_vs_usual")))]
    else:
        cells += [cell(None, "="), cell(None, "=")]
    packed, k = row.get("packed_aggregate_examples_per_s"), row.get("packed_members")
    cells += [cell(packed, DASH if packed is None else f"{count(packed)} (K={k})"),
              cell(*_ratio(row.get("packed_vs_usual"))),
              cell(infer.get("1"), " / ".join(count(infer.get(b)) for b in ("1", "128", "4096")))]
    return tuple(cells)


def _recipe_change(row: dict[str, Any], device: str) -> str | None:
    """How the recipe a row was measured at differs from the variant's recipe now (None: the
    same), from the row's resolved config, or its batch size in records older than that."""
    from bench.config import resolve_config
    from variants import VariantError

    try:
        now = resolve_config(str(row.get("variant")), None, 0, {}, device=device).to_dict()
    except VariantError:
        return "a variant this tree does not register"
    then = row.get("config") or {"batch_size": row.get("batch_size")}
    diff = [f"{k} {json.dumps(then[k])} (now {json.dumps(now.get(k))})" for k in sorted(then)
            if k not in ("seed", "device") and then[k] != now.get(k)]
    return "measured at " + ", ".join(diff) if diff else None


def provenance(rec: dict[str, Any], data_root: Path | None) -> list[str]:
    """Per row of a perf record: THIS, or why its figures are not this tree's (another
    recipe, code that trains differently, no code named, …), like the run records'."""
    from bench.config import config_from_record
    from bench.datasets import DataError
    from bench.fingerprint import judge, why_not

    device = str(rec.get("device") or "cpu")
    rows = [r for r in rec.get("rows", []) if isinstance(r, dict)]
    out: list[str] = []
    items, where = [], []
    for i, row in enumerate(rows):
        changed = _recipe_change(row, device)
        out.append(changed or why_not(NO_FINGERPRINT))
        if changed is None and row.get("code"):
            items.append((config_from_record(row["config"]), {"code": row["code"]}))
            where.append(i)
    try:
        said = judge(items, data_root or Path("data"))
    except DataError:
        said = [UNCHECKED] * len(items)
    for i, verdict in zip(where, said, strict=True):
        out[i] = THIS if verdict == THIS else (
            "not checked (no data here)" if verdict == UNCHECKED else why_not(verdict))
    return out


def speed_section(results: Path, data_root: Path | None = None) -> Section:
    sec = Section("Speed: the engine against the usual loop", "speed")
    recs = latest_per_device(load_perf(results))
    if not recs:
        sec.para("No perf records yet: `lenet-bench perf` (or `make perf`) writes them under "
                 "results/perf/.")
        return sec
    sec.para(
        "Training examples per second of (a) the usual loop — torchvision dataset, ToTensor, "
        "a DataLoader at the recipe's batch size, one model at a time, as d2l and the tutorials "
        "train — and (b) the engine: the dataset resident on the device, batches by index; "
        "(c) the same engine with the levers named below; (d) K seeds packed into one vmapped "
        "model (aggregate). Same recipe math in all. Each ratio is taken within one round "
        "(usual loop and engine measured back to back) and shown as the median over rounds "
        "with its range; on a shared CPU only these ratios compare, never absolute figures "
        "across machines. The latest record per device is shown; every record is kept under "
        "results/perf/."
    )
    for r in recs:
        env = r["env"]
        levers = r.get("levers") or {}
        lever_text = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(levers.items()))
        title = f"{env.get('device_name', '?')} ({r.get('device', '?')})"
        anchor = "speed-" + slug(title)
        rounds, workers = r.get("rounds", 1), r.get("workers", "?")
        sec.add(Heading(3, title, anchor))
        sec.para(
            f"{rounds} round{'' if rounds == 1 else 's'} of {r.get('steps', '?')} timed steps "
            f"after warm-up; usual loop with {workers} DataLoader "
            f"worker{'' if workers == 1 else 's'}; levers: "
            f"{lever_text or 'none'}; torch {env.get('torch', '?')}, {env.get('threads', '?')} "
            f"threads, commit ", Code(str(env.get("git_commit") or "?")[:10]),
            f", ended {env.get('ended', '?')}; record ", Code(r["_file"]), ".")
        sec.add(Table(HEADERS, tuple(_row(row, bool(levers)) for row in r["rows"]
                                     if isinstance(row, dict)), NUMERIC))
        made = provenance(r, data_root)
        names = [str(row.get("variant")) for row in r["rows"] if isinstance(row, dict)]
        if made and all(m == THIS for m in made):
            sec.para(f"Made by this code: all {len(made)} rows (their recipes and training "
                     "code fingerprints match this tree's).")
        elif made:
            sec.para("⚠ Not all measured by this tree's code and recipes: " + "; ".join(
                f"{n}: {m}" for n, m in zip(names, made, strict=True) if m != THIS) + ". ",
                Code("make perf"), " measures them again.")
        notes = [f"{row['variant']}: {row[k]}" for row in r["rows"] if isinstance(row, dict)
                 for k in ("fallback", "packed_note") if row.get(k)]
        if notes:
            sec.para("Notes: " + "; ".join(notes) + ".")
    return sec
