"""The registry's catalogue against SPEC.md §2, an oracle kept outside this project.

The only test module that reads a file outside the checkout: SPEC.md beside it, where
tests/spec_table.py looks (or `$LENET_BENCH_SPEC`). Where it is absent (a user's clone) the whole
module skips with one line, CI=true or not: the project stands on its own, and its own tests
check the catalogue without it (tests/test_variants.py, tests/test_catalogue.py).
"""

from __future__ import annotations

import pytest

from tests.spec_table import SpecRow, parse_rows, spec_path, spec_text
from variants import get_spec, list_variants

if not spec_path().is_file():
    pytest.skip(f"SPEC.md not found at {spec_path()}: the SPEC check needs it "
                "(set LENET_BENCH_SPEC=/path/to/SPEC.md)", allow_module_level=True)

# Recipe fields a §2 row may state; one it leaves unstated is not compared (lenet5's SDLM:
# SPEC gives no lr or batch for it, and the variant's description explains ours).
RECIPE_FIELDS = ("optimizer", "lr", "batch_size", "num_epochs", "gamma")


@pytest.fixture(scope="module")
def spec_rows() -> dict[str, SpecRow]:
    return parse_rows(spec_text())


def _mismatches(name: str, row: SpecRow) -> list[str]:
    """What the variant's registration says that its SPEC row does not."""
    spec, out = get_spec(name), []
    r = spec.recipe
    if spec.params != row.params:
        out.append(f"params {spec.params:,}, SPEC {row.params:,}")
    if r.dataset != row.dataset:
        out.append(f"dataset {r.dataset}, SPEC {row.dataset}")
    for field in RECIPE_FIELDS:
        stated = getattr(row, field)
        if stated is not None and getattr(r, field) != stated:
            out.append(f"{field} {getattr(r, field)}, SPEC {stated}")
    if row.published is not None:
        pub = spec.published
        ours = None if pub is None else (pub.metric, pub.value)
        if ours != (row.published_metric, row.published):
            out.append(f"published {ours}, SPEC {(row.published_metric, row.published)}")
    return [f"{name}: {m}" for m in out]


def test_every_variant_matches_its_spec_row(spec_rows: dict[str, SpecRow]) -> None:
    """Every registered variant that names a §2 row states what the row states: parameter
    count, dataset, optimizer, lr, batch, epochs, γ and published figure. One test over all
    variants, so the failure lists every mismatch at once."""
    problems: list[str] = []
    for name in list_variants():
        spec = get_spec(name)
        if spec.spec_row is None:
            if spec.in_default_suites:
                problems.append(f"{name}: a default variant needs a SPEC row")
        elif spec.spec_row not in spec_rows:
            problems.append(f"{name}: SPEC §2 has no row {spec.spec_row!r}")
        else:
            problems += _mismatches(name, spec_rows[spec.spec_row])
    assert not problems, "the registry differs from SPEC §2:\n" + "\n".join(problems)


def test_every_spec_row_is_registered(spec_rows: dict[str, SpecRow]) -> None:
    rows = {get_spec(n).spec_row for n in list_variants(default_only=True)}
    assert rows == set(spec_rows), f"SPEC rows without a default variant: {set(spec_rows) - rows}"
