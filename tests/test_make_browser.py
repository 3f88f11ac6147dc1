"""`make test` as a person runs it: without chromium on a workstation, the browser test is
skipped with one line saying how to enable it; under CI it stays required."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "ensure-chromium.sh"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(extra)
    return env


def test_workstation_without_chromium_goes_on_with_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-chromium")
    for ci in ({}, {"CI": "false"}):
        out = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True,
                             env=_env(CHROMIUM=missing, **ci), timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1 and "skipped" in lines[0] and "make browser" in lines[0]
        assert out.stderr == ""


def test_ci_without_chromium_and_without_root_fails(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "id").chmod(0o755)
    out = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                         env=_env(CHROMIUM=str(tmp_path / "none"), CI="true",
                                  PATH=f"{fake}:{os.environ['PATH']}"))
    assert out.returncode == 1
    assert "apt-get install -y chromium" in out.stderr and out.stdout == ""


def test_browser_test_skips_with_its_line_on_a_workstation(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_report_browser.py", "-rs", "-q",
         "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=_env(CHROMIUM=str(tmp_path / "none")))
    assert out.returncode == 0, out.stdout[-2000:]
    assert "skipped" in out.stdout and "passed" not in out.stdout
    assert "enable the browser test with `sudo make browser`" in out.stdout


def test_browser_test_fails_under_ci_without_chromium(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_report_browser.py", "-q",
         "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=_env(CHROMIUM=str(tmp_path / "none"), CI="true"))
    assert out.returncode == 1
    assert " error" in out.stdout and "is missing" in out.stdout  # a fixture failure
