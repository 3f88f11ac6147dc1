"""A run another profile of the same suite already finished (same run id: same resolved config)
is copied, with this code's blessing, not trained again (profile `full` repeats `reference`'s
runs on each recipe's own dataset)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import read_jsonl, run_cli

# One config under both profiles: smoke's seed 0 is quick's seed 0.
SAME = ["--variants", "mlp", "--set", "num_epochs=1", "--set", "train_subset=512",
        "--set", "test_subset=256", "--quiet"]


def test_a_run_finished_under_another_profile_is_copied(tmp_path: Path, data_root: Path) -> None:
    args = ["--results", str(tmp_path), "--data-root", str(data_root), *SAME]
    first = run_cli("run", "--suite", "variants", "--profile", "smoke", *args)
    assert first.returncode == 0, first.stderr
    (smoke,) = read_jsonl(tmp_path / "variants" / "smoke" / "runs.jsonl")

    dry = run_cli("run", "--suite", "variants", "--profile", "quick", "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert f"copy   {smoke['run_id']}" in dry.stdout
    assert "2 runs: 0 done, 1 to copy from another profile, 1 to train" in dry.stdout
    assert not (tmp_path / "variants" / "quick").exists()  # a dry run writes nothing

    second = run_cli("run", "--suite", "variants", "--profile", "quick", *args)
    assert second.returncode == 0, second.stderr
    assert "copied 1 runs with identical configs, made by this code, from profile smoke" in (
        second.stdout)
    recs = {r["seed"]: r for r in read_jsonl(tmp_path / "variants" / "quick" / "runs.jsonl")}
    assert sorted(recs) == [0, 1]
    copied = recs[0]
    assert copied["reused_from"] == {"suite": "variants", "profile": "smoke",
                                     "run_id": smoke["run_id"]}
    assert copied["profile"] == "quick" and "reused_from" not in recs[1]
    for key in ("run_id", "config", "metrics", "history", "timing", "env", "code"):
        assert copied[key] == smoke[key], key

    # A record made by other code is not copied: corrupt the smoke record's fingerprint.
    bad = {**smoke, "code": {**smoke["code"], "fingerprint": "0" * 16}}
    (tmp_path / "variants" / "smoke" / "runs.jsonl").write_text(json.dumps(bad) + "\n")
    shutil.rmtree(tmp_path / "variants" / "quick")
    again = run_cli("run", "--suite", "variants", "--profile", "quick", "--dry-run", *args)
    assert again.returncode == 0, again.stderr
    assert "2 runs: 0 done, 2 to train" in again.stdout
