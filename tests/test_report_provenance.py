"""The report marks every record whose code differs from the tree it is rendered by."""

from __future__ import annotations

from pathlib import Path

from bench.config import resolve_config
from bench.fingerprint import VERSION, fingerprint
from report.markdown import to_markdown
from report.provenance import OLD_PROBE, OTHER, THIS, UNCHECKED, UNKNOWN, code_of
from report.render import build
from tests.report_records import synth

SMALL = {"train_subset": 512, "test_subset": 256, "num_epochs": 1}


def _with_code(seed: int, code: dict | None, variant: str = "mlp") -> dict:
    r = synth(variant, seed, 0.9, epochs=1, subset=512)
    r["config"] = resolve_config(variant, None, seed, SMALL).to_dict()
    if code is not None:
        r["code"] = {"probe_version": VERSION, **code}
    return r


def test_records_of_other_or_unknown_code_are_marked(tmp_path: Path, data_root: Path) -> None:
    now = fingerprint(resolve_config("mlp", None, 0, SMALL), data_root)
    recs = [_with_code(0, {"fingerprint": now}), _with_code(1, {"fingerprint": "0" * 16}),
            _with_code(2, None), _with_code(3, {"fingerprint": now}),
            _with_code(4, {"fingerprint": now, "probe_version": 1})]
    code = code_of(recs, data_root)
    assert [code[id(r)] for r in recs] == [THIS, OTHER, UNKNOWN, THIS, OLD_PROBE]
    intro, sections = build(recs, tmp_path, tmp_path, data_root)
    md = to_markdown("t", intro, sections)
    assert ("Warning: of 5 records, 1 made by code that trains differently from this tree and 1 "
            "made before records named their code and 1 fingerprinted by an older probe, "
            "which cannot be compared") in md
    assert "2 of 5 (1 older probe, 1 other code, 1 unknown code ⚠)" in md


def test_all_current_says_nothing_unregistered_is_other_code_no_data_is_unchecked(
        tmp_path: Path, data_root: Path) -> None:
    now = fingerprint(resolve_config("mlp", None, 0, SMALL), data_root)
    recs = [_with_code(s, {"fingerprint": now}) for s in range(3)]
    md = to_markdown("t", *build(recs, tmp_path, tmp_path, data_root))
    assert "Warning: of" not in md and "3 of 3 |" in md
    gone = _with_code(0, {"fingerprint": now})
    gone["config"] = {**gone["config"], "variant": "no_such_variant"}
    assert code_of([gone], data_root)[id(gone)] == OTHER  # this tree cannot train it
    other_lr = _with_code(5, {"fingerprint": now})
    other_lr["config"] = {**other_lr["config"], "lr": 0.5}  # a configuration not probed yet
    assert code_of([other_lr], tmp_path / "no-data")[id(other_lr)] == UNCHECKED


def test_perf_rows_say_whether_this_code_and_recipe_made_them(data_root: Path) -> None:
    """A perf row names the config and code it measured (bench/perf.py): the report tells a
    row of this tree from one of another recipe, other code or no named code."""
    from bench.fingerprint import code_block, why_not
    from report.speed import provenance

    cfg = resolve_config("mlp", None, 0, {})
    ours = {"variant": "mlp", "batch_size": cfg.batch_size, "config": cfg.to_dict(),
            "code": code_block(cfg, data_root)}
    changed = {**ours, "code": {**ours["code"], "fingerprint": "0" * 16}}
    recipe = {**ours, "config": {**cfg.to_dict(), "lr": 0.5}}
    bare = {"variant": "mlp", "batch_size": cfg.batch_size}
    got = provenance({"device": "cpu", "rows": [ours, changed, recipe, bare]}, data_root)
    assert got == [THIS, why_not(OTHER), "measured at lr 0.5 (now 0.001)",
                   why_not(UNKNOWN)]
