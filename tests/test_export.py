"""`lenet-bench export` against real records: tables read back with pandas, and a real MLflow
store (a local SQLite store, and a running `mlflow server`) read back with MlflowClient.

No mocks: the records are lines of the committed results, and MLflow and pyarrow are the real
packages (`make setup` installs the `mlflow` and `parquet` extras, so nothing here skips).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.records import latest_by_id, read_records
from tests.conftest import REPO, run_cli

COMMITTED = REPO / "results"
QUICK = COMMITTED / "variants" / "quick" / "runs.jsonl"


def committed_lines(n: int) -> list[str]:
    """The first n committed records of suite variants, profile quick: real runs."""
    lines = [ln for ln in QUICK.read_text().splitlines() if ln.strip()]
    assert len(lines) >= n, f"{QUICK} has {len(lines)} records, the test needs {n}"
    return lines[:n]


def write_runs(results: Path, lines: list[str], suite: str = "variants",
               profile: str = "quick") -> Path:
    path = results / suite / profile / "runs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(ln + "\n" for ln in lines))
    return path


def text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def dotted(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The README's column rule, written out independently of bench.export."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in ("history", "timing.per_epoch", "timing.train_examples_per_s_note",
                   "traceback"):
            continue
        if key in ("metrics.confusion", "overrides", "memberships", "packed_seeds",
                   "factor_value"):
            out[key] = None if v is None else text(v)
        elif isinstance(v, dict):
            out.update(dotted(v, key + "."))
        elif key == "metrics.per_class_acc":
            out.update({f"{key}.{i}": x for i, x in enumerate(v)})
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def assert_cell(got: Any, want: Any, where: str) -> None:
    if want is None:
        assert is_missing(got), f"{where}: want empty, got {got!r}"
        return
    assert not is_missing(got), f"{where}: want {want!r}, got empty"
    if isinstance(want, bool):
        assert bool(got) is want, where
    elif isinstance(want, int | float):
        assert float(got) == float(want), f"{where}: {got!r} != {want!r}"
    else:
        assert str(got) == want, f"{where}: {got!r} != {want!r}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(p: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lenet-bench: error:"), p.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in p.stderr


# --- tables ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def committed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of every committed runs.jsonl (the records the tables are compared with)."""
    root = tmp_path_factory.mktemp("committed") / "results"
    files = sorted(COMMITTED.glob("*/*/runs.jsonl"))
    assert files, "no committed records under results/"
    for f in files:
        dst = root / f.relative_to(COMMITTED)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    return root


def expected_records(results: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(results.glob("*/*/runs.jsonl")):
        out.extend(latest_by_id(read_records(f)).values())
    return out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_round_trip(committed_copy: Path, tmp_path: Path, fmt: str) -> None:
    before = {p: p.read_bytes() for p in committed_copy.glob("*/*/runs.jsonl")}
    out = tmp_path / "out"
    p = run_cli("export", "--results", str(committed_copy), "--format", fmt, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert {p.read_bytes() for p in before} == set(before.values())  # read only: never trains
    recs = expected_records(committed_copy)
    want_rows = [dotted(r) for r in recs]
    text_cols = {c for row in want_rows for c, v in row.items() if isinstance(v, str)}
    if fmt == "csv":
        runs = pd.read_csv(out / "runs.csv",
                           dtype=dict.fromkeys(text_cols, str))
        hist = pd.read_csv(out / "history.csv")
    else:
        runs = pd.read_parquet(out / "runs.parquet")
        hist = pd.read_parquet(out / "history.parquet")
        assert str(runs["metrics.test_acc"].dtype) == "float64"
        assert str(runs["seed"].dtype) == "Int64" and str(runs["config.compile"].dtype) == \
            "boolean"

    assert len(runs) == len(recs)  # one row per record
    assert set().union(*want_rows) <= set(runs.columns)
    for i, (rec, want) in enumerate(zip(recs, want_rows, strict=True)):
        row = runs.iloc[i]
        assert (row["suite"], row["profile"], row["run_id"]) == \
            (rec["suite"], rec["profile"], rec["run_id"])
        for col in runs.columns:
            assert_cell(row[col], want.get(col), f"{rec['run_id']} {col}")
    assert {"metrics.test_acc", "metrics.top1_error", "metrics.top3_error",
            "metrics.top5_error", "metrics.test_loss", "metrics.params_trainable",
            "metrics.flops_per_example", "metrics.per_class_acc.9", "timing.wall_seconds",
            "timing.train_examples_per_s", "env.torch", "env.git_commit", "config.lr",
            "seed", "status"} <= set(runs.columns)

    epochs = [(r, h) for r in recs for h in r["history"]]
    assert len(hist) == len(epochs)  # one row per run per epoch
    for i, (rec, h) in enumerate(epochs):
        row = hist.iloc[i]
        timing = {t["epoch"]: t for t in rec["timing"]["per_epoch"]}.get(h["epoch"], {})
        for col, want in {**h, "run_id": rec["run_id"], "suite": rec["suite"],
                          "train_examples_per_s": timing.get("train_examples_per_s"),
                          "train_seconds": timing.get("train_seconds")}.items():
            assert_cell(row[col], want, f"history {rec['run_id']} epoch {h['epoch']} {col}")


def test_csv_of_committed_results_loads_in_pandas(tmp_path: Path) -> None:
    """The issue's acceptance check, on the committed results themselves (read only)."""
    out = tmp_path / "export"
    p = run_cli("export", "--format", "csv", "--out", str(out))
    assert p.returncode == 0, p.stderr
    n = len(expected_records(COMMITTED))
    assert len(pd.read_csv(out / "runs.csv")) == n
    assert not any(out.glob(".*.tmp"))  # atomic writes leave no temp file


def test_suite_and_profile_filters(committed_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["export", "--results", str(committed_copy), "--suite", "d2l",
                 "--profile", "qu*", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["suite"]) == {f"d2l-ex{i}" for i in range(1, 6)}
    assert set(runs["profile"]) == {"quick"}


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "xlsx"], "invalid choice: 'xlsx'"),
        (["--to", "wandb"], "invalid choice: 'wandb'"),
        (["--suite", "nope"], "no records matching suite 'nope'"),
        (["--to", "mlflow", "--format", "csv"], "--format and --out write tables"),
        (["--tracking-uri", "http://localhost:5000"], "need --to mlflow"),
        (["--to", "mlflow", "--tracking-uri", "http://127.0.0.1:{port}"],
         "cannot reach the MLflow server at http://127.0.0.1:"),
        (["--out", "{blocker}/sub"], "cannot write"),
        (["--results", "{tmp}/empty"], "no records under"),
        (["--results", "{tmp}/missing"], "no results directory"),
    ],
)
def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                     fragment: str) -> None:
    """In this process (the CLI's own entry point; a subprocess per case costs a torch
    import); test_missing_optional_package_is_one_line runs the command as a user does."""
    results = tmp_path / "results"
    write_runs(results, committed_lines(1))
    (tmp_path / "empty").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    full = ["--results", str(results)] + [a.format(tmp=tmp_path, blocker=blocker, port=_free_port())
                                       for a in args]
    code = main(["export", *full])
    err = capsys.readouterr().err
    one_line_error(subprocess.CompletedProcess([], code, "", err), fragment)
    assert not (results / "export").exists() and not (results / "mlflow").exists()


@pytest.mark.parametrize(("module", "args", "hint"), [
    ("mlflow", ["--to", "mlflow"], "pip install '.[mlflow]'"),
    ("pyarrow", ["--format", "parquet"], "pip install '.[parquet]'"),
])
def test_missing_optional_package_is_one_line(tmp_path: Path, module: str, args: list[str],
                                              hint: str) -> None:
    """Without the extra: one line naming the install command, exit 2, nothing written.

    The real package is hidden by a module of the same name that fails to import, as an
    environment without the extra would."""
    shadow = tmp_path / "shadow" / module
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError('no module named {module}')\n")
    results = tmp_path / "results"
    write_runs(results, committed_lines(1))
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    p = run_cli("export", "--results", str(results), *args, env=env)
    one_line_error(p, hint)
    assert not (results / "export").exists() and not (results / "mlflow").exists()


# --- MLflow ---------------------------------------------------------------------------------

def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_key(client: Any, experiment: str) -> dict[str, Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    keys = [r.data.tags["lenet_bench.key"] for r in runs]
    assert len(keys) == len(set(keys)), f"duplicate runs: {sorted(keys)}"
    return dict(zip(keys, runs, strict=True))


def check_run(client: Any, run: Any, rec: dict[str, Any]) -> None:
    """Params, metrics, history steps, tags and times of one MLflow run against its record."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    data = run.data
    assert data.params == {k: text(v) for k, v in flat(rec["config"]).items()}
    assert data.params["lr"] == json.dumps(rec["config"]["lr"])
    assert data.params["variant"] == rec["variant"]
    m = rec["metrics"]
    for key in ("test_acc", "test_loss", "top1_error", "top3_error", "top5_error",
                "params_trainable", "params_total", "flops_per_example"):
        assert data.metrics[key] == pytest.approx(m[key], rel=1e-12, abs=0), key
    for i, acc in enumerate(m["per_class_acc"]):
        assert data.metrics[f"per_class_acc.{i}"] == pytest.approx(acc, rel=1e-12)
    assert data.metrics["timing.train_examples_per_s"] == pytest.approx(
        rec["timing"]["train_examples_per_s"], rel=1e-12)
    assert data.metrics["timing.inference_examples_per_s.1024"] == pytest.approx(
        rec["timing"]["inference_examples_per_s"]["1024"], rel=1e-12)
    for field in ("test_acc", "test_loss", "train_loss", "train_acc", "lr"):
        hist = client.get_metric_history(run.info.run_id, f"history.{field}")
        got = sorted((h.step, h.value) for h in hist)
        want = [(h["epoch"], pytest.approx(h[field], rel=1e-12)) for h in rec["history"]]
        assert got == want, field
    per_epoch = client.get_metric_history(run.info.run_id, "history.train_examples_per_s")
    assert sorted(h.step for h in per_epoch) == [t["epoch"] for t in rec["timing"]["per_epoch"]]
    tags = data.tags
    env = rec["env"]
    assert (tags["run_id"], tags["suite"], tags["profile"]) == \
        (rec["run_id"], rec["suite"], rec["profile"])
    assert tags["git_commit"] == env["git_commit"] == tags["mlflow.source.git.commit"]
    assert tags["device"] == env["device"] and tags["status"] == rec["status"]
    assert tags["seed"] == str(rec["seed"]) and tags["variant"] == rec["variant"]
    assert run.info.status == "FINISHED"
    started = pd.Timestamp(env["started"]).value // 10**6
    ended = pd.Timestamp(env["ended"]).value // 10**6
    assert (run.info.start_time, run.info.end_time) == (started, ended)
    record_json = client.download_artifacts(run.info.run_id, "record.json")
    assert json.loads(Path(record_json).read_text()) == rec


def test_mlflow_local_store(tmp_path: Path) -> None:
    """Export, re-export (no duplicates), add a record (one new run), re-run one (replaced)."""
    from safetensors.numpy import load_file, save_file

    results = tmp_path / "results"
    lines = committed_lines(4)
    runs_file = write_runs(results, lines[:3])
    recs = read_records(runs_file)  # as the project reads them (an older schema brought up)
    weights = results / "variants" / "quick" / "weights" / f"{recs[0]['run_id']}.safetensors"
    weights.parent.mkdir(parents=True)
    save_file({"conv.weight": np.arange(6, dtype=np.float32)}, str(weights))

    p = run_cli("export", "--to", "mlflow", "--results", str(results))
    assert p.returncode == 0, p.stderr
    assert "3 new, 0 replaced, 0 already exported" in p.stdout
    uri = f"sqlite:///{(results / 'mlflow' / 'mlflow.db').resolve()}"  # the documented store
    assert f"mlflow ui --backend-store-uri {uri}" in p.stdout
    client = client_for(uri)
    got = runs_by_key(client, "lenet-bench")
    assert set(got) == {f"variants/quick/{r['run_id']}" for r in recs[:3]}
    for rec in recs[:3]:
        check_run(client, got[f"variants/quick/{rec['run_id']}"], rec)
    first = got[f"variants/quick/{recs[0]['run_id']}"]
    assert first.info.artifact_uri.startswith((results / "mlflow" / "artifacts").resolve()
                                              .as_uri())
    listed = [f.path for f in client.list_artifacts(first.info.run_id, "weights")]
    assert listed == [f"weights/{weights.name}"]
    local = client.download_artifacts(first.info.run_id, listed[0], str(tmp_path))
    assert load_file(local)["conv.weight"].tolist() == list(range(6))
    assert client.list_artifacts(got[f"variants/quick/{recs[1]['run_id']}"].info.run_id,
                                 "weights") == []
    ids = {k: r.info.run_id for k, r in got.items()}

    # Exporting again creates nothing: every run is matched on its record-key tag.
    assert main(["export", "--to", "mlflow", "--results", str(results)]) == 0
    again = runs_by_key(client, "lenet-bench")
    assert {k: r.info.run_id for k, r in again.items()} == ids

    # A record added since: exactly one new run, the others untouched.
    write_runs(results, [lines[3]])
    recs.append(read_records(runs_file)[-1])
    assert main(["export", "--to", "mlflow", "--results", str(results)]) == 0
    after = runs_by_key(client, "lenet-bench")
    assert len(after) == 4
    new = set(after) - set(ids)
    assert new == {f"variants/quick/{recs[3]['run_id']}"}
    assert all(after[k].info.run_id == v for k, v in ids.items())
    check_run(client, after[new.pop()], recs[3])

    # A run re-run with --force supersedes its record: its MLflow run is replaced, not doubled.
    rerun = json.loads(lines[1])
    rerun["metrics"]["test_acc"] = 0.5
    rerun["env"]["ended"] = "2026-12-01T00:00:00+00:00"
    write_runs(results, [json.dumps(rerun, sort_keys=True)])
    rerun = latest_by_id(read_records(runs_file))[rerun["run_id"]]
    assert rerun["metrics"]["test_acc"] == 0.5
    assert main(["export", "--to", "mlflow", "--results", str(results)]) == 0
    final = runs_by_key(client, "lenet-bench")
    key = f"variants/quick/{rerun['run_id']}"
    assert len(final) == 4 and final[key].info.run_id != ids[key]
    check_run(client, final[key], rerun)
    assert client.get_run(ids[key]).info.lifecycle_stage == "deleted"


def test_failed_and_diverged_records(tmp_path: Path) -> None:
    """A failed run (no metrics, no history) and a diverged one (its last epoch has no test
    loss and no timing) are rows and runs too, with the gaps left empty, never invented.

    Both are real records turned into what bench.runner / bench.engine write in those cases."""
    base = [json.loads(ln) for ln in committed_lines(2)]
    failed = {**base[0], "status": "failed", "error": "RuntimeError: out of memory",
              "traceback": "Traceback (most recent call last):\n  ...", "metrics": {},
              "history": [], "timing": {}}
    div = json.loads(json.dumps(base[1]))
    div.update(status="diverged", error="test loss not finite", diverged_epoch=2)
    div["history"][-1]["test_loss"] = None
    div["timing"]["per_epoch"] = div["timing"]["per_epoch"][:-1]
    div["timing"].pop("inference_examples_per_s")
    div["metrics"] = {k: div["metrics"][k]
                      for k in ("params_trainable", "params_total", "flops_per_example")}
    results = tmp_path / "results"
    write_runs(results, [json.dumps(failed), json.dumps(div)])

    assert main(["export", "--results", str(results), "--format", "parquet"]) == 0
    runs = pd.read_parquet(results / "export" / "runs.parquet")
    assert list(runs["status"]) == ["failed", "diverged"]
    assert runs["metrics.test_acc"].isna().all() and "traceback" not in runs.columns
    assert runs["error"].tolist() == [failed["error"], div["error"]]
    assert pd.isna(runs["diverged_epoch"][0]) and runs["diverged_epoch"][1] == 2
    assert str(runs["metrics.test_acc"].dtype) == "float64"  # present, typed, though empty
    hist = pd.read_parquet(results / "export" / "history.parquet")
    assert list(hist["run_id"]) == [div["run_id"]] * len(div["history"])
    last = hist.iloc[-1]
    assert pd.isna(last["test_loss"]) and pd.isna(last["train_examples_per_s"])
    assert last["test_acc"] == div["history"][-1]["test_acc"]

    assert main(["export", "--to", "mlflow", "--results", str(results)]) == 0
    uri = f"sqlite:///{(results / 'mlflow' / 'mlflow.db').resolve()}"
    client = client_for(uri)
    got = runs_by_key(client, "lenet-bench")
    f_run = got[f"variants/quick/{failed['run_id']}"]
    assert f_run.info.status == "FAILED" and f_run.data.metrics == {}
    assert f_run.data.tags["error"] == failed["error"]
    d_run = got[f"variants/quick/{div['run_id']}"]
    assert d_run.info.status == "FINISHED" and d_run.data.tags["status"] == "diverged"
    assert "test_acc" not in d_run.data.metrics
    assert d_run.data.metrics["params_trainable"] == div["metrics"]["params_trainable"]
    steps = {k: [m.step for m in client.get_metric_history(d_run.info.run_id, k)]
             for k in ("history.test_acc", "history.test_loss")}
    assert steps == {"history.test_acc": [1, 2], "history.test_loss": [1]}


def test_mlflow_sqlite_uri_keeps_artifacts_beside_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A `--tracking-uri sqlite:///…` store gets its artifacts beside the database file, not
    in MLflow's default `./mlruns` under whatever folder the command runs in."""
    results = tmp_path / "results"
    rec = json.loads(write_runs(results, committed_lines(1)).read_text())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    db = tmp_path / "store" / "runs.db"
    db.parent.mkdir()
    assert main(["export", "--to", "mlflow", "--results", str(results),
                 "--tracking-uri", f"sqlite:///{db}"]) == 0
    run = runs_by_key(client_for(f"sqlite:///{db}"), "lenet-bench")[
        f"variants/quick/{rec['run_id']}"]
    assert run.info.artifact_uri.startswith((db.parent / "artifacts").as_uri())
    assert list(cwd.iterdir()) == [] and not (results / "mlflow").exists()
    assert any((db.parent / "artifacts").rglob("record.json"))


def test_mlflow_running_server(tmp_path: Path) -> None:
    """`--tracking-uri` sends the runs to a running MLflow server (artifacts proxied by it)."""
    results = tmp_path / "results"
    recs = read_records(write_runs(results, committed_lines(2)))
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
        for _ in range(2):  # the second export must add nothing
            assert main(["export", "--to", "mlflow", "--results", str(results),
                         "--tracking-uri", uri, "--experiment", "bench-test"]) == 0
        client = client_for(uri)
        got = runs_by_key(client, "bench-test")
        assert len(got) == 2
        for rec in recs:
            check_run(client, got[f"variants/quick/{rec['run_id']}"], rec)
        assert not (results / "mlflow").exists()  # nothing in the local store
        assert any((tmp_path / "server-artifacts").rglob("record.json"))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
