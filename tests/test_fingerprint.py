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


def test_kernel_sets_to_try_are_the_lesser_ones_this_cpu_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp, "kernel_set", lambda: "AVX512")
    assert fp.kernel_sets_to_try(None) == ["AVX2", "DEFAULT"]  # records that name none
    assert fp.kernel_sets_to_try("AVX2") == ["AVX2"]
    assert fp.kernel_sets_to_try("AVX512") == []  # made with ours: a mismatch is real
    monkeypatch.setattr(fp, "kernel_set", lambda: "AVX2")
    assert fp.kernel_sets_to_try("AVX512") == []  # this CPU cannot run what made it
    monkeypatch.setattr(fp, "kernel_set", lambda: "SVE256")
    assert fp.kernel_sets_to_try(None) == []


def test_a_child_probes_under_the_kernel_set_it_is_asked_for(data_root: Path) -> None:
    """The child runs the same probe: under our own kernel set it gives our fingerprint, and
    under the scalar one it reports having run those kernels (else it would answer None)."""
    cfg = resolve_config("mlp", None, 0, {"train_subset": 2000})
    fp._UNDER.clear()
    assert fp.fingerprints_under([cfg], fp.kernel_set(), data_root) == [
        fingerprint(cfg, data_root)]
    (scalar,) = fp.fingerprints_under([cfg], "DEFAULT", data_root)
    assert scalar is not None and len(scalar) == 16


def test_a_mismatch_under_the_records_own_kernel_set_spawns_no_child(
        monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    cfg = resolve_config("mlp", None, 0, {"train_subset": 2000})

    def no_child(*a: object) -> list[str | None]:
        raise AssertionError("probed again although the record names our kernel set")

    monkeypatch.setattr(fp, "fingerprints_under", no_child)
    ours = {"code": {"fingerprint": fingerprint(cfg, data_root), "kernels": fp.kernel_set()}}
    other = {"code": {"fingerprint": "0" * 16, "kernels": fp.kernel_set()}}
    assert fp.made_by_this_code([(cfg, ours), (cfg, other), (cfg, {})], data_root) == [
        True, False, False]


def test_committed_records_made_with_avx2_kernels_are_this_codes(data_root: Path) -> None:
    """d2l-ex2's Kaiming runs were trained on an AVX2-only CPU; their probe amplifies rounding,
    so under AVX-512 kernels it hashes differently. Here they must still count as made by
    this code (natively on AVX2, through a child under AVX2 on AVX-512), and a corrupted
    fingerprint must not."""
    recs = [r for r in read_jsonl(REPO / "results" / "d2l-ex2" / "reference" / "runs.jsonl")
            if r["overrides"] == {"init": "kaiming"}]
    assert len(recs) == 3
    items = [(config_from_record(r["config"]), r) for r in recs]
    bad = {**recs[0], "code": {**recs[0]["code"], "fingerprint": "0" * 16}}
    assert fp.made_by_this_code([*items, (items[0][0], bad)], data_root) == [
        True, True, True, False]


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
