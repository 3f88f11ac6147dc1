"""The d2l §7.6 exercise suites: expansion, the ex3 rule, reuse, activations and OOD inputs."""

from __future__ import annotations

import json
import math
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import d2l
from bench.config import config_key
from bench.errors import UsageError
from bench.records import append_record, runs_path
from bench.suites import PROFILES, SUITES_DIR, PlannedRun, expand, load_suite, suite_names
from tests.conftest import run_cli

D2L = ["d2l-ex1", "d2l-ex2", "d2l-ex3", "d2l-ex4", "d2l-ex5"]
# Runs per suite and profile (ex3 is counted from ex2's records in its own test).
EXPECTED = {
    "d2l-ex1": {"smoke": 4, "quick": 8, "full": 20},  # 2×2 factorial × seeds
    "d2l-ex2": {"smoke": 22, "quick": 46, "full": 115},  # 22 configs (+ epochs runs)
    "d2l-ex4": {"smoke": 2, "quick": 2, "full": 10},
    "d2l-ex5": {"smoke": 2, "quick": 2, "full": 10},
}


def _fake_record(run: PlannedRun, acc: float, status: str = "ok",
                 params: int = 61_706) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "suite": run.suite, "profile": run.profile, "group": run.group,
        "question": run.question, "factor": run.factor, "factor_value": run.factor_value,
        "memberships": run.memberships, "overrides": run.overrides,
        "variant": run.config.variant, "dataset": run.config.dataset, "seed": run.config.seed,
        "config": run.config.to_dict(), "status": status,
        "metrics": {"test_acc": acc, "params_trainable": params} if status == "ok" else {},
    }


def _write_ex2(results: Path, profile: str, acc_of: Any) -> list[PlannedRun]:
    plan = expand(load_suite("d2l-ex2"), PROFILES[profile])
    for run in plan:
        acc, status = acc_of(run)
        append_record(runs_path(results, "d2l-ex2", profile), _fake_record(run, acc, status))
    return plan


def test_suite_set_and_unknown_suite() -> None:
    assert suite_names("d2l") == D2L
    assert suite_names("d2l-ex4") == ["d2l-ex4"]
    assert suite_names("equal") == ["equal-lr", "equal-terms"]
    with pytest.raises(UsageError, match=r"unknown suite 'nope'; valid: variants, d2l, equal, "
                                         r"d2l-ex1"):
        suite_names("nope")


@pytest.mark.parametrize("suite", sorted(EXPECTED))
@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_expansion_counts_and_distinct_ids(suite: str, profile: str) -> None:
    plan = expand(load_suite(suite), PROFILES[profile])
    assert len(plan) == EXPECTED[suite][profile]
    assert len({r.run_id for r in plan}) == len(plan)
    for r in plan:
        assert r.question and r.factor and r.memberships
        assert all(m["question"] and m["factor"] for m in r.memberships)
        assert r.config.dataset == "fashion-mnist"
    if profile == "full":
        assert {r.config.seed for r in plan} == set(range(5))
        assert all(r.config.train_subset is None for r in plan)


def test_ex1_is_a_full_factorial() -> None:
    plan = expand(load_suite("d2l-ex1"), PROFILES["quick"])
    assert sorted({r.factor_value for r in plan}) == [
        "relu/avg", "relu/max", "sigmoid/avg", "sigmoid/max"]
    assert {r.config.variant for r in plan} == {"lenet_modern"}  # the blog's ModernLeNet


def test_ex2_shares_the_baseline_and_covers_every_factor() -> None:
    plan = expand(load_suite("d2l-ex2"), PROFILES["quick"])
    base = [r for r in plan if len(r.memberships) > 1]
    assert len(base) == 2  # one baseline per seed, trained once, counted in 7 groups
    assert {m["group"] for m in base[0].memberships} == {
        "kernel_size", "channels", "conv_layers", "fc_layers", "activation", "lr", "init"}
    levels: dict[str, set[str]] = {}
    for r in plan:
        for m in r.memberships:
            levels.setdefault(m["group"], set()).add(json.dumps(m["factor_value"]))
    assert levels["kernel_size"] == {"3", "4", "5", "6", "7"}
    assert len(levels["channels"]) == 4 and len(levels["conv_layers"]) == 3
    assert len(levels["fc_layers"]) == 4 and len(levels["activation"]) == 4
    assert levels["lr"] == {"0.01", "0.05", "0.1", "0.5"} and len(levels["init"]) == 4
    epochs = [r for r in plan if r.group == "epochs"]
    assert len(epochs) == 2 and all(r.config.num_epochs == 5 for r in epochs)
    conv = [r for r in plan if r.group == "conv_layers"]
    assert all(r.config.model["padding"] == 2 for r in conv)


def test_every_ablation_configuration_builds_and_trains_a_step() -> None:
    """Each distinct model/training config of ex1, ex2 and ex4 takes one SGD step."""
    from bench.engine import build_model, make_optimizer
    from variants import LOSSES

    configs = {}
    for s in ("d2l-ex1", "d2l-ex2", "d2l-ex4"):
        for r in expand(load_suite(s), PROFILES["quick"], seeds=1):
            configs[config_key(r.config.to_dict())] = r.config
    # ex1 4 (lenet_modern's layout) + ex2 23 (22 + the longer epochs runs; the blog's
    # padded network, so none is an ex1 configuration) + ex4 2 (3 epochs in quick)
    assert len(configs) == 4 + 23 + 2
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    for cfg in configs.values():
        model = build_model(cfg)
        opt = make_optimizer(cfg, model)
        before = [p.detach().clone() for p in model.parameters()]
        loss = LOSSES[cfg.loss](model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(float(loss.detach())), cfg
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def _rec(key: str, seed: int, acc: float | None, *, status: str = "ok", params: int = 100,
         epochs: int = 1, group: str = "g") -> dict[str, Any]:
    ov = {} if key == "base" else {"lr": {"a": 0.05, "b": 0.5, "c": 0.01, "d": 0.2,
                                          "e": 0.3, "f": 0.4}[key]}
    return {"run_id": f"{key}{seed}{epochs}", "status": status, "variant": "lenet_tweakable",
            "overrides": ov, "memberships": [{"group": group}],
            "config": {"variant": "lenet_tweakable", "seed": seed, "num_epochs": epochs,
                       "key": key},
            "metrics": {"test_acc": acc, "params_trainable": params}}


def test_rule_picks_the_best_mean_on_a_hand_made_table() -> None:
    records = [
        _rec("base", 0, 0.80), _rec("base", 1, 0.82),
        _rec("a", 0, 0.86), _rec("a", 1, 0.84),  # best qualifying mean: 0.85
        _rec("b", 0, 0.99), _rec("b", 1, None, status="diverged"),  # a seed diverged
        _rec("c", 0, 0.97),  # only one seed of the two asked for
        _rec("d", 0, 0.95, epochs=5), _rec("d", 1, 0.95, epochs=5),  # the longer runs
        _rec("e", 0, 0.90), _rec("e", 1, 0.70),  # higher max, lower mean (0.80)
    ]
    pick = d2l.apply_rule("max_mean_test_acc", records, min_seeds=2)
    assert pick["chosen"]["overrides"] == {"lr": 0.05}
    assert pick["chosen"]["mean_test_acc"] == pytest.approx(0.85)
    assert pick["num_epochs"] == 1 and pick["qualified"] == 3
    assert pick["baseline"]["mean_test_acc"] == pytest.approx(0.81)
    # a tie on the mean goes to fewer parameters
    tie = records + [_rec("f", 0, 0.85, params=50), _rec("f", 1, 0.85, params=50)]
    assert d2l.apply_rule("max_mean_test_acc", tie, min_seeds=2)["chosen"]["overrides"] == {
        "lr": 0.4}
    with pytest.raises(UsageError, match="no configuration"):
        d2l.apply_rule("max_mean_test_acc", records, min_seeds=3)
    with pytest.raises(UsageError, match="unknown best_of rule"):
        d2l.apply_rule("luck", records, min_seeds=2)


def test_rule_text_in_the_suite_is_the_implemented_rule() -> None:
    raw = tomllib.loads((SUITES_DIR / "d2l-ex3.toml").read_text())
    spec = raw["groups"][0]["best_of"]
    assert spec["text"] == d2l.RULES[spec["rule"]]


def test_ex3_needs_ex2_records(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        expand(load_suite("d2l-ex3"), PROFILES["quick"], results=tmp_path)
    assert "run d2l-ex2 first" in str(e.value) and "\n" not in str(e.value)


def test_ex3_takes_ex2s_best_configuration(tmp_path: Path) -> None:
    def acc_of(run: PlannedRun) -> tuple[float, str]:
        ov = run.overrides
        if ov.get("lr") == 0.5:
            return 0.99, "diverged" if run.config.seed == 1 else "ok"  # disqualified
        if ov.get("channels") == [24, 44] and "padding" not in ov:
            return 0.90 + 0.01 * run.config.seed, "ok"
        return 0.85, "ok"

    _write_ex2(tmp_path, "quick", acc_of)
    plan = expand(load_suite("d2l-ex3"), PROFILES["quick"], results=tmp_path)
    assert len(plan) == 4 and len({r.run_id for r in plan}) == 4
    assert {r.config.dataset for r in plan} == {"mnist"}
    assert sorted(r.factor_value for r in plan) == (
        ["baseline"] * 2 + ["best: channels=[24, 44]"] * 2)
    best = [r for r in plan if r.factor_value != "baseline"]
    assert all(r.config.model["channels"] == [24, 44] for r in best)
    pick = best[0].memberships[0]["best_of"]
    assert pick["suite"] == "d2l-ex2" and pick["rule"] == "max_mean_test_acc"
    assert pick["chosen"]["mean_test_acc"] == pytest.approx(0.905)
    assert "channels" in pick["chosen"]["groups"]


def test_activation_extraction_shapes() -> None:
    from variants import create_variant

    x = torch.rand(5, 1, 28, 28)
    cases = [
        ("lenet_d2l", {}, {"conv1": (6, 28, 28), "conv2": (16, 10, 10), "fc": (84,)}),
        ("lenet_modern", {}, {"conv1": (6, 28, 28), "conv2": (16, 10, 10), "fc": (84,)}),
        ("lenet_tweakable", {"channels": [6, 16, 22], "padding": 2},
         {"conv1": (6, 28, 28), "conv2": (16, 14, 14), "fc": (84,)}),
        ("lenet_tweakable", {"kernel_size": 3, "fc": [120, 120, 84]},
         {"conv1": (6, 30, 30), "conv2": (16, 17, 17), "fc": (84,)}),
    ]
    for name, kw, shapes in cases:
        model = create_variant(name, **kw)
        scores, acts = d2l.forward_with_activations(model, x, d2l.layer_modules(model),
                                                    batch_size=2)
        assert scores.shape == (5, 10)
        assert {k: tuple(v.shape[1:]) for k, v in acts.items()} == shapes
        assert all(v.shape[0] == 5 for v in acts.values())
        assert torch.allclose(scores, model(x), atol=1e-6)


def test_ood_photos_load_with_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    photos = [d2l.load_photo(name) for name, _ in d2l.PHOTOS]
    assert any(name == "chelsea" for name, _ in d2l.PHOTOS)
    for p in photos:
        assert p.shape == (28, 28) and p.dtype.name == "uint8" and p.std() > 5
    assert (d2l.load_photo("chelsea") == photos[0]).all()  # deterministic


def test_ood_inputs(data_root: Path) -> None:
    a = d2l.ood_inputs("fashion-mnist", data_root)
    b = d2l.ood_inputs("fashion-mnist", data_root)
    assert list(a) == ["in_distribution", "other_dataset", "uniform_noise", "gaussian_noise",
                       "photos", "photos_inverted"]
    for k, v in a.items():
        assert v["images"].shape[1:] == (28, 28) and v["images"].dtype.name == "uint8", k
        assert (v["images"] == b[k]["images"]).all(), k
        assert v["description"]
    other = a["other_dataset"]["description"]
    assert "mnist" in other and "fashion" not in other  # the other dataset, not the training one
    assert (a["photos_inverted"]["images"] == 255 - a["photos"]["images"]).all()


def test_d2l_dry_run_lists_all_five(tmp_path: Path) -> None:
    res = tmp_path / "r"
    p = run_cli("run", "--suite", "d2l", "--profile", "quick", "--dry-run", "--results", str(res))
    assert p.returncode == 0, p.stderr
    for s in ("d2l-ex1", "d2l-ex2", "d2l-ex4", "d2l-ex5"):
        assert f"suite {s}, profile quick" in p.stdout
    assert "suite d2l-ex3: its runs are picked from the records of d2l-ex2" in p.stdout
    assert not res.exists()


def test_ex4_ex5_end_to_end(tmp_path: Path, data_root: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny training, then ex5 reuses ex4's runs; analyses write JSON + figures, reproducibly."""
    from bench.cli import main
    from bench.d2l import activations, ood

    # Patch each constant in the module that reads it (the package does not re-export them).
    for module, name, value in ((activations, "PROBE_IMAGES", 60),
                                (activations, "FIGURE_IMAGES", 2), (ood, "OOD_IN_DIST", 100),
                                (ood, "OOD_OTHER", 50), (ood, "OOD_NOISE", 20)):
        monkeypatch.setattr(module, name, value)
    common = ["--profile", "smoke", "--quiet", "--results", str(tmp_path), "--data-root",
              str(data_root), "--set", "train_subset=300", "--set", "test_subset=100"]
    assert main(["run", "--suite", "d2l-ex4", *common]) == 0
    assert main(["run", "--suite", "d2l-ex5", *common]) == 0
    recs = [json.loads(line) for line in
            runs_path(tmp_path, "d2l-ex5", "smoke").read_text().splitlines()]
    assert len(recs) == 2 and all(r["reused_from"]["suite"] == "d2l-ex4" for r in recs)
    assert all(r["suite"] == "d2l-ex5" and r["group"] == "models" for r in recs)
    for suite, kind in (("d2l-ex4", "activations"), ("d2l-ex5", "ood")):
        out = tmp_path / suite / "smoke" / "analysis"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["answer"] and summary[kind]["answer"]
        assert set(summary[kind]["variants"]) == {"lenet_d2l", "lenet_modern"}
        assert summary["figures"] and all((out / f).is_file() for f in summary["figures"])
        first = (out / "summary.json").read_bytes()
        (out / "summary.json").unlink()
        assert main(["run", "--suite", suite, *common]) == 0  # nothing to train: re-analyses
        assert (out / "summary.json").read_bytes() == first
    # weights are not committed: without them a stale analysis is kept, not overwritten
    import shutil

    out5 = tmp_path / "d2l-ex5" / "smoke" / "analysis"
    kept = (out5 / "summary.json").read_bytes()
    shutil.rmtree(tmp_path / "d2l-ex5" / "smoke" / "weights")
    (out5 / "ex5_msp.png").unlink()
    assert main(["run", "--suite", "d2l-ex5", *common]) == 0
    assert (out5 / "summary.json").read_bytes() == kept
    ex4 = json.loads((tmp_path / "d2l-ex4/smoke/analysis/summary.json").read_text())
    run = ex4["activations"]["variants"]["lenet_modern"]["runs"][0]
    assert run["layers"]["conv1"]["shape"] == [6, 28, 28]
    assert len(run["layers"]["conv2"]["channel_mean"]["Coat"]) == 16
    assert 0 <= run["layers"]["conv2"]["probe_acc"]["mean"] <= 1
    ex5 = json.loads((tmp_path / "d2l-ex5/smoke/analysis/summary.json").read_text())
    sets = ex5["ood"]["variants"]["lenet_d2l"]["runs"][0]["sets"]
    photos = sets["photos"]  # (an MSP bound would be vacuous: 10-class MSP is in [0.1, 1])
    assert photos["n"] == len(d2l.PHOTOS)
    assert photos["entropy_mean_normalized"] == pytest.approx(
        photos["entropy_mean_nats"] / math.log(10), abs=1e-5)
    assert sum(sets["uniform_noise"]["predicted_class_counts"].values()) == 20


def test_rule_says_whether_its_pick_had_the_recipes_full_budget() -> None:
    # lenet_tweakable's recipe: 15 epochs on the full training set
    full = [_rec("a", s, 0.90, epochs=15) for s in range(3)] + [
        _rec("base", s, 0.89, epochs=15) for s in range(3)]
    pick = d2l.apply_rule("max_mean_test_acc", full, min_seeds=3)
    assert pick["chosen"]["overrides"] == {"lr": 0.05} and pick["full_budget"] is True
    short = [_rec("a", s, 0.90, epochs=1) for s in range(3)]
    assert d2l.apply_rule("max_mean_test_acc", short, min_seeds=3)["full_budget"] is False
    cut = [{**r, "config": {**r["config"], "train_subset": 10_000}} for r in full]
    assert d2l.apply_rule("max_mean_test_acc", cut, min_seeds=3)["full_budget"] is False
    assert d2l.rules.PICK_MIN_SEEDS == 3  # ex3 at 5 seeds reads ex2's 3-seed reference runs
