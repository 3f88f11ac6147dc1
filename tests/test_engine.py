"""The engine on real data: complete records, bit-for-bit repeats, divergence, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from tests.conftest import read_jsonl

SMALL = ["--set", "train_subset=2000", "--set", "test_subset=500"]


def _run(tmp: Path, *extra: str) -> int:
    # One process, so records land in plan order (with --jobs 2 they land as runs finish).
    return main(["run", "--suite", "variants", "--profile", "smoke", "--quiet", "--jobs", "1",
                 "--results", str(tmp), *extra])


@pytest.fixture(scope="module")
def two_run_dirs(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> list[Path]:
    """lenet_modern, seeds 0 and 1, trained twice each into separate result dirs."""
    out = []
    for name in ("a", "b"):
        d = tmp_path_factory.mktemp(name)
        assert _run(d, "--variants", "lenet_modern", "--seeds", "2", *SMALL) == 0
        out.append(d)
    return out


@pytest.fixture(scope="module")
def two_runs(two_run_dirs: list[Path]) -> list[list[dict]]:
    return [read_jsonl(d / "variants" / "smoke" / "runs.jsonl") for d in two_run_dirs]


def test_record_is_complete(two_runs: list[list[dict]]) -> None:
    rec = two_runs[0][0]
    for key in ("run_id", "suite", "profile", "variant", "dataset", "seed", "config", "status",
                "metrics", "history", "timing", "env"):
        assert key in rec, key
    assert rec["status"] == "ok" and rec["variant"] == "lenet_modern"
    m = rec["metrics"]
    assert 0.2 < m["test_acc"] <= 1.0  # 16 SGD steps on 2k images: well above chance (0.1)
    assert m["top1_error"] == pytest.approx(1 - m["test_acc"])
    assert m["top1_error"] >= m["top3_error"] >= m["top5_error"] >= 0
    assert len(m["per_class_acc"]) == 10 and len(m["confusion"]) == 10
    assert sum(map(sum, m["confusion"])) == 500 == m["n_test"]
    assert m["params_trainable"] == 61_706 and m["flops_per_example"] > 0
    assert len(rec["history"]) == 1 and rec["history"][0]["epoch"] == 1
    t = rec["timing"]
    assert t["train_examples_per_s"] > 0 and set(t["inference_examples_per_s"]) == {"1", "1024"}
    env = rec["env"]
    for key in ("python", "torch", "torchvision", "device", "cpu", "threads", "git_commit",
                "git_dirty", "started", "ended"):
        assert key in env, key
    assert rec["config"]["train_subset"] == 2000 and rec["config"]["seed"] == 0


def test_same_seed_is_bit_identical_and_seeds_differ(two_runs: list[list[dict]]) -> None:
    a, b = two_runs
    for ra, rb in zip(a, b, strict=True):
        assert ra["run_id"] == rb["run_id"]
        assert json.dumps(ra["metrics"], sort_keys=True) == json.dumps(rb["metrics"],
                                                                       sort_keys=True)
        assert ra["history"] == rb["history"]
    assert a[0]["seed"] != a[1]["seed"]
    assert a[0]["history"] != a[1]["history"]


def test_weights_are_saved_and_reload(two_runs: list[list[dict]],
                                      two_run_dirs: list[Path]) -> None:
    from bench.config import RunConfig
    from bench.engine import load_weights

    rec = two_runs[0][0]
    cfg = RunConfig(**rec["config"])
    assert cfg.run_id() == rec["run_id"]
    # weights live beside the records of the results dir the fixture trained into (not any
    # file of that name another test left in the session's temporary folders)
    weights = two_run_dirs[0] / "variants" / "smoke" / "weights" / f"{rec['run_id']}.safetensors"
    assert weights.is_file(), "weights file missing"
    model = load_weights(cfg, weights)
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_divergence_is_recorded_and_suite_continues(tmp_path: Path, data_root: Path) -> None:
    # lenet_modern (SGD) blows up at lr=1e6 and runs first; mlp (Adam, whose step is bounded
    # by lr) does not produce NaN, and must still be trained after the diverged run.
    rc = _run(tmp_path, "--variants", "lenet_modern,mlp", "--set", "lr=1e6", *SMALL)
    assert rc == 0
    recs = read_jsonl(tmp_path / "variants/smoke/runs.jsonl")
    assert [r["variant"] for r in recs] == ["lenet_modern", "mlp"]
    assert recs[0]["status"] == "diverged" and recs[0]["diverged_epoch"] == 1
    assert "nan" in recs[0]["error"] or "inf" in recs[0]["error"]
    assert recs[1]["status"] == "ok"


def test_resume_skips_finished_and_redoes_truncated(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--variants", "cnn2_fidle,mlp", *SMALL)
    assert _run(tmp_path, *args) == 0
    path = tmp_path / "variants/smoke/runs.jsonl"
    first = read_jsonl(path)
    assert len(first) == 2
    capsys.readouterr()
    assert _run(tmp_path, *args) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert read_jsonl(path) == first
    # cut the last record in half, as a crash mid-write would
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    assert _run(tmp_path, *args) == 0
    again = read_jsonl(path)
    assert len(again) == 2 and [r["run_id"] for r in again] == [r["run_id"] for r in first]
    assert again[1]["metrics"] == first[1]["metrics"]  # retrained, bit for bit
