"""Records belong to the code that made them: a behavioural fingerprint decides reuse.

The end-to-end tests edit a temporary copy of the project, as a developer would, and run the
real CLI in it: an edit that changes how one variant trains retrains exactly that variant; a
pure refactor retrains nothing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import bench.fingerprint as fp
from bench.config import config_from_record, resolve_config
from bench.fingerprint import fingerprint, probe_config, record_fingerprint
from tests.conftest import REPO, read_jsonl

SMALL = ["--set", "train_subset=2000", "--set", "test_subset=500"]


def test_fingerprint_names_the_configuration_not_the_seed(data_root: Path) -> None:
    a = resolve_config("mlp", None, 0, {"train_subset": 2000})
    b = dataclasses.replace(a, seed=3)
    c = dataclasses.replace(a, lr=a.lr * 2)
    assert fingerprint(a, data_root) == fingerprint(b, data_root)
    assert fingerprint(a, data_root) != fingerprint(c, data_root)
    probe = probe_config(a)  # 4 batches of 512, capped by the run's own subset
    assert (probe.device, probe.num_epochs, probe.train_subset) == ("cpu", 3, 2000)
    full = probe_config(resolve_config("lenet5", None, 0, {}))
    assert (full.num_epochs, full.train_subset, full.test_subset) == (3, 4 * 32, 256)


def test_a_schedule_change_after_the_probe_changes_the_fingerprint(data_root: Path) -> None:
    """The probe trains 3 epochs; the whole schedule's learning rates are hashed too."""
    a = resolve_config("lenet5", None, 0, {"train_subset": 64})
    late = dataclasses.replace(a, schedule="constant")  # the same for the first 2 passes
    assert fingerprint(a, data_root) != fingerprint(late, data_root)


def test_the_probe_runs_under_the_portable_kernel_set_in_one_child(
        data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fingerprint comes from a process running PROBE_ENV's kernels, whatever this one
    runs: here (pytest is not started under PROBE_ENV) one child answers for every
    configuration of a call, and a second call for the same configurations starts none."""
    assert not fp.in_probe_env()
    cfgs = [resolve_config(v, None, 0, {"train_subset": 256}) for v in ("mlp", "cnn_fidle")]
    calls: list[int] = []
    real = fp._from_child

    def counted(c: list, root: Path) -> list[str | None]:
        calls.append(len(c))
        return real(c, root)

    monkeypatch.setattr(fp, "_from_child", counted)
    fp._CACHE.clear()
    first = fp.fingerprints(cfgs, data_root)
    assert calls == [2] and all(f is not None and len(f) == 16 for f in first)
    assert fp.fingerprints(cfgs[::-1], data_root) == first[::-1] and calls == [2]


def test_a_cpu_without_the_probes_kernels_says_it_cannot_check(
        data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel set no x86 CPU runs stands for a CPU without AVX2: the child reports the
    kernels it runs instead, and nothing is called made by other code."""
    cfg = resolve_config("mlp", None, 0, {"train_subset": 256})
    monkeypatch.setattr(fp, "PROBE_KERNELS", "SVE256")
    monkeypatch.setattr(fp, "PROBE_ENV", {**fp.PROBE_ENV, "ATEN_CPU_CAPABILITY": "sve256"})
    monkeypatch.setattr(fp, "_CACHE", {})
    assert fp.fingerprint(cfg, data_root) is None
    rec = {"code": {"fingerprint": "0" * 16, "probe_version": fp.VERSION}}
    assert fp.judge([(cfg, rec)], data_root) == [fp.UNCHECKABLE]
    assert "not checkable on this CPU" in fp.why_not(fp.UNCHECKABLE)


def test_judge_says_code_changed_only_under_the_same_probe(data_root: Path) -> None:
    cfg = resolve_config("mlp", None, 0, {"train_subset": 2000})
    block = fp.code_block(cfg, data_root)
    assert (block["kernels"], block["probe_version"]) == (fp.PROBE_KERNELS, fp.VERSION)
    ours = {"code": block}
    other = {"code": {**block, "fingerprint": "0" * 16}}
    old = {"code": {"fingerprint": block["fingerprint"], "kernels": "AVX512"}}  # probe v1
    assert fp.judge([(cfg, ours), (cfg, other), (cfg, {}), (cfg, old)], data_root) == [
        fp.THIS, fp.OTHER, fp.NO_FINGERPRINT, fp.OLD_PROBE]
    assert fp.made_by_this_code([(cfg, ours), (cfg, other)], data_root) == [True, False]


def test_committed_records_made_on_avx2_and_avx512_cpus_are_this_codes(
        data_root: Path) -> None:
    """lenet_tweakable's Kaiming probe amplifies rounding (its 4th digit differs between AVX2
    and AVX-512 kernels): d2l-ex2's three Kaiming runs were trained on an AVX2-only CPU, its
    default-init baseline (copied from variants) on an AVX-512 one. Both count as this
    code's on any x86 CPU, and a corrupted fingerprint does not."""
    recs = [r for r in read_jsonl(REPO / "results" / "d2l-ex2" / "reference" / "runs.jsonl")
            if r["overrides"] in ({"init": "kaiming"}, {}) and r["variant"] == "lenet_tweakable"
            and r["seed"] < 3]  # seeds 0-2: the runs this names (decide may add later ones)
    assert len(recs) == 6
    items = [(config_from_record(r["config"]), r) for r in recs]
    bad = {**recs[0], "code": {**recs[0]["code"], "fingerprint": "0" * 16}}
    assert fp.judge([*items, (items[0][0], bad)], data_root) == [fp.THIS] * len(items) + [
        fp.OTHER]


def _copy_project(dst: Path) -> Path:
    for name in ("bench", "variants", "report"):
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _run(cwd: Path, results: Path, data_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", "--suite", "variants", "--profile", "smoke",
         "--variants", "mlp,cnn_fidle", "--results", str(results), "--data-root",
         str(data_root), "--quiet", *SMALL],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )


def _records(results: Path) -> list[dict]:
    path = results / "variants" / "smoke" / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}: update this test"
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_only_the_edited_variant_retrains_and_a_refactor_retrains_nothing(
        tmp_path: Path, data_root: Path) -> None:
    proj, results = _copy_project(tmp_path / "proj"), tmp_path / "results"
    first = _run(proj, results, data_root)
    assert first.returncode == 0, first.stderr
    before = _records(results)
    assert Counter(r["variant"] for r in before) == {"mlp": 1, "cnn_fidle": 1}
    assert all(record_fingerprint(r) for r in before)

    # A refactor: a private helper renamed everywhere it is used. Nothing trains differently.
    fidle = proj / "variants" / "fidle.py"
    fidle.write_text(fidle.read_text().replace("_fidle_recipe", "_recipe_of_the_notebook"))
    again = _run(proj, results, data_root)
    assert again.returncode == 0, again.stderr
    assert "reused 2 records made by this code" in again.stdout
    assert "nothing to train" in again.stdout
    assert len(_records(results)) == 2

    # A behaviour change in one variant's forward: its first pooling becomes an average.
    _edit(fidle, "nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)",
          "nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)")
    edited = _run(proj, results, data_root)
    assert edited.returncode == 0, edited.stderr
    assert "reused 1 records made by this code" in edited.stdout
    assert "1 records were made by code that trains differently (cnn_fidle)" in edited.stdout
    after = _records(results)
    assert Counter(r["variant"] for r in after) == {"mlp": 1, "cnn_fidle": 2}
    old_cnn, new_cnn = [r for r in after if r["variant"] == "cnn_fidle"]
    assert old_cnn["run_id"] == new_cnn["run_id"]  # same config: only the code differs
    assert record_fingerprint(old_cnn) != record_fingerprint(new_cnn)
    assert old_cnn["metrics"]["test_acc"] != new_cnn["metrics"]["test_acc"]

    # --keep-stale: back to the original code, the newest cnn_fidle record is now stale.
    _edit(fidle, "nn.ReLU(), nn.AvgPool2d(2)", "nn.ReLU(), nn.MaxPool2d(2)")
    kept = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--suite", "variants", "--profile", "smoke",
         "--variants", "mlp,cnn_fidle", "--results", str(results), "--data-root",
         str(data_root), "--quiet", "--keep-stale", *SMALL],
        cwd=proj, capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stderr
    assert "kept 1 stale records (cnn_fidle)" in kept.stdout and "nothing to train" in kept.stdout


#: The last commit whose committed records carried probe-v1 code blocks (AVX-512 or AVX2
#: kernels, whichever CPU made them); scripts/refingerprint.py recomputed them after it.
PRE_V2 = "d60c857"


def _key(rec: dict) -> tuple:
    return rec["run_id"], rec["env"].get("started")


def test_refingerprinting_changed_only_the_code_blocks() -> None:
    """Every committed record that existed before the probe moved to its portable kernel set
    is, bar its `code` block, byte for byte what it was (results, config, env, timing)."""
    files = sorted((REPO / "results").glob("*/*/runs.jsonl"))
    shown = 0
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        try:
            old = subprocess.run(["git", "show", f"{PRE_V2}:{rel}"], cwd=REPO, text=True,
                                 capture_output=True, check=False)
        except OSError:
            pytest.skip("git is not installed: cannot read the records as first committed")
        if old.returncode != 0:
            if "exists on disk, but not in" in old.stderr or "does not exist" in old.stderr:
                continue  # a records file added since
            pytest.skip(f"commit {PRE_V2} is not in this clone (a shallow clone?): the records "
                        "as first committed cannot be read")
        before = {_key(r): r for r in map(json.loads, old.stdout.splitlines())}
        now = {_key(r): r for r in read_jsonl(path)}
        for k, rec in before.items():
            if k in now:
                shown += 1
                assert {**now[k], "code": None} == {**rec, "code": None}, (rel, k)
                assert now[k]["code"]["probe_version"] == fp.VERSION, (rel, k)
    assert shown >= 339  # every record committed at PRE_V2


@pytest.mark.slow
def test_the_reference_records_need_no_training_here(data_root: Path) -> None:
    """The issue's bar: on this CPU (AVX2 or AVX-512), the committed reference records of
    suite variants are recognised as this code's: a dry run has nothing to train."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--suite", "variants", "--profile",
         "reference", "--dry-run", "--data-root", str(data_root)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert " 0 to train " in last and "stale" not in out.stdout, out.stdout[-2000:]
