"""The variant catalogue (docs/catalogue.md), rendered from the registry and nothing else.

Each variant's metadata lives in one place, its `register_variant(...)` call in variants/*.py:
parameter count, recipe, published figure, source, description, SPEC row and gate budget.
`lenet-bench list`, the report and the runs read it from there; this page writes it out for
readers, and tests/test_catalogue.py fails when the committed page differs from what this code
renders now, so the page cannot drift from the code.
"""

from __future__ import annotations

from report.doc import Block, Cell, Code, Heading, Para, Table, text
from report.markdown import block
from variants import list_variants
from variants.registry import DEFAULT_GATE, Published, VariantSpec, get_spec

#: Where the page lives (relative to the repository root) and how to regenerate it.
PAGE = "docs/catalogue.md"
COMMAND = f"lenet-bench list --markdown > {PAGE}"

#: Training images of each dataset's train split: a gate budget without a subset trains on all.
_TRAIN_IMAGES = 60_000


def _published(pub: Published | None) -> str:
    """The figure as the registry holds it (a fraction) and as a percentage."""
    if pub is None:
        return "– (a network of this project's own)"
    if pub.value is None:
        return f"{pub.metric}: no number printed"
    return f"{pub.metric} {pub.value:g} ({100 * pub.value:.2f}%)"


def _schedule(spec: VariantSpec) -> str:
    r = spec.recipe
    return f"{r.schedule} (γ {r.gamma:g})" if r.schedule == "exponential" else r.schedule


def _gate(spec: VariantSpec) -> str:
    """The CI gate's budget in words: epochs, train images, test images."""
    g = spec.gate
    epochs = int(g.get("num_epochs", DEFAULT_GATE["num_epochs"]))
    train = g.get("train_subset")
    test = g.get("test_subset")
    parts = [f"{epochs} epoch{'s' if epochs != 1 else ''}",
             f"{int(train):,} train images" if train else f"all {_TRAIN_IMAGES:,} train images",
             f"{int(test):,} test images" if test else "full test set"]
    return ", ".join(parts)


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]],
           numeric: tuple[bool, ...] = ()) -> Table:
    return Table(headers, tuple(tuple(Cell(c) for c in row) for row in rows), numeric,
                 sortable=False)


def catalogue_blocks(names: list[str] | None = None) -> list[Block]:
    """The page's blocks: four tables (network, recipe, published figure, description), one
    row per variant in each, split so that no table is too wide to read."""
    names = list_variants() if names is None else names
    specs = [get_spec(n) for n in names]
    networks = _table(
        ("variant", "family", "trainable params", "input", "dataset", "default suites",
         "SPEC §2 row", "gate budget"),
        [(s.name, s.family, f"{s.params:,}",
          f"{s.recipe.transform.size}×{s.recipe.transform.size}", s.recipe.dataset,
          "yes" if s.in_default_suites else "no", s.spec_row or "– (own network)", _gate(s))
         for s in specs],
        (False, False, True, False, False, False, False, False))
    recipes = _table(
        ("variant", "optimizer", "lr", "batch", "epochs", "schedule", "momentum",
         "weight decay", "loss", "init", "input transform"),
        [(s.name, s.recipe.optimizer, f"{s.recipe.lr:g}", str(s.recipe.batch_size),
          str(s.recipe.num_epochs), _schedule(s), f"{s.recipe.momentum:g}",
          f"{s.recipe.weight_decay:g}", s.recipe.loss, s.recipe.init,
          s.recipe.transform.describe()) for s in specs],
        (False, False, True, True, True, False, True, True, False, False, False))
    published = _table(
        ("variant", "published figure", "on", "also printed", "note"),
        [(s.name, _published(s.published), s.published.dataset if s.published else "–",
          ", ".join(f"{k} {v:g}" for k, v in s.published.printed.items())
          if s.published and s.published.printed else "–",
          s.published.note if s.published and s.published.note else "–") for s in specs])
    described = _table(("variant", "source", "description"),
                       [(s.name, s.source, s.description) for s in specs])
    return [
        Para(text(
            "Every registered network, as its ", Code("register_variant(...)"), " call in ",
            Code("variants/*.py"), " declares it: that registry is the project's catalogue, "
            "and ", Code("lenet-bench list"), ", the runs and the report all read it. This "
            "page is generated from it (", Code(COMMAND), "); a test fails when it differs "
            "from what the code renders.")),
        Heading(2, "Networks", "networks"),
        Para(text("Trainable parameters as SPEC §2 counts them (a test checks the count "
                  "against the built model). Default suites: trained by the variants suite. "
                  "Gate budget: what the CI gate (", Code("lenet-bench check"),
                  ") trains each variant for.")),
        networks,
        Heading(2, "Recipes", "recipes"),
        Para(text("Each source's training recipe (what the full and reference profiles "
                  "train); the input transform runs once per dataset tensor.")),
        recipes,
        Heading(2, "Published figures", "published"),
        Para(text("The figure each source published (one run of it), which the report "
                  "compares with ours on the same dataset and metric; also printed: other "
                  "numbers the source printed beside it, which the report's reasons use.")),
        published,
        Heading(2, "Sources and descriptions", "sources"),
        described,
    ]


def catalogue_markdown(names: list[str] | None = None) -> str:
    """docs/catalogue.md as the registry renders it now."""
    parts = ["# Variant catalogue"] + [block(b) for b in catalogue_blocks(names)]
    return "\n\n".join(parts).rstrip() + "\n"
