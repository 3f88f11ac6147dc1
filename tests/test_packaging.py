"""pyproject.toml lists its packages by name: a new subpackage must be listed, or a normal
(non-editable) install silently leaves it out while the editable dev install still works."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("bench", "variants", "report")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert "bench.d2l" in found
    assert found == listed, f"missing from pyproject: {found - listed}; stale: {listed - found}"
