"""The equal-terms suites: one shared recipe, the lr picked on held-out training data only.

The key property: selection cannot read a test metric. Poisoning the test split (labels
shuffled, images blanked) leaves every selection record and the pick unchanged, while the
final runs, which do score the test split, see the poison.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

import bench.resident as resident
from bench.cli import main
from bench.config import TRAIN_SPLIT_SIZE, resolve_config
from bench.equal.rules import RULES, apply_rule, pick
from bench.errors import UsageError
from bench.records import latest_by_id, read_records
from bench.suites import PROFILES, SUITES_DIR, NeedsRecords, expand, load_suite
from tests.conftest import read_jsonl

REPO = Path(__file__).resolve().parent.parent
SELECT, FINAL = "equal-lr", "equal-terms"


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads((SUITES_DIR / f"{name}.toml").read_text())


# --- the suite files ------------------------------------------------------------------------

def test_both_steps_share_one_recipe_and_the_rule_text_is_the_code() -> None:
    sel, fin = _toml(SELECT)["groups"][0], _toml(FINAL)["groups"][0]
    assert {k: v for k, v in sel["set"].items() if k != "holdout"} == fin["set"]
    assert sel["set"]["holdout"] == 10_000 and "holdout" not in fin["set"]
    assert len(sel["grid"]["lr"]) >= 3 and "lr" not in fin["set"]
    assert fin["pick_lr"]["suite"] == SELECT
    assert fin["pick_lr"]["text"] == RULES[fin["pick_lr"]["rule"]]
    assert sel["variants"] == fin["variants"] == "*"
    assert sel["datasets"] == fin["datasets"] == "all"


def test_selection_plan_covers_every_default_variant_dataset_and_lr() -> None:
    from variants import list_variants

    plan = expand(load_suite(SELECT), PROFILES["reference"])
    cells = {(r.config.variant, r.config.dataset, r.config.lr) for r in plan}
    assert len(plan) == len(cells) == len(list_variants(default_only=True)) * 2 * 3
    for r in plan:  # each keeps its own loss, init and transform; the rest is shared
        c = r.config
        assert (c.optimizer, c.batch_size, c.num_epochs, c.schedule) == ("adam", 128, 15,
                                                                         "constant")
        own = resolve_config(c.variant, c.dataset, 0)
        assert (c.loss, c.init, c.transform, c.model) == (own.loss, own.init, own.transform,
                                                          own.model)
        assert c.holdout == 10_000


# --- the holdout ----------------------------------------------------------------------------

def test_holdout_leaves_old_run_ids_alone_and_is_validated() -> None:
    rec = read_jsonl(REPO / "results/variants/reference/runs.jsonl")[0]
    from bench.config import config_from_record

    assert config_from_record(rec["config"]).run_id() == rec["run_id"]
    with_h = resolve_config("mlp", "mnist", 0, {"holdout": 10_000})
    assert with_h.run_id() != resolve_config("mlp", "mnist", 0).run_id()
    for bad in (0, TRAIN_SPLIT_SIZE, -5):
        with pytest.raises(UsageError, match="holdout must be"):
            resolve_config("mlp", "mnist", 0, {"holdout": bad})


def test_holdout_splits_the_training_split_in_two(data_root: Path) -> None:
    tf = resolve_config("mlp", "mnist", 0).transform
    full = resident.device_data("mnist", "train", tf, "cpu", data_root)
    fit = resident.device_data("mnist", "train", tf, "cpu", data_root, holdout=("fit", 10_000))
    val = resident.device_data("mnist", "train", tf, "cpu", data_root, holdout=("val", 10_000))
    assert (len(fit), len(val)) == (50_000, 10_000)
    assert torch.equal(torch.cat([fit.y, val.y]), full.y)
    assert torch.equal(val.X, full.X[50_000:])
    sub = resident.device_data("mnist", "train", tf, "cpu", data_root, 500, ("fit", 10_000))
    assert len(sub) == 500


# --- the rule ------------------------------------------------------------------------------

def _rec(run: Any, acc: float | None, status: str = "ok") -> dict[str, Any]:
    return {"run_id": run.run_id, "status": status, "metrics": {} if acc is None else
            {"val_acc": acc}}


def test_rule_picks_the_best_mean_ties_to_the_smaller_lr_and_counts_divergence() -> None:
    plan = expand(load_suite(SELECT), PROFILES["reference"], variants="mlp",
                  datasets=["mnist"], seeds=2)
    by = {(r.config.lr, r.config.seed): r for r in plan}
    accs = {(0.0003, 0): 0.97, (0.0003, 1): 0.97, (0.001, 0): 0.98, (0.001, 1): 0.96,
            (0.003, 0): 0.99, (0.003, 1): 0.99}
    recs = {r.run_id: _rec(r, accs[k]) for k, r in by.items()}
    assert apply_rule("max_val_acc", plan, recs)["lr"] == 0.003
    recs[by[(0.003, 1)].run_id] = _rec(by[(0.003, 1)], None, "diverged")  # a failed lr: 0
    out = apply_rule("max_val_acc", plan, recs)
    assert out["lr"] == 0.0003  # 0.97 ties 0.97 (0.001): the smaller lr
    assert [row["diverged"] for row in out["table"]] == [0, 0, 1]
    del recs[by[(0.001, 0)].run_id]
    with pytest.raises(NeedsRecords, match="1 of 6 selection runs"):
        apply_rule("max_val_acc", plan, recs)
    assert pick([]) is None


def test_final_suite_needs_the_selection_and_refuses_to_override_the_pick(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as e:
        expand(load_suite(FINAL), PROFILES["quick"], results=tmp_path)
    assert "run equal-lr first" in str(e.value) and "\n" not in str(e.value)
    assert main(["run", "--suite", FINAL, "--profile", "quick", "--results", str(tmp_path),
                 "--set", "lr=0.01", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set lr is not allowed" in err[0]


# --- the test set cannot move the pick -------------------------------------------------------

def _poisoned(real: Any) -> Any:
    """load_split with the test split's labels shuffled and images blanked."""
    def load(name: str, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = real(name, split, root)
        if split == "test":
            g = torch.Generator().manual_seed(7)
            return torch.zeros_like(X), y[torch.randperm(len(y), generator=g)]
        return X, y
    return load


SMALL = ["--variants", "cnn2_fidle", "--datasets", "mnist", "--profile", "quick", "--jobs", "1",
         "--quiet", "--set", "train_subset=2000", "--set", "test_subset=500", "--set",
         "num_epochs=2"]


def _stable(rec: dict[str, Any]) -> dict[str, Any]:
    """What a record says about the model (no timing, environment or code block)."""
    return {k: rec[k] for k in ("run_id", "status", "metrics", "history", "config", "data")}


def test_selection_cannot_read_the_test_set(tmp_path: Path, data_root: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = resident.load_split
    seen: list[str] = []

    def spy(name: str, split: str, root: Path) -> Any:
        seen.append(split)
        return real(name, split, root)

    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, loader in (("clean", spy), ("poisoned", _poisoned(spy))):
        monkeypatch.setattr(resident, "_CACHE", {})
        monkeypatch.setattr(resident, "load_split", loader)
        results = tmp_path / label
        seen.clear()
        assert main(["run", "--suite", SELECT, "--results", str(results), *SMALL]) == 0
        assert seen and "test" not in seen  # the selection never loads the test split
        assert main(["run", "--suite", FINAL, "--results", str(results), *SMALL]) == 0
        out[label] = {s: [_stable(r) for r in read_jsonl(results / s / "quick/runs.jsonl")]
                      for s in (SELECT, FINAL)}
    sel = out["clean"][SELECT]
    assert len(sel) == 3 and sel == out["poisoned"][SELECT]  # bit for bit
    assert all(set(r["metrics"]) >= {"val_acc", "val_loss", "val_top5_error"}
               and not any(k.startswith("test_") for k in r["metrics"])
               and "validation" in r["data"] and "test" not in r["data"] for r in sel)
    picks = {label: {r["config"]["lr"] for r in out[label][FINAL]} for label in out}
    assert picks["clean"] == picks["poisoned"] and len(picks["clean"]) == 1
    best = max(sel, key=lambda r: (r["metrics"]["val_acc"], -r["config"]["lr"]))
    assert picks["clean"] == {best["config"]["lr"]}
    # ...and the poison does reach what scores the test split: the final runs see it
    clean_acc = [r["metrics"]["test_acc"] for r in out["clean"][FINAL]]
    poisoned_acc = [r["metrics"]["test_acc"] for r in out["poisoned"][FINAL]]
    # blank images get one prediction: about a tenth of shuffled labels are right
    assert all(p < 0.2 < 0.3 < c for p, c in zip(poisoned_acc, clean_acc, strict=True))


# --- the committed records ------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["quick", "reference"])
def test_committed_final_runs_trained_the_rules_pick(profile: str) -> None:
    """Every committed equal-terms run trained the lr the rule gives on the committed
    selection records (and says so in its record)."""
    fin = list(latest_by_id(read_records(REPO / f"results/{FINAL}/{profile}/runs.jsonl"))
               .values())
    sel = latest_by_id(read_records(REPO / f"results/{SELECT}/{profile}/runs.jsonl"))
    if not fin:
        pytest.skip(f"no committed {FINAL}/{profile} records yet")
    for r in fin:
        planned = expand(load_suite(SELECT), PROFILES[profile], variants=r["variant"],
                         datasets=[r["dataset"]])
        got = apply_rule("max_val_acc", planned, sel)
        assert r["config"]["lr"] == got["lr"], (r["variant"], r["dataset"])
        assert r["memberships"][0]["lr_pick"]["lr"] == got["lr"]
        assert json.dumps(r["memberships"][0]["lr_pick"]["table"], sort_keys=True) == \
            json.dumps(got["table"], sort_keys=True)


# --- the report's equal-terms section ------------------------------------------------------

def _sel(variant: str, lr: float, acc: float | None, status: str = "ok") -> dict[str, Any]:
    from tests.report_records import synth

    r = synth(variant, 0, 0.9, suite=SELECT, group="select", dataset="mnist",
              overrides={"lr": lr, "holdout": 10_000})
    r["config"].update(lr=lr, holdout=10_000, optimizer="adam", batch_size=128, num_epochs=15)
    r["run_id"] = f"{variant}-{lr}"
    r["status"] = status
    r["metrics"] = {} if acc is None else {"val_acc": acc}
    return r


def _fin(variant: str, lr: float, accs: list[float]) -> list[dict[str, Any]]:
    from tests.report_records import synth

    out = []
    for s, a in enumerate(accs):
        r = synth(variant, s, a, suite=FINAL, group="final", dataset="mnist", epochs=15,
                  overrides={"lr": lr, "optimizer": "adam"})
        r["config"].update(lr=lr, optimizer="adam", batch_size=128)
        out.append(r)
    return out


def test_report_checks_each_pick_and_splits_the_published_gaps(tmp_path: Path) -> None:
    from report.collect import group_records
    from report.equal import equal_terms_section, gaps, lr_tables
    from report.markdown import to_markdown
    from report.runsets import split_runsets
    from tests.report_records import synth

    sel = [_sel("lenet5", 0.0003, 0.985), _sel("lenet5", 0.001, 0.990),
           _sel("lenet5", 0.003, 0.0, "diverged"),
           _sel("mlp", 0.0003, 0.975), _sel("mlp", 0.001, 0.975), _sel("mlp", 0.003, 0.97)]
    fin = _fin("lenet5", 0.001, [0.990, 0.991, 0.989]) + _fin("mlp", 0.003, [0.98, 0.98, 0.981])
    pub = ([synth("lenet5", s, a) for s, a in enumerate([0.988, 0.987, 0.989])]
           + [synth("mlp", s, a) for s, a in enumerate([0.976, 0.977, 0.975])])
    split = split_runsets(sel + fin + pub)
    [(ds, headers, rows)] = lr_tables(split)
    cells = {r[0].text: [c.text for c in r] for r in rows}
    assert ds == "mnist" and headers[-2] == "rule's pick"
    assert cells["lenet5"][-2:] == ["0.001", "yes"] and "1 diverged" in cells["lenet5"][3]
    # mlp: 97.50 ties at 3e-4 and 1e-3, the smaller wins; the finals trained 3e-3 instead
    assert cells["mlp"][-2:] == ["0.0003", "NO: trained 0.003"]
    main = [(rs, group_records(split.records(rs))) for rs in sorted(split.lead)
            if rs.suite in ("variants", FINAL)]
    g = gaps(next(gs for rs, gs in main if rs.suite == "variants"),
             next(gs for rs, gs in main if rs.suite == FINAL))
    assert g is not None and g["leader"] == "lenet5"
    row = next(r for r in g["rows"] if r["variant"] == "mlp")
    assert row["gap_published"] == pytest.approx(0.976 - 0.988)
    assert row["gap_network"] == pytest.approx((0.98 + 0.98 + 0.981) / 3 - 0.990)
    assert row["gap_recipe"] == pytest.approx(row["gap_published"] - row["gap_network"])
    sec = equal_terms_section(split, main, tmp_path)
    md = to_markdown("t", [], [sec])
    share = row["gap_recipe"] / row["gap_published"]  # one other variant: its gap is the total
    assert (f"trail lenet5 as published by {-100 * row['gap_published']:.2f} pp in total "
            f"(summed over them); trained on equal terms, they trail it by "
            f"{-100 * row['gap_network']:.2f} pp (the networks), so {100 * share:.0f}% of the "
            f"published gaps, {abs(100 * row['gap_recipe']):.2f} pp, is the recipe.") in md
    assert "Not complete yet: the equal-terms leaderboards lack fashion-mnist: " in md
    assert "(fewer than its 5 finished seeds, or none)" in md
    assert (tmp_path / "figures/ranks-published-vs-equal.png").is_file()


def test_labels_leave_out_the_shared_recipe_unless_two_groups_would_read_alike() -> None:
    """Equal terms' finals all override the same keys (the shared recipe, in the recipe
    column): the leaderboard names them by variant. The selection's lrs of one variant would
    then read alike, so they keep their overrides."""
    from report.collect import group_records

    fin = _fin("lenet5", 0.001, [0.99, 0.991, 0.989]) + _fin("mlp", 0.003, [0.98] * 3)
    assert sorted(g.label for g in group_records(fin)) == ["lenet5", "mlp"]
    sel = [_sel("mlp", lr, 0.97) for lr in (0.0003, 0.001, 0.003)]
    assert sorted(g.label for g in group_records(sel)) == [
        f"mlp holdout=10000, lr={lr}" for lr in ("0.0003", "0.001", "0.003")]
