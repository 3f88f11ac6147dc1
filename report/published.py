"""Section 3: each variant's published figure (SPEC §2) beside ours, with generated reasons.

Reasons are built from facts in the records and the registry (epochs, subsets, recipe
changes, the sources' known quirks), never from a fixed paragraph, so they stay true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from report.collect import Group
from report.doc import Bullets, Cell, Code, Section, Table, Text, cell, text
from report.fmt import acc_pm, ci, pct, pp
from report.stats import summarize
from variants import get_spec
from variants.registry import VariantError, VariantSpec

HEADERS = ("variant", "dataset", "metric", "published", "ours (mean ± std)", "our 95% CI",
           "Δ ours − published", "published in our CI?", "why they differ")
NUMERIC = (False, False, False, True, True, True, True, False, False)
TOLERANCE = 0.005  # without a CI (n < 2), |Δ| above this counts as a disagreement


def _spec(name: str) -> VariantSpec | None:
    try:
        return get_spec(name)
    except VariantError:
        return None


def _mlp(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    out = ["the published 0.9012 comes from the notebook's bug (softmax over dim 0, the batch, "
           "before the cross-entropy loss); mlp trains the correct network"]
    twin = [h for h in groups if h.variant == "mlp_softmax_dim0" and h.dataset == g.dataset
            and h.runset == g.runset and h.ok]
    if twin:
        out.append(f"mlp_softmax_dim0, which reproduces the bug, gets {acc_pm(twin[0].accuracy())}")
    else:
        out.append("mlp_softmax_dim0 reproduces the bug but has no records here")
    return out


def _mlp_bug(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return ["this is the notebook's bug reproduced: the softmax runs across the batch, so a "
            "prediction depends on which examples share an evaluation batch "
            f"(ours: {cfg['eval_batch_size']})"]


def _lenet5_bn(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return ["the tutorial normalized its test set with 0.1325/0.3105 instead of the training "
            "set's 0.1307/0.3081; we normalize both alike"]


def _lenet_d2l(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return ["the published 0.836 is d2l's MXNet edition (SGD lr 0.9, batch 256); we train the "
            f"PyTorch edition's recipe (SGD lr {cfg['lr']:g}, batch {cfg['batch_size']})"]


def _lenet5(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return [f"mini-batch SGD (batch {cfg['batch_size']}) stands in for the paper's stochastic "
            "diagonal Levenberg–Marquardt at batch 1"]


KNOWN: dict[str, Callable[[Group, dict[str, Any], list[Group]], list[str]]] = {
    "mlp": _mlp, "mlp_softmax_dim0": _mlp_bug, "lenet5_bn": _lenet5_bn,
    "lenet_d2l": _lenet_d2l, "lenet5": _lenet5,
}


def reasons(g: Group, spec: VariantSpec, groups: list[Group]) -> list[str]:
    """Facts that separate our runs from the source's, most specific last."""
    rec = spec.recipe
    # the recipe fills what an old record's config lacks
    cfg = {**rec.to_dict(), "eval_batch_size": 1024, **(g.first("config") or {})}
    out = []
    if cfg.get("num_epochs", rec.num_epochs) < rec.num_epochs:
        out.append(f"trained {cfg['num_epochs']} of the recipe's {rec.num_epochs} epochs "
                   f"(profile {g.profile})")
    if cfg.get("train_subset"):
        out.append(f"trained on {cfg['train_subset']:,} of the 60,000 training images")
    if cfg.get("test_subset"):
        out.append(f"evaluated on {cfg['test_subset']:,} of the 10,000 test images")
    for key in ("optimizer", "lr", "batch_size"):
        ours, theirs = cfg.get(key), getattr(rec, key)
        if ours is not None and ours != theirs:
            out.append(f"{key} {ours:g} instead of the recipe's {theirs:g}"
                       if isinstance(ours, float) else f"{key} {ours} instead of {theirs}")
    return out + KNOWN.get(g.variant, lambda *_: [])(g, cfg, groups)


def _row(g: Group, spec: VariantSpec, groups: list[Group]) -> tuple[Cell, ...]:
    pub = spec.published
    assert pub is not None and pub.value is not None
    err = pub.metric == "test_error"
    vals = [1 - v if err else v for v in g.values()]
    s = summarize(vals)
    diff = None if s["mean"] is None else s["mean"] - pub.value
    if s["ci_low"] is None:
        inside = "n too small" if s["n"] else "no finished runs"
        disagree = diff is not None and abs(diff) > TOLERANCE
    else:
        ok = s["ci_low"] <= pub.value <= s["ci_high"]
        # A wide interval (few seeds) can hold a far-off figure: explain any large gap too.
        far = diff is not None and abs(diff) > TOLERANCE
        inside, disagree = ("yes" if ok else "no"), not ok or far
    why = reasons(g, spec, groups) if disagree else []
    if disagree and not why:
        why = ["no known cause: seeds, framework and hardware differ from the source's"]
    return (
        Cell(g.label), Cell(g.dataset), Cell("test error" if err else "test accuracy"),
        cell(pub.value, pct(pub.value)), cell(s["mean"], acc_pm(s)),
        cell(s["ci_low"], ci(s)),
        cell(diff, pp(diff)), Cell(inside),
        Cell(_sentence(why) if why else "–"),
    )


def _sentence(parts: list[str]) -> str:
    s = "; ".join(parts)
    return s[:1].upper() + s[1:] + "."


def published_section(groups: list[Group]) -> Section:
    sec = Section("Published vs reproduced", "published")
    sec.para("Each source's own figure (SPEC §2) beside ours on the same dataset and metric. "
             "Published figures are single numbers; ours are over seeds. The last column is "
             "generated from the records and the registry where the two disagree.")
    rows, notes, missing = [], [], []
    seen: set[str] = set()
    for g in groups:
        spec = _spec(g.variant)
        if spec is None or spec.published is None or g.overrides:
            continue
        pub = spec.published
        if g.variant not in seen:
            seen.add(g.variant)
            notes.append(text(Code(g.variant), f": {spec.source}"
                              + (f"; {pub.note}" if pub.note else "")))
        if pub.value is None:
            if g.dataset == pub.dataset:
                missing.append(text(Code(g.variant),
                                    f": the source printed no number ({pub.note})"))
            continue
        if g.dataset == pub.dataset:
            rows.append(_row(g, spec, groups))
    if rows:
        sec.add(Table(HEADERS, tuple(rows), NUMERIC))
    else:
        sec.para("No variant with a published figure has runs on that figure's dataset.")
    if missing:
        sec.add(Bullets(tuple(missing)))
    if notes:
        sec.para("Sources:")
        sec.add(Bullets(tuple(sorted(notes, key=_key))))
    return sec


def _key(t: Text) -> str:
    return "".join(p if isinstance(p, str) else p.text for p in t)
