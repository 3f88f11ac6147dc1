"""The Ray executor on a local 2-CPU Ray instance: same records as local, failures, resume."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from tests.conftest import LOCAL_SMOKE, read_jsonl

# Two of the session's local runs (conftest LOCAL_SMOKE: same subsets, so the same run ids).
CHEAP_VARIANTS = ("mlp", "cnn2_fidle")
CHEAP = ["--variants", ",".join(CHEAP_VARIANTS), *LOCAL_SMOKE[2:]]


def _run(tmp: Path, *extra: str) -> int:
    # --jobs 1 for the local side: the same threads per run as a Ray task, so the same bits
    jobs = [] if "ray" in extra else ["--jobs", "1"]
    return main(["run", "--suite", "variants", "--profile", "smoke", "--quiet",
                 "--results", str(tmp), *jobs, *extra])


def _records(tmp: Path) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in read_jsonl(tmp / "variants/smoke/runs.jsonl")}


# Started in every Ray worker of this module (and only there): lenet_modern's tasks raise
# inside the worker, so Ray's own error path is exercised, not the driver's. The product has
# no hook for this; the test puts a sitecustomize on the workers' PYTHONPATH.
SITECUSTOMIZE = """
import bench.runner as runner

_train_batch = runner.train_batch


def train_batch(cfgs, *args, **kwargs):
    if cfgs[0].variant == "lenet_modern":
        raise RuntimeError("injected failure in the Ray worker")
    return _train_batch(cfgs, *args, **kwargs)


runner.train_batch = train_batch
"""


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Ray instance for the module; its workers fail lenet_modern on purpose."""
    import os

    ray = pytest.importorskip("ray")
    hook = tmp_path_factory.mktemp("worker-site")
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_records_match_local_bit_for_bit_and_resume(
    ray_local: Any, local_smoke_records: dict[str, dict[str, Any]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    remote = tmp_path / "ray"
    capsys.readouterr()
    assert _run(remote, *CHEAP, "--executor", "ray") == 0
    # the same runs trained locally with --jobs 1 (CHEAP's variants of the session's run)
    a = {rid: r for rid, r in local_smoke_records.items() if r["variant"] in CHEAP_VARIANTS}
    b = _records(remote)
    assert set(a) == set(b) and len(b) == 2
    for rid, rec in b.items():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["metrics"] == a[rid]["metrics"]
        assert rec["history"] == a[rid]["history"]
        # the worker's environment, not the driver's: which node trained it, same threads
        assert rec["env"]["executor"] == "ray" and rec["env"]["ray_node_id"]
        assert rec["env"]["host"] and rec["env"]["threads"] == a[rid]["env"]["threads"]
        assert "executor" not in a[rid]["env"]
        assert (remote / "variants/smoke/weights" / f"{rid}.safetensors").is_file()
    out = capsys.readouterr().out
    assert "[2/2]" in out  # the same --quiet progress lines as the local executor
    assert _run(remote, *CHEAP, "--executor", "ray") == 0
    assert "nothing to train" in capsys.readouterr().out
    assert _records(remote) == b


def test_task_that_raises_becomes_failed_record(
    ray_local: Any, data_root: Path, tmp_path: Path
) -> None:
    # lenet_modern raises inside the worker (SITECUSTOMIZE, only on the Ray workers' path).
    args = ("--variants", "lenet_modern,mlp", "--set", "train_subset=1024",
            "--set", "test_subset=256", "--executor", "ray")
    assert _run(tmp_path, *args) == 0
    recs = {r["variant"]: r for r in read_jsonl(tmp_path / "variants/smoke/runs.jsonl")}
    assert set(recs) == {"lenet_modern", "mlp"}
    assert recs["lenet_modern"]["status"] == "failed"
    assert recs["lenet_modern"]["error"].startswith("RuntimeError: injected failure in the Ray")
    assert recs["mlp"]["status"] == "ok"


def test_missing_ray_is_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert _run(tmp_path / "r", "--executor", "ray") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lenet-bench: error:")
    assert "pip install '.[ray]'" in lines[0]
    assert not (tmp_path / "r").exists()


def test_ray_options_need_ray_executor(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path / "r", "--gpus-per-run", "0.25") == 2
    assert "need --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_infeasible_gpu_request_is_refused(ray_local: Any, data_root: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Ray would queue a task needing a GPU on a GPU-less cluster forever; refuse it instead.
    assert _run(tmp_path, *CHEAP, "--executor", "ray", "--gpus-per-run", "0.25") == 2
    assert "the Ray cluster has 0" in capsys.readouterr().err
    assert not (tmp_path / "variants/smoke/runs.jsonl").exists()
    assert _run(tmp_path, *CHEAP, "--executor", "ray", "--cpus-per-run", "3") == 2
    assert "each run asks for 3 CPUs but the Ray cluster has 2" in capsys.readouterr().err
    assert not (tmp_path / "variants/smoke/runs.jsonl").exists()


def test_group_that_falls_back_is_not_recorded_as_packed(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packed group whose packed training fails is trained one by one (runner.train_batch,
    which the Ray worker calls too), and says so: its records must not claim `packed_seeds`."""
    import bench.packed
    from bench.config import resolve_config
    from bench.runner import train_batch

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("packing broke")

    monkeypatch.setattr(bench.packed, "run_packed", broken)
    ov = {"train_subset": 256, "test_subset": 128, "num_epochs": 1}
    cfgs = [resolve_config("mlp", None, s, ov) for s in (0, 1)]
    files = [tmp_path / f"{s}.st" for s in (0, 1)]
    results, packed = train_batch(cfgs, data_root, files)
    assert packed is False and [r.status for r in results] == ["ok", "ok"]
    monkeypatch.undo()
    results, packed = train_batch(cfgs, data_root, files)
    assert packed is True and all(r.timing["packed_members"] == 2 for r in results)
