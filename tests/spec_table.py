"""SPEC.md §2 read from the file itself, so tests/test_spec.py compares the registry with the
spec, not with a hand-kept copy of its numbers that could drift.

SPEC.md lives beside the checkout (`../shared/SPEC.md`; `$LENET_BENCH_SPEC` overrides). Only
tests/test_spec.py uses this helper: a clone without SPEC.md skips that module with one line,
except under CI, where it is required.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, required_tool


@dataclass(frozen=True)
class SpecRow:
    """What one §2 row states; None where the row states nothing for that field."""

    name: str
    params: int
    optimizer: str | None
    lr: float | None
    batch_size: int | None
    num_epochs: int | None
    gamma: float | None
    dataset: str
    published: float | None  # a fraction: "test acc 0.836" → 0.836, "test error 0.95%" → 0.0095
    published_metric: str | None


def spec_path() -> Path:
    return Path(os.environ.get("LENET_BENCH_SPEC", REPO.parent / "shared" / "SPEC.md"))


def spec_text() -> str:
    """SPEC.md's text; skips (workstation) or fails (CI) with one line when it is absent."""
    path = spec_path()
    if not path.is_file():
        required_tool(f"SPEC.md not found at {path}: the spec tests need it "
                      "(set LENET_BENCH_SPEC=/path/to/SPEC.md)")
    return path.read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _first(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


def _dataset(text: str) -> str | None:
    m = re.search(r"Fashion-MNIST|MNIST", text)
    return None if m is None else m.group(0).lower()


def parse_rows(text: str) -> dict[str, SpecRow]:
    """Every `| \\`name\\` | source | architecture | recipe | params | published |` row of §2."""
    section = text.split("## 2.", 1)[1].split("\n## ", 1)[0]
    raw = {}
    for line in section.splitlines():
        cells = _cells(line)
        if len(cells) == 6 and re.fullmatch(r"`\w+`", cells[0]):
            raw[cells[0].strip("`")] = cells
    rows = {}
    for name, (_, _, _, recipe, params, published) in raw.items():
        same = re.match(r"as `(\w+)`", recipe)
        if same:  # "as `mlp`": that row's recipe
            recipe = raw[same.group(1)][3]
        plain = recipe.replace("*", "")
        opt = _first(r"\b(SGD|Adam)\b", plain)
        lr, bs, gamma = (_first(p, plain) for p in
                         (r"\blr ([0-9.e-]+[0-9])", r"\bbatch (\d+)", r"γ=([0-9.]+)"))
        epochs = _first(r"(\d+) (?:epochs|passes)", plain)
        pub = re.search(r"test (acc|error) \**([0-9.]+)(%?)", published)
        pub_value = None
        if pub:
            pub_value = float(pub.group(2)) / (100 if pub.group(3) else 1)
        count = _first(r"(\d{1,3}(?:,\d{3})+)", params)
        assert count is not None, f"SPEC row {name}: no parameter count in {params!r}"
        dataset = _dataset(plain) or _dataset(published)
        assert dataset is not None, f"SPEC row {name}: no dataset"
        rows[name] = SpecRow(
            name=name, params=int(count.replace(",", "")),
            optimizer=opt.lower() if opt else None,
            lr=float(lr) if lr else None, batch_size=int(bs) if bs else None,
            num_epochs=int(epochs) if epochs else None, gamma=float(gamma) if gamma else None,
            dataset=dataset, published=pub_value,
            published_metric=None if pub is None else f"test_{pub.group(1)}",
        )
    return rows
