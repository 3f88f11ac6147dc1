"""Speed levers: seed packing equals one-by-one training; each lever keeps smoke accuracy."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.config import RunConfig, resolve_config
from bench.engine import build_model, run_training
from bench.errors import UsageError
from bench.packed import can_pack, run_packed
from variants import list_variants

SHORT = {"train_subset": 640, "test_subset": 500, "num_epochs": 1}  # 5 steps at batch 128


def _train(cfg: RunConfig, root: Path, **kw: Any) -> dict[str, Any]:
    """run_training's result as the record body it becomes."""
    return run_training(cfg, root, **kw).to_dict()


def _packed(cfgs: list[RunConfig], root: Path, **kw: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in run_packed(cfgs, root, **kw)]


@pytest.mark.parametrize("variant", ["lenet_modern", "lenet_d2l", "lenet5", "cnn2_fidle", "mlp"])
def test_packed_equals_separate(variant: str, data_root: Path) -> None:
    ov = dict(SHORT)
    if variant == "lenet5":
        ov["train_subset"] = 160  # 5 steps at its batch of 32
    cfgs = [resolve_config(variant, None, s, ov) for s in (0, 1)]
    packed = _packed(cfgs, data_root, measure_inference=False)
    for cfg, body in zip(cfgs, packed, strict=True):
        alone = _train(cfg, data_root, measure_inference=False)
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
    _packed(cfgs, data_root, weights_files=files, measure_inference=False)
    a, b = (load_file(str(f)) for f in files)
    assert set(a) == set(b)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_batchnorm_is_not_packed() -> None:
    cfg = resolve_config("lenet5_bn", None, 0)
    assert not can_pack(build_model(cfg))
    packable = [v for v in list_variants() if can_pack(build_model(resolve_config(v, None, 0)))]
    assert "lenet_d2l" in packable and "lenet5" in packable


def test_packed_levers_compile_and_bf16(data_root: Path) -> None:
    """The packed path applies compile (same numbers as packed eager, up to reassociation) and
    bf16 autocast (close, not equal: it changes the numbers, which is why it is opt-in)."""
    import shutil

    def packed(**levers: object) -> list[dict]:
        # 2 whole batches of lenet_d2l's 256: a partial last batch would make Dynamo compile
        # the packed step a second time (the costliest part of this test), checking nothing more
        ov = {**SHORT, "train_subset": 512, **levers}
        cfgs = [resolve_config("lenet_d2l", None, s, ov) for s in (0, 1)]
        return _packed(cfgs, data_root, measure_inference=False)

    eager, compiled, bf16 = packed(), packed(compile=True), packed(amp_bf16=True)
    for e, c, b in zip(eager, compiled, bf16, strict=True):
        he, hc, hb = e["history"][0], c["history"][0], b["history"][0]
        assert hc["train_loss"] == pytest.approx(he["train_loss"], rel=1e-5)
        assert hc["test_loss"] == pytest.approx(he["test_loss"], rel=1e-4)
        assert hb["train_loss"] == pytest.approx(he["train_loss"], rel=0.02)
        assert hb["train_loss"] != he["train_loss"]  # autocast really ran
        if shutil.which("g++") or shutil.which("c++"):
            assert "fallback" not in c["timing"], c["timing"]["fallback"]


def test_packed_compile_that_fails_falls_back(data_root: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled packed step that fails on first use is redone eagerly: same numbers as an
    eager packed run, and the records say so."""
    cfgs = [resolve_config("mlp", None, s, SHORT) for s in (0, 1)]
    eager = _packed(cfgs, data_root, measure_inference=False)

    def broken(fn: object, **_: object) -> object:
        def fail(*a: object, **k: object) -> None:
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    cfgs = [resolve_config("mlp", None, s, {**SHORT, "compile": True}) for s in (0, 1)]
    fell = _packed(cfgs, data_root, measure_inference=False)
    for e, f in zip(eager, fell, strict=True):
        assert f["history"] == e["history"] and f["metrics"] == e["metrics"]
        assert f["timing"]["fallback"] == \
            "torch.compile failed (RuntimeError: no C++ compiler); ran eagerly"


def test_channels_last_trains_one_model_at_a_time(tmp_path: Path) -> None:
    from bench.packed import packable
    from bench.runner import pack_groups
    from bench.suites import expand, get_profile, load_suite

    ov = {"channels_last": True, "pack_seeds": True}
    cfg = resolve_config("lenet_d2l", None, 0, ov)
    assert can_pack(build_model(cfg)) and not packable(cfg, build_model(cfg))
    with pytest.raises(ValueError, match="cannot be packed"):
        _packed([cfg, resolve_config("lenet_d2l", None, 1, ov)], tmp_path,
                   measure_inference=False)
    suite, smoke = load_suite("variants"), get_profile("smoke")
    plan = expand(suite, smoke, variants="lenet_d2l", seeds=2,
                  overrides={"pack_seeds": True, "channels_last": True})
    assert [len(g) for g in pack_groups(plan)] == [1, 1]
    plan = expand(suite, smoke, variants="lenet_d2l", seeds=2, overrides={"pack_seeds": True})
    assert [len(g) for g in pack_groups(plan)] == [2]


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


def _smoke_body(variant: str, seed: int, data_root: Path, **levers: object) -> dict:
    # Whole batches (cnn2_fidle's 512 for training, 1024 for evaluation): a partial last batch
    # would make torch.compile compile the model a second time, for no extra check.
    cfg = resolve_config(variant, None, seed, {"train_subset": 10_240, "test_subset": 2_048,
                                               "num_epochs": 1, **levers})
    body = _train(cfg, data_root, measure_inference=False)
    assert body["status"] == "ok", body
    return body


def _smoke_acc(variant: str, seed: int, data_root: Path, **levers: object) -> float:
    return _smoke_body(variant, seed, data_root, **levers)["metrics"]["test_acc"]


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


def test_compile_keeps_smoke_accuracy(cnn_band: tuple[float, float], data_root: Path) -> None:
    """torch.compile for real (Inductor's C++ backend on the CPU): same accuracy band, and it
    really compiled wherever a C++ compiler is installed (CI's machine has one)."""
    import shutil

    mean, std = cnn_band
    body = _smoke_body("cnn2_fidle", 0, data_root, compile=True)
    assert abs(body["metrics"]["test_acc"] - mean) <= max(3 * std, 0.01), (body, mean, std)
    if shutil.which("g++") or shutil.which("c++"):
        assert "fallback" not in body["timing"], body["timing"]["fallback"]
    else:
        assert "ran eagerly" in body["timing"]["fallback"]


def test_compile_runs_or_falls_back(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    cfg = resolve_config("mlp", None, 0, {**SHORT, "compile": True})
    body = _train(cfg, data_root, measure_inference=False)
    assert body["status"] == "ok"
    assert "ran eagerly" in body["timing"]["fallback"]
    plain = _train(resolve_config("mlp", None, 0, SHORT), data_root,
                         measure_inference=False)
    assert body["metrics"]["test_acc"] == plain["metrics"]["test_acc"]


def test_cuda_graphs_needs_cuda() -> None:
    with pytest.raises(UsageError, match="cuda_graphs needs --device cuda"):
        resolve_config("mlp", None, 0, {"cuda_graphs": True}, device="cpu")


def test_perf_command_writes_its_record(tmp_path: Path, data_root: Path) -> None:
    import json
    import statistics

    from tests.conftest import run_cli

    p = run_cli("perf", "--variants", "mlp", "--steps", "3", "--pack", "2", "--workers", "0",
                "--rounds", "2", "--set", "optimizer_impl=for", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "engine ÷ usual" in p.stdout and "mlp" in p.stdout
    assert "medians of 2 interleaved rounds" in p.stdout and "optimizer_impl=for" in p.stdout
    files = list(tmp_path.glob("perf-cpu-*.json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert rec["rounds"] == 2 and rec["levers"] == {"optimizer_impl": "for"}
    row = rec["rows"][0]
    assert row["variant"] == "mlp" and row["packed_members"] == 2
    samples = row["samples_examples_per_s"]
    assert {k: len(v) for k, v in samples.items()} == {
        "usual": 2, "engine_plain": 2, "engine": 2, "packed": 2}
    per_round = [e / u for e, u in zip(samples["engine"], samples["usual"], strict=True)]
    assert row["engine_vs_usual"]["median"] == pytest.approx(statistics.median(per_round))
    assert row["engine_vs_usual"]["min"] == pytest.approx(min(per_round))
    assert row["engine_examples_per_s"] == pytest.approx(statistics.median(samples["engine"]))
    assert row["fallback"] is None and row["packed_note"] is None
    assert set(row["inference_examples_per_s"]) == {"1", "128", "4096"}
    assert rec["env"]["torch"] == torch.__version__


def test_perf_reports_a_lever_that_fell_back(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """A compiled model that fails on first use is measured eagerly, and perf says so."""
    import json

    from bench.cli import main

    class Broken(torch.nn.Module):  # compiles lazily, then fails on first call, as Inductor
        def forward(self, *_: object) -> None:
            raise RuntimeError("no C++ compiler")

    def broken(model: torch.nn.Module, **_: object) -> torch.nn.Module:
        return Broken()

    monkeypatch.setattr(torch, "compile", broken)
    assert main(["perf", "--variants", "mlp", "--steps", "2", "--pack", "2", "--workers", "0",
                 "--rounds", "2", "--set", "compile=true", "--out", str(tmp_path),
                 "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    note = "torch.compile failed (RuntimeError: no C++ compiler); ran eagerly"
    assert f"note: mlp: {note}; packed: {note}" in out  # each said once, over 2 rounds
    rec = json.loads(next(tmp_path.glob("perf-*.json")).read_text())
    assert rec["rows"][0]["fallback"] == f"{note}; packed: {note}"
    assert len(rec["rows"][0]["samples_examples_per_s"]["packed"]) == 2


@pytest.mark.parametrize("flag", [["--rounds", "0"], ["--steps", "0"], ["--workers", "-1"]])
def test_perf_rejects_bad_counts(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main  # in this process: the usage check needs no torch import

    assert main(["perf", "--variants", "mlp", *flag]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "must be ≥" in err
