"""Speed levers: seed packing equals one-by-one training; each lever keeps smoke accuracy."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch

from bench.config import resolve_config
from bench.engine import build_model, run_training
from bench.errors import UsageError
from bench.packed import can_pack, run_packed
from variants import list_variants

SHORT = {"train_subset": 640, "test_subset": 500, "num_epochs": 1}  # 5 steps at batch 128


@pytest.mark.parametrize("variant", ["lenet_modern", "lenet_d2l", "lenet5", "cnn2_fidle", "mlp"])
def test_packed_equals_separate(variant: str, data_root: Path) -> None:
    ov = dict(SHORT)
    if variant == "lenet5":
        ov["train_subset"] = 160  # 5 steps at its batch of 32
    cfgs = [resolve_config(variant, None, s, ov) for s in (0, 1)]
    packed = run_packed(cfgs, data_root, measure_inference=False)
    for cfg, body in zip(cfgs, packed, strict=True):
        alone = run_training(cfg, data_root, measure_inference=False)
        assert body["status"] == alone["status"] == "ok"
        hp, ha = body["history"][0], alone["history"][0]
        assert hp["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-5)
        assert hp["test_loss"] == pytest.approx(ha["test_loss"], rel=1e-4)
        assert abs(hp["test_acc"] - ha["test_acc"]) <= 0.004  # ≤ 2 of 500 borderline images
        assert body["timing"]["packed_members"] == 2
    assert packed[0]["history"] != packed[1]["history"]  # own init and data order each


def test_packed_members_have_own_weights(data_root: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfgs = [resolve_config("mlp", None, s, SHORT) for s in (0, 1)]
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    run_packed(cfgs, data_root, weights_files=files, measure_inference=False)
    a, b = (load_file(str(f)) for f in files)
    assert set(a) == set(b)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_batchnorm_is_not_packed() -> None:
    cfg = resolve_config("lenet5_bn", None, 0)
    assert not can_pack(build_model(cfg))
    packable = [v for v in list_variants() if can_pack(build_model(resolve_config(v, None, 0)))]
    assert "lenet_d2l" in packable and "lenet5" in packable


def test_pack_seeds_through_the_cli(tmp_path: Path, data_root: Path) -> None:
    from bench.cli import main
    from tests.conftest import read_jsonl

    rc = main(["run", "--suite", "variants", "--profile", "smoke", "--quiet", "--results",
               str(tmp_path), "--variants", "cnn2_fidle", "--seeds", "2", "--set",
               "pack_seeds=true", "--set", "train_subset=1024", "--set", "test_subset=500"])
    assert rc == 0
    recs = read_jsonl(tmp_path / "variants/smoke/runs.jsonl")
    assert [r["seed"] for r in recs] == [0, 1]
    assert all(r["packed_seeds"] == [0, 1] and r["config"]["pack_seeds"] for r in recs)
    assert all(r["timing"]["packed_members"] == 2 for r in recs)


def _smoke_acc(variant: str, seed: int, data_root: Path, **levers: object) -> float:
    cfg = resolve_config(variant, None, seed, {"train_subset": 10_000, "test_subset": 2_000,
                                               "num_epochs": 1, **levers})
    body = run_training(cfg, data_root, measure_inference=False)
    assert body["status"] == "ok", body
    return body["metrics"]["test_acc"]


@pytest.fixture(scope="module")
def cnn_band(data_root: Path) -> tuple[float, float]:
    accs = [_smoke_acc("cnn2_fidle", s, data_root) for s in range(3)]
    return statistics.fmean(accs), statistics.stdev(accs)


@pytest.mark.parametrize(
    "levers",
    [{"channels_last": True}, {"optimizer_impl": "fused"}, {"optimizer_impl": "for"},
     {"amp_bf16": True}],
    ids=["channels_last", "fused", "for", "bf16"],
)
def test_lever_keeps_smoke_accuracy(levers: dict, cnn_band: tuple[float, float],
                                    data_root: Path) -> None:
    mean, std = cnn_band
    acc = _smoke_acc("cnn2_fidle", 0, data_root, **levers)
    assert abs(acc - mean) <= max(3 * std, 0.01), (levers, acc, mean, std)


def test_compile_runs_or_falls_back(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    cfg = resolve_config("mlp", None, 0, {**SHORT, "compile": True})
    body = run_training(cfg, data_root, measure_inference=False)
    assert body["status"] == "ok"
    assert "ran eagerly" in body["timing"]["fallback"]
    plain = run_training(resolve_config("mlp", None, 0, SHORT), data_root,
                         measure_inference=False)
    assert body["metrics"]["test_acc"] == plain["metrics"]["test_acc"]


def test_cuda_graphs_needs_cuda() -> None:
    with pytest.raises(UsageError, match="cuda_graphs needs --device cuda"):
        resolve_config("mlp", None, 0, {"cuda_graphs": True}, device="cpu")


def test_perf_command_writes_its_record(tmp_path: Path, data_root: Path) -> None:
    import json

    from tests.conftest import run_cli

    p = run_cli("perf", "--variants", "mlp", "--steps", "3", "--pack", "2", "--workers", "0",
                "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "engine ÷ usual" in p.stdout and "mlp" in p.stdout
    files = list(tmp_path.glob("perf-cpu-*.json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    row = rec["rows"][0]
    assert row["variant"] == "mlp" and row["packed_members"] == 2
    assert row["engine_vs_usual"] == pytest.approx(
        row["engine_examples_per_s"] / row["usual_loop_examples_per_s"])
    assert set(row["inference_examples_per_s"]) == {"1", "128", "4096"}
    assert rec["env"]["torch"] == torch.__version__
