"""`lenet-bench export`: the records as a tidy table (CSV/parquet) or as runs in MLflow.

Why: people load runs in a notebook or browse them in an experiment tracker, and the records'
nested JSON suits neither. Export only reads records (it never trains), writes files atomically,
and is idempotent towards MLflow: a record already exported, unchanged, is never logged twice.
pandas is imported when a table is built and mlflow only for `--to mlflow` (optional extras).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from bench.errors import UsageError
from bench.fsio import atomic_write
from bench.records import Record, all_runs_files, latest_by_id, read_records, weights_path

if TYPE_CHECKING:
    import pandas as pd


FORMATS = ("csv", "parquet")
DEFAULT_EXPERIMENT = "lenet-bench"
INSTALL_MLFLOW = "pip install '.[mlflow]'"
INSTALL_PARQUET = "pip install '.[parquet]'"

# Runs table: identity first (this order), then config.*, code.*, metrics.*, timing.*, env.*,
# the rest.
IDENTITY = ("suite", "profile", "run_id", "variant", "dataset", "seed", "status", "error",
            "diverged_epoch", "group", "question", "factor", "factor_value", "overrides",
            "memberships", "record_version")
GROUPS = ("config", "code", "metrics", "timing", "env")
METRICS_FIRST = ("test_acc", "test_loss", "top1_error", "top3_error", "top5_error",
                 "params_trainable", "params_total", "flops_per_example", "n_test")
# Columns present (and typed) even when no selected record has them (e.g. only failed runs),
# so tables from different selections concatenate.
ALWAYS = {"metrics.test_acc": "float64", "metrics.test_loss": "float64",
          "metrics.top1_error": "float64", "metrics.top3_error": "float64",
          "metrics.top5_error": "float64", "metrics.params_trainable": "Int64",
          "metrics.params_total": "Int64", "metrics.flops_per_example": "Int64",
          "timing.train_examples_per_s": "float64", "timing.wall_seconds": "float64"}
# Record paths that are not a column: the history goes to its own table; the throughput note
# is one fixed sentence; the traceback is multi-line text (all three stay in runs.jsonl).
SKIP = frozenset({"history", "timing.per_epoch", "timing.train_examples_per_s_note",
                  "traceback"})
# Values kept whole as one JSON text cell: free-form keys, matrices, lists of records.
AS_JSON = frozenset({"metrics.confusion", "overrides", "memberships", "packed_seeds"})
# Lists that become one column per element (`metrics.per_class_acc.0`, `.1`, …).
EXPAND = frozenset({"metrics.per_class_acc"})
# Columns whose values mix types by nature: always text, so the column type is stable.
TEXT = frozenset({"factor_value"})

HISTORY_KEYS = ("suite", "profile", "run_id", "variant", "dataset", "seed")
HISTORY_FIRST = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "train_examples_per_s", "train_seconds")

# MLflow: the tag that identifies a record's run, and the one set last, once it is complete.
KEY_TAG = "lenet_bench.key"
DONE_TAG = "lenet_bench.exported"
MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
MAX_METRICS_PER_BATCH = 1000
MAX_TAG_CHARS = 5000


# --- selection ------------------------------------------------------------------------------

def _patterns(spec: str | None, suites: bool = False) -> list[str] | None:
    """`a,b*` → ['a', 'b*']; with `suites`, a suite set name (`d2l`) stands for its members."""
    if not spec:
        return None
    from bench.suites import suite_names

    out: list[str] = []
    for p in (s.strip() for s in spec.split(",") if s.strip()):
        try:  # a pattern, or a folder whose suite file is gone, stays as it is
            out.extend(suite_names(p) if suites else [p])
        except UsageError:
            out.append(p)
    return out


def select_records(results: Path, suite: str | None = None,
                   profile: str | None = None) -> list[Record]:
    """The latest record per run id of each selected runs.jsonl, files in sorted order.

    Within a file, records keep their order (the order they were trained in); the run id is
    unique only within one (suite, profile), so rows are keyed by all three."""
    if not results.is_dir():
        raise UsageError(f"no results directory {results}; run `lenet-bench run` first")
    suites, profiles = _patterns(suite, suites=True), _patterns(profile)
    out: list[Record] = []
    for path in all_runs_files(results):
        s, p = path.parent.parent.name, path.parent.name
        if suites and not any(fnmatch.fnmatchcase(s, pat) for pat in suites):
            continue
        if profiles and not any(fnmatch.fnmatchcase(p, pat) for pat in profiles):
            continue
        out.extend(latest_by_id(read_records(path)).values())  # suite/profile filled on read
    if not out:
        what = "".join(f" {k} {v!r}" for k, v in (("suite", suite), ("profile", profile)) if v)
        sel = f" matching{what}" if what else ""
        raise UsageError(f"no records{sel} under {results}; run `lenet-bench run` first"
                         + (" or widen --suite/--profile" if what else ""))
    return out


# --- the tidy tables ------------------------------------------------------------------------

def as_text(value: Any) -> str:
    """Text for a cell, param or tag: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if path in SKIP:
        return
    if path in AS_JSON or path in TEXT:
        out[path] = None if value is None else as_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        if path in EXPAND:
            for i, v in enumerate(value):
                out[f"{path}.{i}"] = v
        else:
            out[path] = json.dumps(value)
    else:
        out[path] = value


def flatten_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One runs-table row: every value under its dotted record path (`config.lr`)."""
    out: dict[str, Any] = {}
    _flatten(rec, "", out)
    return out


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as dotted keys without the `config.` prefix (`model.channels`)."""
    out: dict[str, Any] = {}
    _flatten(config, "", out)
    return out


def _natural(path: str) -> tuple[Any, ...]:
    """`per_class_acc.10` after `.9`: digit runs compare as numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path))


def _column_key(col: str) -> tuple[Any, ...]:
    if col in IDENTITY:
        return (0, IDENTITY.index(col))
    head, _, rest = col.partition(".")
    if head in GROUPS and rest:
        first = METRICS_FIRST if head == "metrics" else ()
        lead = rest.split(".")[0]
        rank = first.index(lead) if lead in first else len(first)
        return (1 + GROUPS.index(head), rank, _natural(rest))
    return (1 + len(GROUPS), _natural(col))


def _typed_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A DataFrame whose column types follow the records' JSON types, not pandas' guesses.

    All bool → nullable boolean, all int → nullable Int64 (an absent value stays an int
    column), numbers → float64, anything mixed → text; so a column's type does not change
    with which runs were selected."""
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=columns)
    for col in columns:
        vals = [r[col] for r in rows if r.get(col) is not None]
        kinds = {type(v) for v in vals}
        if not vals:
            if col in ALWAYS:
                df[col] = df[col].astype(ALWAYS[col])
            continue
        if kinds == {bool}:
            df[col] = df[col].astype("boolean")
        elif kinds == {int}:
            df[col] = df[col].astype("Int64")
        elif kinds <= {int, float}:
            df[col] = df[col].astype("float64")
        elif kinds != {str}:
            df[col] = pd.Series([None if r.get(col) is None else as_text(r[col])
                                 for r in rows], dtype=object, index=df.index)
    return df


def runs_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record (see README *Export* for the columns)."""
    rows = [flatten_record(r) for r in records]
    cols: dict[str, None] = dict.fromkeys((*IDENTITY, *ALWAYS))
    for row in rows:
        cols.update(dict.fromkeys(row))
    return _typed_frame(rows, sorted(cols, key=_column_key))


def history_rows(rec: Record) -> list[dict[str, Any]]:
    """One row per epoch: the history entry merged with that epoch's training timing."""
    timing = rec.get("timing") or {}
    per_epoch = {e.get("epoch"): e for e in timing.get("per_epoch") or []}
    keys = {k: rec.get(k) for k in HISTORY_KEYS}
    out = []
    for h in rec.get("history") or []:
        t = {k: v for k, v in per_epoch.get(h.get("epoch"), {}).items() if k != "epoch"}
        out.append({**keys, **h, **t})
    return out


def history_frame(records: Iterable[Record]) -> pd.DataFrame:
    """The long-format history: one row per run per epoch."""
    rows = [row for r in records for row in history_rows(r)]
    cols: dict[str, None] = dict.fromkeys((*HISTORY_KEYS, *HISTORY_FIRST))
    for row in rows:
        cols.update(dict.fromkeys(row))
    fixed = len(HISTORY_KEYS) + len(HISTORY_FIRST)
    columns = list(cols)[:fixed] + sorted(list(cols)[fixed:])
    return _typed_frame(rows, columns)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError(f"--format parquet needs pyarrow; install it with: {INSTALL_PARQUET}"
                         ) from None


def _frame_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def _reads_back(fmt: str, n_rows: int) -> Callable[[Path], None]:
    """A check for atomic_write: the temp file loads with pandas and has every row."""
    def check(tmp: Path) -> None:
        import pandas as pd

        df = pd.read_csv(tmp) if fmt == "csv" else pd.read_parquet(tmp)
        if len(df) != n_rows:
            raise RuntimeError(f"{tmp}: wrote {n_rows} rows, read back {len(df)}")
    return check


def write_tables(records: list[Record], out: Path, fmt: str) -> dict[str, tuple[Path, int]]:
    """Write `runs.<fmt>` and `history.<fmt>` under `out`, each atomically.

    Returns {table: (path, rows)}. An unwritable `out` is the user's to fix (UsageError)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "parquet":
        _require_pyarrow()
    frames = {"runs": runs_frame(records), "history": history_frame(records)}
    written: dict[str, tuple[Path, int]] = {}
    for name, df in frames.items():
        path = out / f"{name}.{fmt}"
        try:
            atomic_write(path, _frame_bytes(df, fmt), check=_reads_back(fmt, len(df)))
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
        written[name] = (path, len(df))
    return written


# --- MLflow ---------------------------------------------------------------------------------

def record_key(rec: Record) -> str:
    """What identifies a record's MLflow run: a run id is unique within one suite/profile."""
    return f"{rec['suite']}/{rec['profile']}/{rec['run_id']}"


def record_digest(rec: Record) -> str:
    """Changes when the record does (a --force re-run), so its MLflow run is replaced."""
    blob = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def mlflow_params(rec: Record) -> dict[str, str]:
    """Params: the resolved config, flattened (`lr`, `model.channels`), values as text."""
    return {k: as_text(v) for k, v in flatten_config(rec.get("config") or {}).items()}


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def mlflow_metrics(rec: Record) -> dict[str, float]:
    """Final metrics under their own names (`test_acc`), timing under `timing.…`."""
    row = flatten_record({"metrics": rec.get("metrics") or {}, "timing": rec.get("timing") or {}})
    out: dict[str, float] = {}
    for col, v in row.items():
        if _is_number(v):
            out[col.removeprefix("metrics.")] = float(v)
    return out


def mlflow_history(rec: Record) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch values as metric steps: `history.<field>` → [(epoch, value), …]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in history_rows(rec):
        epoch = row.get("epoch")
        for k, v in row.items():
            if k in HISTORY_KEYS or k == "epoch" or not _is_number(v) or not _is_number(epoch):
                continue
            out.setdefault(f"history.{k}", []).append((int(epoch), float(v)))
    return out


def mlflow_tags(rec: Record) -> dict[str, str]:
    """Tags: run id, suite, profile, git commit, device, and what a UI filter needs."""
    env = rec.get("env") or {}
    tags: dict[str, Any] = {
        KEY_TAG: record_key(rec),
        "run_id": rec.get("run_id"),
        "suite": rec.get("suite"),
        "profile": rec.get("profile"),
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "code_fingerprint": (rec.get("code") or {}).get("fingerprint"),
        "device": env.get("device"),
        "device_name": env.get("device_name"),
        "status": rec.get("status"),
        "variant": rec.get("variant"),
        "dataset": rec.get("dataset"),
        "seed": rec.get("seed"),
        "group": rec.get("group"),
        "factor": rec.get("factor"),
        "factor_value": rec.get("factor_value"),
        "error": rec.get("error"),
        "mlflow.source.git.commit": env.get("git_commit"),
        "mlflow.note.content": rec.get("question"),
    }
    return {k: as_text(v)[:MAX_TAG_CHARS] for k, v in tags.items() if v is not None}


def run_name(rec: Record) -> str:
    name = f"{rec.get('variant')} {rec.get('dataset')} seed {rec.get('seed')}"
    if rec.get("factor"):
        name += f" {rec['factor']}={as_text(rec.get('factor_value'))}"
    return name


def default_store(results: Path) -> tuple[str, Path]:
    """The local store: (tracking URI of `<results>/mlflow/mlflow.db`, artifact folder)."""
    root = (results / "mlflow").resolve()
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def artifacts_beside(uri: str) -> str | None:
    """A new experiment in a SQLite store keeps its artifacts in `artifacts/` beside the file.

    Why: MLflow's own default is `./mlruns` under whatever folder the command runs in."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return None
    db = Path(uri.removeprefix("sqlite:///").split("?")[0])
    return (db.resolve().parent / "artifacts").as_uri()


def _ms(iso: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(iso)).timestamp() * 1000)
    except ValueError:
        return None


def _require_mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # export must not phone home
    try:
        import mlflow
    except ImportError:
        raise UsageError(f"--to mlflow needs MLflow; install it with: {INSTALL_MLFLOW}"
                         ) from None
    import logging

    for name in ("mlflow", "alembic"):  # store creation logs its migrations at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _check_reachable(uri: str) -> None:
    """Fail in one line, at once: MLflow's own client retries an absent server for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a proxy may refuse /health itself): the server is there
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise UsageError(f"cannot reach the MLflow server at {uri}: {why}") from None


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if exp.lifecycle_stage == "deleted":
        raise UsageError(f"MLflow experiment {name!r} is deleted in this store; restore it "
                         "(mlflow experiments restore) or pass another --experiment")
    return exp.experiment_id


def _existing_runs(client: Any, exp_id: str) -> dict[str, list[Any]]:
    """The experiment's active runs that came from a record, by record key."""
    out: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        for run in page:
            key = run.data.tags.get(KEY_TAG)
            if key:
                out.setdefault(key, []).append(run)
        token = page.token
        if not token:
            return out


def _log_run(client: Any, exp_id: str, rec: Record, results: Path, digest: str) -> None:
    from mlflow.entities import Metric, Param

    env = rec.get("env") or {}
    start, end = _ms(env.get("started")), _ms(env.get("ended"))
    stamp = end or start or 0
    run = client.create_run(exp_id, start_time=start, tags=mlflow_tags(rec),
                            run_name=run_name(rec))
    rid = run.info.run_id
    params = [Param(k, v) for k, v in mlflow_params(rec).items()]
    metrics = [Metric(k, v, stamp, 0) for k, v in mlflow_metrics(rec).items()]
    metrics += [Metric(k, v, stamp, step) for k, steps in mlflow_history(rec).items()
                for step, v in steps]
    for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
        client.log_batch(rid, params=params[i:i + MAX_PARAMS_PER_BATCH])
    for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(rid, metrics=metrics[i:i + MAX_METRICS_PER_BATCH])
    client.log_text(rid, json.dumps(rec, indent=1, sort_keys=True), "record.json")
    wfile = weights_path(results, rec["suite"], rec["profile"], rec["run_id"])
    if wfile.is_file():
        client.log_artifact(rid, str(wfile), artifact_path="weights")
    client.set_terminated(rid, "FAILED" if rec.get("status") == "failed" else "FINISHED",
                          end_time=end)
    client.set_tag(rid, DONE_TAG, digest)  # last: a run cut short is redone next time


def export_mlflow(records: list[Record], results: Path, tracking_uri: str | None = None,
                  experiment: str = DEFAULT_EXPERIMENT,
                  log: Callable[[str], None] = print) -> dict[str, int]:
    """One MLflow run per record, matched on the record-key tag so a re-export adds nothing.

    A record whose run is complete and unchanged is skipped; a changed record (re-run with
    --force) or a run cut short is deleted and logged again. Returns counts by outcome."""
    mlflow = _require_mlflow()
    from mlflow.exceptions import MlflowException

    uri = tracking_uri
    if uri is None:
        uri, art = default_store(results)
        try:
            art.mkdir(parents=True, exist_ok=True)
            if not os.access(art.parent, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            raise UsageError(f"cannot write the MLflow store {art.parent}: "
                             f"{e.strerror or e}") from None
    artifact_location = artifacts_beside(uri)
    _check_reachable(uri)
    counts = {"new": 0, "replaced": 0, "unchanged": 0}
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp_id = _experiment_id(client, experiment, artifact_location)
        existing = _existing_runs(client, exp_id)
        for rec in records:
            digest = record_digest(rec)
            runs = existing.get(record_key(rec), [])
            done = [r for r in runs if r.data.tags.get(DONE_TAG) == digest]
            for r in runs:
                if not done or r is not done[0]:
                    client.delete_run(r.info.run_id)
            if done:
                counts["unchanged"] += 1
                continue
            _log_run(client, exp_id, rec, results, digest)
            counts["replaced" if runs else "new"] += 1
    except MlflowException as e:
        msg = str(e.message if hasattr(e, "message") else e).strip().splitlines()
        raise UsageError(f"MLflow ({uri}): {msg[0] if msg else type(e).__name__}") from None
    except OSError as e:
        raise UsageError(f"MLflow ({uri}): {e}") from None
    log(f"mlflow: {len(records)} records → experiment {experiment!r} at {uri}: "
        f"{counts['new']} new, {counts['replaced']} replaced, "
        f"{counts['unchanged']} already exported")
    if tracking_uri is None:
        log(f"browse: mlflow ui --backend-store-uri {uri}")
    return counts


# --- the command ----------------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    """Check the flags and the optional packages before reading or writing anything."""
    results = Path(args.results)
    if args.to == "mlflow":
        if args.format or args.out:
            raise UsageError("--format and --out write tables; with --to mlflow use "
                             "--tracking-uri and --experiment")
        _require_mlflow()
    else:
        if args.tracking_uri or args.experiment:
            raise UsageError("--tracking-uri and --experiment need --to mlflow")
        if args.format == "parquet":
            _require_pyarrow()
    records = select_records(results, args.suite, args.profile)
    if args.to == "mlflow":
        export_mlflow(records, results, args.tracking_uri,
                      args.experiment or DEFAULT_EXPERIMENT)
        return 0
    out = Path(args.out) if args.out else results / "export"
    for name, (path, n) in write_tables(records, out, args.format or "csv").items():
        print(f"wrote {path} ({n} {'runs' if name == 'runs' else 'epoch rows'})")
    return 0
