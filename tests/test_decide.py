"""`lenet-bench decide`: the report's comparisons, seeds added where they are open.

The statistics are proven in test_sequential; here: the comparisons are the report's own, a
round trains exactly the seeds the next look needs (same configuration, seed changed), the
verdict replays from the records, and a user mistake is one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.config import config_from_record, config_key
from bench.decide import candidates, makespan, round_runs
from report.decisions import LOOKS
from report.judged import current
from tests.conftest import read_jsonl
from tests.report_records import write_fixture

WORDS = ("better", "worse", "equivalent within", "undecided after")


def test_leaderboard_comparisons_are_the_reports(tmp_path: Path) -> None:
    from report.collect import dedupe, group_records, load_all
    from report.runsets import split_runsets
    from report.significance import significance_tests

    write_fixture(tmp_path)
    ds = current("variants", "reference", tmp_path)
    split = split_runsets(dedupe(load_all(tmp_path))[0])
    rs = next(r for r in split.lead if r.suite == "variants")
    tests = significance_tests([(rs, group_records(split.records(rs)))])
    want = {(dt.dataset, lab, d.words) for dt in tests for lab, d in dt.decisions.items()}
    assert {(d.dataset, d.a.label, d.words) for d in ds} == want and want
    assert all(d.verdict.outcome == "open" and d.verdict.next_n == LOOKS[0] for d in ds)


def test_a_round_asks_for_the_next_looks_seeds_of_both_arms(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    ds = current("variants", "reference", tmp_path)
    per, cost = round_runs(ds)
    runs = [r for rs in per for r in rs]
    for d in ds:
        for arm in (d.a, d.b):
            seeds = sorted(r.config.seed for r in runs if config_key(r.config.to_dict())
                           == config_key(arm.record["config"]))
            assert seeds == [s for s in range(LOOKS[0]) if s not in arm.by_seed]
    assert len({r.run_id for r in runs}) == len(runs) and set(cost) == {r.run_id for r in runs}
    for r in runs:  # the recorded configuration, seed changed: a real, plannable run
        assert r.run_id == r.config.run_id() and r.config.seed >= 2


def test_the_budget_estimate_schedules_whole_runs_on_the_workers() -> None:
    """Five equal runs on two workers take three runs' time (the pool trains whole runs);
    one long run bounds the round however many workers are idle."""
    assert makespan([150.0] * 5, 2) == 450.0
    assert makespan([150.0] * 5, 1) == 750.0
    assert makespan([300.0, 100.0, 100.0, 100.0], 2) == 300.0
    assert makespan([300.0, 10.0], 8) == 300.0
    assert makespan([], 2) == 0.0


def test_d2l_candidates_are_each_groups_best_level_better_first(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    path = next(tmp_path.glob("d2l*/*/runs.jsonl"))
    ds = current(path.parent.parent.name, path.parent.name, tmp_path)
    chosen = candidates(ds, all_levels=False)
    assert chosen and len(chosen) <= len({(d.question, d.dataset) for d in ds})
    for c in chosen:
        rivals = [d for d in ds if (d.question, d.dataset) == (c.question, c.dataset)]
        assert sum(c.a.values) / len(c.a.values) == max(sum(d.a.values) / len(d.a.values)
                                                      for d in rivals)
    everyone = candidates(ds, all_levels=True)
    assert {id(d) for d in everyone} == {id(d) for d in ds if d.verdict.outcome == "open"}
    gaps = [sum(d.a.values) / len(d.a.values) - sum(d.b.values) / len(d.b.values)
            for d in everyone]
    assert gaps == sorted(gaps, reverse=True)  # the likeliest "better" first


def test_the_epochs_plateau_gets_seeds_for_the_long_runs_next_look(tmp_path: Path) -> None:
    """The epochs question is one comparison for `decide`: its long runs, seeds up to the
    plateau's next look (its own test is proven in test_sequential)."""
    write_fixture(tmp_path)
    ds = current("d2l-ex2", "quick", tmp_path)
    [p] = [d for d in ds if d.question == "epochs"]
    assert (p.verdict.outcome, p.verdict.n, p.verdict.next_n) == ("open", 3, LOOKS[0])
    assert p.words == "undecided after 3 seeds" and p.a.record is p.b.record
    assert p in candidates(ds, all_levels=False)
    per, _ = round_runs([p])
    [runs] = per
    assert sorted(r.config.seed for r in runs) == [3, 4]
    assert {r.config.num_epochs for r in runs} == {p.a.record["config"]["num_epochs"]}
    assert {r.memberships[0]["group"] for r in runs} == {"epochs"}


def test_decide_trains_the_open_comparisons_seeds_and_replays(
        tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--set", "train_subset=1000", "--set", "test_subset=500", "--set", "num_epochs=1"]
    assert main(["run", "--suite", "d2l-ex1", "--profile", "quick", "--results",
                 str(tmp_path), "--quiet", "--jobs", "1", *small]) == 0
    path = tmp_path / "d2l-ex1/quick/runs.jsonl"
    before = read_jsonl(path)
    assert {r["seed"] for r in before} == {0, 1}
    capsys.readouterr()
    assert main(["decide", "--suite", "d2l-ex1", "--profile", "quick", "--results",
                 str(tmp_path), "--quiet", "--jobs", "1", "--budget-minutes", "0.25"]) == 0
    out = capsys.readouterr().out
    after = read_jsonl(path)
    new = after[len(before):]
    keys = {config_key(r["config"]) for r in before}
    by_arm: dict[str, list[int]] = {}
    for r in new:  # the recorded configurations, seed changed
        assert config_key(r["config"]) in keys
        assert config_from_record(r["config"]).run_id() == r["run_id"]
        by_arm.setdefault(config_key(r["config"]), []).append(r["seed"])
    # one comparison got seeds (the best level and the reference), both arms up to a look
    assert len(by_arm) == 2
    seeds = [sorted(v) for v in by_arm.values()]
    assert seeds[0] == seeds[1] and seeds[0] == list(range(2, seeds[0][-1] + 1))
    assert seeds[0][-1] + 1 in LOOKS
    assert any(w in out for w in WORDS) and "not resolved" not in out
    # the verdict is replayed from the records: decided at the last look trained, or open
    # for the next one, or undecided at the cap
    judged = [d for d in current("d2l-ex1", "quick", tmp_path)
              if {config_key(d.a.record["config"]), config_key(d.b.record["config"])}
              == set(by_arm)]
    assert len(judged) == 1
    v = judged[0].verdict
    assert v.n == seeds[0][-1] + 1 if v.outcome != "open" else v.next_n > seeds[0][-1] + 1


@pytest.mark.parametrize("argv,msg", [
    (["--suite", "d2l-ex4"], "decide works on suites"),
    (["--suite", "variants", "--budget-minutes", "0"], "--budget-minutes must be > 0"),
    (["--suite", "variants"], "no comparisons in"),
])
def test_user_mistakes_are_one_line(argv: list[str], msg: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decide", "--results", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_datasets_and_questions_narrow_the_comparisons(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.decide import selected

    write_fixture(tmp_path)
    ds = current("d2l-ex2", "quick", tmp_path)
    assert len({d.question for d in ds}) > 1
    only = selected(ds, None, "epochs, act*")
    assert only and {d.question for d in only} <= {"epochs", "activation"}
    assert "epochs" in {d.question for d in only}
    assert selected(ds, ["mnist"], None) == [] and selected(ds, ["fashion-mnist"], None) == ds
    assert main(["decide", "--results", str(tmp_path), "--suite", "d2l-ex2", "--profile",
                 "quick", "--questions", "epochs", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 comparisons:" in out and "epoch" in out
    assert main(["decide", "--results", str(tmp_path), "--suite", "d2l-ex2", "--profile",
                 "quick", "--questions", "nothing*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no comparison matches --datasets/--questions" in err[0]
