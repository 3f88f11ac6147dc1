"""Shared fixtures: the real data root (fetched by `make data`) and a small-run CLI helper."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets, verified (fetched on first use if `make data` did not run)."""
    from bench.data import ensure_dataset, resolve_data_root

    root = resolve_data_root(None)
    if not root.is_absolute():
        root = (REPO / root).resolve()
    for name in ("mnist", "fashion-mnist"):
        ensure_dataset(name, root, log=lambda m: None)
    return root


def under_ci() -> bool:
    ci = os.environ.get("CI", "")
    return bool(ci) and ci.lower() != "false"


def required_tool(msg: str) -> NoReturn:
    """Something a test needs is missing: a failure under CI, where the setup provides it; on
    a workstation a skip whose one line (`msg`) says how to enable the test."""
    if under_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGS` in a subprocess (exit code and stderr as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd or REPO, capture_output=True,
        text=True, timeout=timeout, env=env,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


#: The small local run several tests compare against: smoke profile, seed 0, three variants.
LOCAL_SMOKE = ["--variants", "mlp,cnn2_fidle,cnn_fidle", "--set", "train_subset=1024", "--set",
               "test_subset=256"]


@pytest.fixture(scope="session")
def _local_smoke(tmp_path_factory: pytest.TempPathFactory,
                 data_root: Path) -> dict[str, dict[str, Any]]:
    from bench.cli import main

    results = tmp_path_factory.mktemp("local-smoke")
    assert main(["run", "--suite", "variants", "--profile", "smoke", "--quiet", "--jobs", "1",
                 "--results", str(results), *LOCAL_SMOKE]) == 0
    return {r["run_id"]: r for r in read_jsonl(results / "variants/smoke/runs.jsonl")}


@pytest.fixture
def local_smoke_records(_local_smoke: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """LOCAL_SMOKE's records by run id (`run --jobs 1`), trained once per session (test_jobs
    and test_ray compare other executors with them). A copy for each test, and never the
    folder: no test can change what another one reads."""
    return copy.deepcopy(_local_smoke)


@pytest.fixture(scope="session")
def rendered_report(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Any:
    """The report rendered once per session from the fixed records of tests/report_records.py."""
    from tests.report_records import render_fixture

    return render_fixture(tmp_path_factory.mktemp("report"), data_root)
