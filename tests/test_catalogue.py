"""docs/catalogue.md is the registry rendered: committed page, `list --markdown` and the code agree.

The catalogue's data is each variant's `register_variant(...)` call; the page is generated from
it, so a change to a recipe, a published figure or a description that is not re-rendered fails
here with the command that regenerates the page.
"""

from __future__ import annotations

import pytest

from report.catalogue import COMMAND, PAGE, catalogue_markdown
from tests.conftest import REPO
from variants import get_spec, list_variants


@pytest.fixture(scope="module")
def rendered() -> str:
    return catalogue_markdown()


def test_committed_page_is_what_the_registry_renders(rendered: str) -> None:
    page = REPO / PAGE
    assert page.is_file(), f"{PAGE} is missing: generate it with `{COMMAND}`"
    assert page.read_text(encoding="utf-8") == rendered, (
        f"{PAGE} differs from the registry: regenerate it with `{COMMAND}`")


def test_list_markdown_prints_the_page(rendered: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    assert main(["list", "--markdown"]) == 0
    assert capsys.readouterr().out == rendered
    assert main(["list", "--markdown", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.strip().count("\n") == 0 and "not allowed with" in out.err


def _rows(page: str, name: str) -> list[str]:
    """The variant's row in each of the page's tables."""
    return [line for line in page.splitlines() if line.startswith(f"| {name} |")]


@pytest.mark.parametrize("name", list_variants())
def test_printed_numbers_are_the_notes(name: str) -> None:
    """A number kept structured (Published.printed, which the report reads) is the one the
    note states in words, so the registry holds one value, not two that could disagree."""
    pub = get_spec(name).published
    for key, value in (pub.printed if pub else {}).items():
        assert pub is not None and f"{value:g}" in pub.note, (name, key, value)


@pytest.mark.parametrize("name", list_variants())
def test_every_field_is_on_the_page(name: str, rendered: str) -> None:
    """Each table has one row per variant, and the rows carry the registry's values."""
    spec, r = get_spec(name), get_spec(name).recipe
    rows = _rows(rendered, name)
    assert len(rows) == 4, rows
    network, recipe, published, described = rows
    for value in (spec.family, f"{spec.params:,}", r.dataset, spec.spec_row or "own network",
                  f"{spec.gate['num_epochs']} epoch"):
        assert f"{value}" in network, (value, network)
    for value in (r.optimizer, f"| {r.lr:g} |", f"| {r.batch_size} |", f"| {r.num_epochs} |",
                  r.schedule, r.loss, r.init, r.transform.describe()):
        assert value in recipe, (value, recipe)
    pub = spec.published
    if pub is not None and pub.value is not None:
        assert f"{pub.metric} {pub.value:g}" in published and pub.dataset in published
    for key, value in (pub.printed if pub else {}).items():
        assert f"{key} {value:g}" in published
    for words in (spec.source, spec.description):
        # escaped for Markdown, so compare the words, not the punctuation
        assert all(w in described for w in words.split() if w.isalnum()), words


def test_suites_published_levels_agree_with_the_registry() -> None:
    """A suite's table of a source's figures (d2l-ex2's channel table of the blog) repeats the
    registry's figure at the variant's own configuration: the two must be the same number."""
    from bench.suites import available_suites, load_suite

    checked = 0
    for name in available_suites():
        for g in load_suite(name).groups:
            if not g.published or g.variants not in list_variants() or g.factor is None:
                continue
            spec = get_spec(g.variants)
            pub, own = spec.published, spec.defaults.get(g.factor)
            if pub is None or pub.metric != g.published["metric"]:
                continue
            own = list(own) if isinstance(own, tuple) else own
            for level in g.published["levels"]:
                if level["level"] == own:
                    assert level["value"] == pub.value, (name, g.name, level, pub)
                    checked += 1
    assert checked >= 1  # d2l-ex2's [6, 16] is lenet_tweakable's own figure
