"""The CLI as a user meets it: one-line errors, exit 2, nothing written, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--suite", "nope"], "unknown suite 'nope'; valid: variants"),
        (["run", "--suite", "variants", "--profile", "huge"], "unknown profile 'huge'; valid"),
        (["run", "--suite", "variants", "--variants", "lenet9"], "no runs for variants"),
        (["run", "--suite", "variants", "--set", "colour=red"], "unknown override 'colour'"),
        (["run", "--suite", "variants", "--set", "lr=fast"], "lr must be float"),
        (["run", "--suite", "variants", "--set", "lr"], "--set expects key=value"),
        (["run", "--suite", "variants", "--seeds", "0"], "--seeds must be"),
        (["run", "--suite", "variants", "--datasets", "cifar"], "unknown dataset 'cifar'"),
        (["run", "--suite", "variants", "--device", "tpu"], "unknown device 'tpu'"),
        (["show", "lenet9"], "unknown variant 'lenet9'; valid:"),
        (["show", "lenet_modern", "--set", "kernel_size=0"], "kernel_size must be"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], fragment: str,
                      capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, which spares a torch import per case (an escaping exception fails
    the test as a traceback would); test_usage_error_as_the_shell_sees_it runs the entry
    point itself."""
    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    res = tmp_path / "results"
    full = args + (["--results", str(res)] if args[0] == "run" else [])
    assert main(full) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lenet-bench: error:"), err
    assert fragment in lines[0]
    assert not res.exists()


def test_usage_error_as_the_shell_sees_it(tmp_path: Path) -> None:
    """`python -m bench` in a process of its own: exit status 2, one line, no traceback."""
    res = tmp_path / "results"
    p = run_cli("run", "--suite", "variants", "--set", "colour=red", "--results", str(res),
                cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lenet-bench: error:"), p.stderr
    assert "unknown override 'colour'" in lines[0] and "Traceback" not in p.stderr
    assert not res.exists()


def test_list_json_has_every_variant() -> None:
    from variants import get_spec, list_variants

    p = run_cli("list", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    names = [v["name"] for v in data["variants"]]
    assert names == list_variants()
    for v in data["variants"]:
        assert v["params"] == get_spec(v["name"]).params
        assert v["flops_per_example"] > 0 and v["input_size"] in (28, 32)
        assert v["recipe"]["dataset"] in ("mnist", "fashion-mnist")
    assert "variants" in data["suites"] and set(data["profiles"]) == {
        "smoke", "gate", "quick", "reference", "full"}


def test_show_prints_layers() -> None:
    p = run_cli("show", "lenet_d2l")
    assert p.returncode == 0, p.stderr
    assert "61,706 trainable parameters" in p.stdout
    assert "(6, 28, 28)" in p.stdout and "(16, 10, 10)" in p.stdout


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    res = tmp_path / "r"
    p = run_cli("run", "--suite", "variants", "--profile", "quick", "--dry-run",
                "--results", str(res))
    assert p.returncode == 0, p.stderr
    assert "to train" in p.stdout and "lenet_d2l" in p.stdout
    assert not res.exists()


def test_data_verify(data_root: Path) -> None:
    p = run_cli("data", "--verify", "--data-root", str(data_root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(": ok") == 8


def test_data_verify_empty_root_fails(tmp_path: Path) -> None:
    p = run_cli("data", "--verify", "--data-root", str(tmp_path))
    assert p.returncode == 2
    assert "missing" in p.stdout and "lenet-bench data" in p.stderr
