"""The CI gate: strict thresholds files, FAIL on missing runs, PASS on a normal run, a crippled
variant caught by name, warnings for variants without thresholds, and the speed comparison.

Training here is one cheap variant (mlp, smoke profile: 20 Adam steps on 10k images), a few
seconds per run; every run lands in a module-wide temporary results directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.perf_baseline import resolve_perf
from bench.suites import expand, get_profile, load_suite
from bench.thresholds import (
    THRESHOLDS_FILE,
    WEAK_BELOW,
    Threshold,
    Thresholds,
    derive_threshold,
    derive_upper,
    load_thresholds,
    no_false_alarm_k,
    write_thresholds,
)

CHEAP = "mlp"  # fastest default-suite variant on the smoke profile


def _entry(variant: str = CHEAP, dataset: str = "mnist", body: str | None = None) -> str:
    body = body if body is not None else (
        'min_test_acc = 0.5\nderived = "by hand, for a test"\nrecords = []\n'
    )
    return f"[variants.smoke.{variant}.{dataset}]\n{body}"


def _write(path: Path, *entries: str, schema: str = "schema = 1\n") -> Path:
    path.write_text(schema + "\n" + "\n".join(entries))
    return path


def _check(results: Path, thresholds: Path, *extra: str) -> int:
    return main(["check", "--suite", "variants", "--profile", "smoke", "--quiet",
                 "--results", str(results), "--thresholds", str(thresholds), *extra])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """One normal smoke run of the cheap variant (trained by a passing `check`)."""
    res = tmp_path_factory.mktemp("results")
    th = _write(tmp_path_factory.mktemp("th") / "t.toml", _entry())
    assert _check(res, th, "--variants", CHEAP, "--data-root", str(data_root)) == 0
    return res


# --- the thresholds file ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (_entry(body='min_test_ac = 0.5\nderived = "x"\nrecords = []\n'),
         "variants.smoke.mlp.mnist: unknown key 'min_test_ac'; valid:"),
        (_entry(body='min_test_acc = "0.5"\nderived = "x"\nrecords = []\n'),
         "variants.smoke.mlp.mnist.min_test_acc must be a number in (0, 1], got '0.5'"),
        (_entry(body='min_test_acc = 1.5\nderived = "x"\nrecords = []\n'),
         "min_test_acc must be a number in (0, 1], got 1.5"),
        (_entry(body='min_test_acc = true\nderived = "x"\nrecords = []\n'),
         "min_test_acc must be a number in (0, 1], got True"),
        (_entry(body='min_test_acc = 0.5\nrecords = []\n'), "missing key 'derived'"),
        (_entry(body='min_test_acc = 0.5\nderived = "x"\nrecords = [1]\n'),
         "records must be a list of run-id strings"),
        (_entry(variant="mpl"), "variants.smoke.mpl: unknown variant 'mpl'"),
        (_entry(dataset="mnsit"), "unknown dataset 'mnsit'"),
        (_entry(body='min_test_acc = 0.5\nmax_test_acc = 0.4\nderived = "x"\nrecords = []\n'),
         "variants.smoke.mlp.mnist.max_test_acc must be above min_test_acc (0.5), got 0.4"),
        ("[variants.smok.mlp.mnist]\nmin_test_acc = 0.5\n", "variants.smok: unknown profile"),
        ("[variantz.smoke.mlp.mnist]\nmin_test_acc = 0.5\n", "unknown key or suite 'variantz'"),
        ("[variants.smoke.mlp.mnist\nmin_test_acc = 0.5\n", "invalid TOML"),
    ],
)
def test_bad_thresholds_file_is_one_line_exit_2(tmp_path: Path, content: str,
                                                fragment: str, capsys: pytest.CaptureFixture
                                                ) -> None:
    th = _write(tmp_path / "bad.toml", content)
    res = tmp_path / "results"
    assert _check(res, th, "--variants", CHEAP) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lenet-bench: error:"), err
    assert fragment in err[0] and str(th) in err[0], err[0]
    assert not res.exists()  # nothing trained, nothing written


def test_missing_or_schemaless_file_is_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    assert _check(tmp_path / "r", tmp_path / "nope.toml") == 2
    assert "not found; create it with `lenet-bench calibrate" in capsys.readouterr().err
    th = _write(tmp_path / "t.toml", _entry(), schema="")
    assert _check(tmp_path / "r", th) == 2
    assert "schema must be 1, got None" in capsys.readouterr().err


def test_usage_errors_of_the_subcommands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(tmp_path / "r", th, "--frobnicate") == 2
    assert main(["calibrate", "--seeds", "1", "--thresholds", str(th)]) == 2
    assert _check(tmp_path / "r", th, "--set", "colour=red") == 2
    err = capsys.readouterr().err.splitlines()
    assert "unrecognized arguments: --frobnicate" in err[0]
    assert "--seeds must be ≥ 2" in err[1] and "unknown override 'colour'" in err[2]
    assert not (tmp_path / "r").exists()


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    th = Thresholds(path=tmp_path / "t.toml")
    th.entries[("variants", "smoke", "lenet_d2l", "fashion-mnist")] = Threshold(
        0.612, 'mean − 3σ "quoted", ünïcode', ("abc", "def"), 0.7, 0.01, 5)
    th.meta[("variants", "smoke")] = {"seeds": 5, "rule": "r", "k_sigma": 3.0}
    write_thresholds(th)
    back = load_thresholds(th.path)
    assert back.entries == th.entries and back.meta == th.meta


def test_derive_threshold_rule() -> None:
    # spread-dominated: mean 0.80, std 0.02 → 0.80 − 0.06, rounded down to 0.001
    value, mean, std = derive_threshold([0.78, 0.80, 0.82])
    assert (mean, std) == pytest.approx((0.80, 0.02)) and value == pytest.approx(0.74)
    # seeds agree: the minimum margin (0.005) applies
    value, _, std = derive_threshold([0.9512, 0.9512, 0.9512])
    assert std == 0 and value == pytest.approx(0.946)


def test_derive_upper_rule() -> None:
    """The mirror of the lower bound: mean + max(k·σ, margin), rounded up, at most 1."""
    assert derive_upper([0.78, 0.80, 0.82]) == pytest.approx(0.86)  # 0.80 + 3 × 0.02
    assert derive_upper([0.9512, 0.9512, 0.9512]) == pytest.approx(0.957)  # the margin, up
    assert derive_upper([0.80, 0.81, 0.82], k_sigma=4.0) == pytest.approx(0.85)
    assert derive_upper([0.999, 0.998, 0.999]) == 1.0


def test_upper_k_is_the_least_half_integer_without_a_false_alarm() -> None:
    low_outlier = [0.90] * 15 + [0.80]  # far below, never above: the upper k stays 3
    assert no_false_alarm_k([low_outlier], upper=True) == 3.0
    high = [0.80] * 15 + [0.90]  # z = 3.75 above the mean → k 4.0, and no seed above
    k = no_false_alarm_k([low_outlier, high], upper=True)
    assert k == 4.0 and no_false_alarm_k([high]) == 3.0
    assert derive_upper(high, 3.5) < max(high) <= derive_upper(high, k)
    for v in (low_outlier, high):
        assert max(v) <= derive_upper(v, k)


def test_k_is_the_least_half_integer_without_a_false_alarm() -> None:
    tight = [0.90, 0.91, 0.92, 0.91]  # the lowest seed is 1.22σ below the mean: k stays 3
    assert no_false_alarm_k([tight]) == 3.0
    outlier = [0.90] * 9 + [0.80]  # z = 2.85 … with one more seed, 3.0
    values = [0.90] * 15 + [0.80]  # mean 0.89375, σ 0.025: z = 3.75 → k 4.0
    assert no_false_alarm_k([tight, values]) == 4.0
    k = no_false_alarm_k([tight, outlier, values])
    for v in (tight, outlier, values):
        th, _, _ = derive_threshold(v, k)
        assert min(v) >= th  # every seed passes


def test_committed_file_is_valid_strong_and_covers_the_gate() -> None:
    """`make check` must neither error on the file nor warn about an uncovered variant, and no
    threshold may be weak (near chance), with no false alarm on its calibration seeds."""
    th = load_thresholds(THRESHOLDS_FILE)
    mine = th.for_profile("variants", "gate")
    plan = expand(load_suite("variants"), get_profile("gate"))
    planned = {(r.config.variant, r.config.dataset) for r in plan}
    # A variant registered after the calibration is only WARNed about ("uncalibrated"); a
    # threshold for something the gate no longer runs would never apply.
    assert mine and set(mine) <= planned, set(mine) - planned
    for t in mine.values():
        assert t.mean is not None and t.value < t.mean and len(t.records) == t.n >= 10
        assert t.value >= WEAK_BELOW and t.min_seed is not None and t.min_seed >= t.value
        assert t.upper is not None and t.max_seed is not None
        assert t.mean < t.max_seed <= t.upper <= 1.0  # no calibration seed is too good
        assert t.fingerprint
    meta = th.meta[("variants", "gate")]
    assert meta["false_alarms"] == 0 and meta["false_alarms_upper"] == 0


def test_gate_profile_trains_each_variant_at_its_own_budget() -> None:
    from variants import get_spec

    plan = expand(load_suite("variants"), get_profile("gate"))
    assert {r.config.seed for r in plan} == {0}
    for r in plan:
        budget = get_spec(r.config.variant).gate
        assert r.config.num_epochs == budget.get("num_epochs", r.config.num_epochs)
        assert r.config.train_subset == budget.get("train_subset")
        assert r.config.test_subset is None  # the whole test set: less noise per run


# --- check ----------------------------------------------------------------------------------

def test_missing_result_is_a_fail(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(tmp_path / "empty", th, "--variants", CHEAP, "--no-train") == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(CHEAP))
    assert "FAIL" in row and "no record for seed 0" in row
    assert "0 of 1 passed; FAIL: mlp/mnist" in out


def test_normal_run_passes_and_is_reused(results: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(results, th, "--variants", CHEAP) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(CHEAP))
    assert "PASS" in row and "0.5000" in row
    assert "1 of 1 passed (0 runs trained, 1 reused" in out


def test_fresh_retrains_instead_of_reusing(results: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """Run ids hash the config, not the code: `--fresh` (what CI wants) retrains anyway."""
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(results, th, "--variants", CHEAP, "--fresh") == 0
    assert "1 of 1 passed (1 runs trained, 0 reused" in capsys.readouterr().out
    recs = [json.loads(x) for x in (results / "variants/smoke/runs.jsonl").read_text().splitlines()]
    plain = [r for r in recs if r["variant"] == CHEAP and r["seed"] == 0 and not r["overrides"]]
    assert len(plain) == 1  # replaced, not added


def test_crippled_variant_fails_by_name(results: Path, data_root: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """The gate bites: lr 1e-6 leaves the network near its random init, far below threshold.

    Checked against the committed thresholds, i.e. the ones `make check` uses.
    """
    code = main(["check", "--suite", "variants", "--profile", "gate", "--quiet",
                 "--results", str(results), "--data-root", str(data_root),
                 "--variants", CHEAP, "--set", "lr=1e-6"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "note: overrides active (lr=1e-06)" in out
    row = next(line for line in out.splitlines() if line.startswith(CHEAP))
    assert "FAIL" in row and "below threshold" in row
    assert "FAIL: mlp/mnist" in out and "1 runs trained" in out


def test_too_good_run_fails_and_says_why(results: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    """Above max_test_acc is a FAIL: too good for this code, with the likely causes (the
    wrong data evaluated, a leak) and the way out for a real improvement (recalibrate)."""
    th = _write(tmp_path / "t.toml", _entry(
        body='min_test_acc = 0.1\nmax_test_acc = 0.2\nderived = "x"\nrecords = []\n'))
    assert _check(results, th, "--variants", CHEAP, "--no-train") == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(CHEAP))
    assert "FAIL" in row and "too good: above max" in row and "0.2000" in row
    why = next(line for line in out.splitlines() if line.startswith("too good: mlp on mnist"))
    for part in ("is above its upper bound 0.200: too good for this code",
                 "evaluation on other data than the full test split", "test subset",
                 "leaked into training", "recalibrate (`lenet-bench calibrate"):
        assert part in why, why
    assert "FAIL: mlp/mnist" in out


def test_record_without_its_data_block_fails(results: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """A record that does not say what it trained on and scored cannot pass the data
    contract (records made before it existed: the gate trains afresh anyway)."""
    from bench.records import runs_path

    rec = json.loads(runs_path(results, "variants", "smoke").read_text().splitlines()[0])
    assert rec["data"]["test"] == {"n": 2000, "labels_md5": rec["data"]["test"]["labels_md5"]}
    del rec["data"]
    res = tmp_path / "r"
    path = runs_path(res, "variants", "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec) + "\n")
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(res, th, "--variants", CHEAP, "--no-train") == 1
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(CHEAP))
    assert "FAIL" in row and "data: the record does not say which data" in row


def test_failed_run_is_a_fail(results: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    """A run whose record says failed (or diverged) fails the gate even if others pass."""
    from bench.records import runs_path

    rec = json.loads(runs_path(results, "variants", "smoke").read_text().splitlines()[0])
    res = tmp_path / "r"
    path = runs_path(res, "variants", "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**rec, "status": "diverged", "error": "loss became nan"}) + "\n")
    th = _write(tmp_path / "t.toml", _entry())
    assert _check(res, th, "--variants", CHEAP, "--no-train") == 1
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(CHEAP))
    assert "FAIL" in row and "seed 0 diverged: loss became nan" in row


def test_variant_without_threshold_warns(results: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    th = _write(tmp_path / "t.toml", _entry(variant="cnn_fidle"))
    assert _check(results, th, "--variants", CHEAP, "--no-train") == 0
    cap = capsys.readouterr()
    row = next(x for x in cap.out.splitlines() if x.startswith(CHEAP))
    assert "WARN" in row and "uncalibrated: run calibrate" in row
    warns = [x for x in cap.err.splitlines() if x.startswith("warning:")]
    assert len(warns) == 1 and "mlp on mnist is registered but has no threshold" in warns[0]


def test_calibrate_writes_a_reviewable_entry(results: Path, tmp_path: Path,
                                             data_root: Path) -> None:
    """Two seeds of the cheap variant (seed 0 reused); other entries are kept as they were."""
    th = _write(tmp_path / "t.toml", _entry(variant="cnn_fidle"))
    code = main(["calibrate", "--suite", "variants", "--profile", "smoke", "--seeds", "2",
                 "--variants", CHEAP, "--quiet", "--results", str(results),
                 "--data-root", str(data_root), "--thresholds", str(th)])
    assert code == 0
    text = th.read_text()
    assert text.startswith("# CI regression-gate thresholds")
    got = load_thresholds(th)
    mine = got.entries[("variants", "smoke", CHEAP, "mnist")]
    assert mine.n == 2 and len(mine.records) == 2 and mine.value < mine.mean
    assert "over 2 seeds" in got.meta[("variants", "smoke")]["rule"]
    assert got.entries[("variants", "smoke", "cnn_fidle", "mnist")].value == 0.5


# --- speed: warnings only -------------------------------------------------------------------

def _bench(path: Path, times: dict[str, float], node: str = "ci-1", threads: int = 1) -> None:
    """A minimal pytest-benchmark save (the fields the comparison reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "machine_info": {"node": node, "cpu": {"brand_raw": "AMD EPYC", "count": 2}},
        "datetime": path.name[:4],
        "benchmarks": [{"name": n, "fullname": f"t.py::{n}", "stats": {"min": t, "mean": t},
                        "extra_info": {"threads": threads}} for n, t in times.items()],
    }))


def test_perf_warns_only_above_25_percent(tmp_path: Path) -> None:
    d = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    _bench(d / "0001_a.json", {"fwd": 1.0, "step": 1.0, "epoch": 1.0})
    _bench(d / "0002_b.json", {"fwd": 1.2, "step": 1.3, "epoch": 0.5, "new": 9.0})
    rep = resolve_perf(tmp_path / ".benchmarks")
    assert len(rep.warnings) == 1 and "t.py::step is 30% slower than baseline 0001_a" in \
        rep.warnings[0]
    assert "0002_b.json vs 0001_a.json: 3 benchmarks compared (min time), 1 more than 25% " \
        "slower, 1 new" in rep.lines[0]
    _bench(d / "0003_c.json", {"fwd": 9.0}, threads=2)  # other thread count: not compared
    rep = resolve_perf(tmp_path / ".benchmarks")
    assert rep.warnings == ["perf: 1 benchmarks ran with another thread count than in "
                            "0002_b.json; not compared"]


def test_perf_baseline_is_same_machine_or_named(tmp_path: Path) -> None:
    d = tmp_path / "b" / "Linux-CPython-3.11-64bit"
    _bench(d / "0001_a.json", {"fwd": 1.0})
    _bench(d / "0002_other.json", {"fwd": 0.1}, node="laptop")
    _bench(d / "0003_c.json", {"fwd": 1.1})
    rep = resolve_perf(tmp_path / "b")  # skips the other machine's save
    assert not rep.warnings and "vs 0001_a.json" in rep.lines[0]
    rep = resolve_perf(tmp_path / "b", baseline="0002")  # named: compared, with a caveat
    assert any("saved on another machine" in w for w in rep.warnings)
    assert any("t.py::fwd is 1000% slower" in w for w in rep.warnings)
    only = tmp_path / "c" / "m"
    _bench(only / "0001_a.json", {"fwd": 1.0})
    assert "no earlier save from this machine" in resolve_perf(tmp_path / "c").lines[0]
    assert "no saved benchmarks" in resolve_perf(tmp_path / "none").lines[0]


def test_perf_never_changes_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "b" / "m"
    _bench(d / "0001_a.json", {"fwd": 1.0})
    _bench(d / "0002_b.json", {"fwd": 2.0})
    (d / "0003_broken.json").write_text("{not json")
    assert main(["check", "--perf-only", "--benchmarks", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "t.py::fwd is 100% slower" in err and "0003_broken.json is not a pytest-benchmark" \
        in err
    assert main(["check", "--perf-only", "--benchmarks", str(tmp_path / "b"),
                 "--perf-baseline", "0009"]) == 2
    assert "--perf-baseline '0009' matches 0 saved" in capsys.readouterr().err


# --- gate power ------------------------------------------------------------------------------

def test_every_mutant_targets_code_that_exists_once() -> None:
    from bench.gate_power import MUTANTS
    from tests.conftest import REPO

    kinds = {m.kind for m in MUTANTS}
    assert len(MUTANTS) >= 12 and len({m.name for m in MUTANTS}) == len(MUTANTS)
    assert {"optimizer hyperparameters", "learning-rate schedule", "data order",
            "normalization", "input geometry", "label handling", "evaluation mode",
            "initialization", "loss", "one layer in a model", "evaluation data",
            "train/test leak"} <= kinds
    assert {m.name for m in MUTANTS if m.too_good} >= {
        "eval-on-train-set", "test-subset-5000", "test-leak-into-train"}
    for m in MUTANTS:
        assert (REPO / m.path).read_text().count(m.old) == 1, m.name
        assert m.old != m.new


def test_a_mutant_whose_target_is_gone_is_stale_not_caught(tmp_path: Path) -> None:
    from bench.gate_power import Mutant, run_one

    gone = Mutant("gone", "test", "bench/engine.py", "text that is not in the engine", "x",
                  "a mutant left behind by a refactor")
    out = run_one(gone, tmp_path, tmp_path / "data", THRESHOLDS_FILE, timeout=60)
    assert out["result"] == "stale" and "found 0 times" in out["detail"]


def test_failing_rows_are_read_from_the_gate_table() -> None:
    from bench.gate_power import _failing, caught_by

    table = """variant    dataset    seeds    test_acc    threshold    margin    max     status    note
---------  ---------  -------  ----------  -----------  --------  ------  --------  ------
cnn_fidle  mnist      1/1      0.9012      0.9600       -0.0588   0.9900  FAIL      below threshold
mlp        mnist      1/1      0.9700      0.9600       +0.0100   0.9900  PASS
lenet5_bn  mnist      1/1      0.9840      0.9770       +0.0070   0.9880  FAIL      evaluation changed the model's state (bn1.running_mean…)
lenet5     mnist      1/1      0.9890      0.9560       +0.0330   0.9850  FAIL      too good: above max
mlp2       mnist      1/1      0.9400      0.9250       +0.0150   0.9430  FAIL      data: the test metrics scored 60000 images; the mnist test split has 10000
8 of 9 passed; FAIL: cnn_fidle/mnist (9 runs trained, 0 reused, 150.0 s)"""  # noqa: E501
    failing = _failing(table)
    assert failing[:2] == ["cnn_fidle mnist 0.9012 0.9600", "lenet5_bn mnist 0.9840 0.9770 "
                           "(evaluation changed the model's state (bn1.running_mean…))"]
    assert failing[2] == "lenet5 mnist 0.9890 0.9560 (too good: above max)"
    assert caught_by(failing[2:3]) == "accuracy" and caught_by(failing[3:]) == "contract"
    failing = failing[:2]
    assert _failing("Traceback …\nRuntimeError: boom") == ["RuntimeError: boom"]
    assert caught_by(failing) == "both"
    assert caught_by(failing[:1]) == "accuracy" and caught_by(failing[1:]) == "contract"
    assert caught_by(["mlp mnist – 0.9250 (seed 0 diverged: training loss became nan)"]) == (
        "accuracy")
