"""Section: each variant's published figure (SPEC §2) beside ours, with generated reasons.

A published figure is one run, so it is compared with the 95% prediction interval for one new
run of ours (t · s · √(1 + 1/n)), never with the interval of our mean. A run set that trained
less than the source's recipe is "not comparable", and below MIN_SEEDS seeds nothing is tested.
Reasons are built from facts in the records and the registry (epochs, subsets, recipe changes,
the sources' known quirks), never from a fixed paragraph, so they stay true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from report.budget import group_budget, untrained
from report.collect import Group
from report.doc import Bullets, Cell, Code, Section, Table, Text, cell, text
from report.fmt import TOO_FEW, acc_cell, interval, pct, pp
from report.stats import MIN_SEEDS, prediction_interval, summarize
from variants import get_spec
from variants.registry import Published, VariantError, VariantSpec

HEADERS = ("variant", "dataset", "metric", "published", "ours", "95% prediction interval",
           "Δ ours − published", "verdict", "why they differ")
NUMERIC = (False, False, False, True, True, True, True, False, False)

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE, TOO_FEW_SEEDS, NO_RUNS = (
    "reproduced", "not reproduced", "not comparable", "too few seeds", "no finished runs")


#: Settings of how a run is evaluated, not how it trains: a group that changes only these
#: still trains its source's recipe (e.g. the fidle MLP evaluated in one batch, as its
#: notebook did, which matters because its softmax runs over the batch).
EVAL_SETTINGS = frozenset({"eval_batch_size"})


def trains_the_recipe(g: Group) -> bool:
    """No override, or only evaluation settings (EVAL_SETTINGS)."""
    return not g.overrides or all(
        set(r.get("overrides") or {}) <= EVAL_SETTINGS for r in g.records)


def _spec(name: str) -> VariantSpec | None:
    try:
        return get_spec(name)
    except VariantError:
        return None


def _published_of(name: str) -> Published:
    """The variant's published figure and the other numbers its source printed, from the
    registry (the one place they are kept, docs/catalogue.md shows them)."""
    pub = get_spec(name).published
    if pub is None:
        raise ValueError(f"variant {name!r} registers no published figure")
    return pub


def _mlp(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    out = [f"the published {_published_of('mlp').value:g} comes from the notebook's bug "
           "(softmax over dim 0, the batch, before the cross-entropy loss); mlp trains the "
           "correct network"]
    twin = [h for h in groups if h.variant == "mlp_softmax_dim0" and h.dataset == g.dataset
            and h.runset == g.runset and h.ok]
    if twin:
        t = twin[0]
        out.append("mlp_softmax_dim0, which reproduces the bug, gets "
                   + acc_cell(t.accuracy(), t.values(), MIN_SEEDS))
    else:
        out.append("mlp_softmax_dim0 reproduces the bug but has no records here")
    return out


def _mlp_bug(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return ["this is the notebook's bug reproduced: the softmax runs across the batch, so a "
            "prediction depends on which examples share an evaluation batch "
            f"(ours: {cfg['eval_batch_size']})"]


def _lenet5_bn(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    t, printed = get_spec("lenet5_bn").recipe.transform, _published_of("lenet5_bn").printed
    return [f"the tutorial normalized its test set with {printed['test_mean']:g}/"
            f"{printed['test_std']:g} instead of the training set's {t.mean:g}/{t.std:g}; we "
            "normalize both alike"]


def _lenet5(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    return [f"mini-batch SGD (batch {cfg['batch_size']}) stands in for the paper's stochastic "
            "diagonal Levenberg–Marquardt at batch 1"]


#: How close our seeds' mean must be to call training the chapter's (its printed precision
#: is 0.001; one seed's spread here is about 0.003 in loss and 0.001 in accuracy).
TRAIN_MATCH = {"train_loss": 0.01, "train_acc": 0.005}


def _lenet_d2l(g: Group, cfg: dict[str, Any], groups: list[Group]) -> list[str]:
    """Whether training itself matches the chapter's printed figures, and how much our test
    accuracy moves from epoch to epoch: measured, from the records' histories."""
    last = [r["history"][-1] for r in g.ok if r.get("history")]
    if not last or any(h.get("train_loss") is None or h.get("train_acc") is None
                       for h in last):
        return []
    loss = [float(h["train_loss"]) for h in last]
    acc = [float(h["train_acc"]) for h in last]
    tails = [[e.get("test_acc") for e in r["history"][-4:]] for r in g.ok]
    swings = [abs(a - b) for tail in tails for a, b in zip(tail, tail[1:], strict=False)
              if a is not None and b is not None]
    # what the chapter's train_ch5 printed beside its test accuracy after the last epoch
    chapter = _published_of("lenet_d2l").printed
    ch_loss, ch_acc = chapter["train_loss"], chapter["train_acc"]
    same = (abs(sum(loss) / len(loss) - ch_loss) <= TRAIN_MATCH["train_loss"]
            and abs(sum(acc) / len(acc) - ch_acc) <= TRAIN_MATCH["train_acc"])
    out = [f"final-epoch training loss {min(loss):.3f}–{max(loss):.3f} over our seeds "
           f"(chapter {ch_loss}), training accuracy {pct(min(acc))}–{pct(max(acc))} (chapter "
           f"{pct(ch_acc)})" + (": training matches the chapter's, the gap is in test "
                                "accuracy alone" if same else "")]
    if swings:
        out.append(f"at lr {cfg['lr']:g} our test accuracy moves by up to "
                   f"{100 * max(swings):.2f} pp between consecutive epochs of the last four; "
                   "the chapter's figure is one run of its MXNet edition")
    return out


KNOWN: dict[str, Callable[[Group, dict[str, Any], list[Group]], list[str]]] = {
    "mlp": _mlp, "mlp_softmax_dim0": _mlp_bug, "lenet5_bn": _lenet5_bn,
    "lenet5": _lenet5, "lenet_d2l": _lenet_d2l,
}


def reasons(g: Group, spec: VariantSpec, groups: list[Group]) -> list[str]:
    """Facts that separate our runs from the source's, most specific last."""
    rec = spec.recipe
    # the recipe fills what an old record's config lacks
    cfg = {**rec.to_dict(), "eval_batch_size": 1024, **(g.first("config") or {})}
    out = []
    if cfg.get("test_subset"):
        out.append(f"evaluated on {cfg['test_subset']:,} of the 10,000 test images")
    for key in ("optimizer", "lr", "batch_size"):
        ours, theirs = cfg.get(key), getattr(rec, key)
        if ours is not None and ours != theirs:
            out.append(f"{key} {ours:g} instead of the recipe's {theirs:g}"
                       if isinstance(ours, float) else f"{key} {ours} instead of {theirs}")
    dnt = untrained(g)
    if dnt:
        out.append(f"{len(dnt)} of {len(g.ok)} seeds did not train (one class predicted)")
    return out + KNOWN.get(g.variant, lambda *_: [])(g, cfg, groups)


@dataclass(frozen=True)
class PubRow:
    """One published figure against one group of our seeds, and the verdict on it."""

    group: Group
    spec: VariantSpec
    is_error: bool
    published: float
    values: tuple[float, ...]  # ours, in the published metric (error = 1 − accuracy)
    pi: tuple[float, float] | None
    status: str
    verdict: str
    why: tuple[str, ...]

    @property
    def mean(self) -> float | None:
        return summarize(list(self.values))["mean"]

    @property
    def diff(self) -> float | None:
        m = self.mean
        return None if m is None else m - self.published


def verdict_on(published: float, values: list[float], shortfall: str | None
               ) -> tuple[str, str, tuple[float, float] | None]:
    """(status, verdict, prediction interval) of one published figure against our seeds, in
    order: not comparable (budget cut short) > too few seeds > inside the prediction interval.
    """
    pi = prediction_interval(values)
    if not values:
        return NO_RUNS, NO_RUNS, pi
    if shortfall:
        return NOT_COMPARABLE, f"not comparable: {shortfall}", pi
    if pi is None:
        return TOO_FEW_SEEDS, f"{TOO_FEW} (n = {len(values)})", pi
    if pi[0] <= published <= pi[1]:
        return REPRODUCED, "reproduced: inside the prediction interval", pi
    return NOT_REPRODUCED, "not reproduced: outside the prediction interval", pi


def judge(g: Group, spec: VariantSpec, groups: list[Group]) -> PubRow:
    """A variant's published figure against its group of seeds, with the reasons they differ."""
    pub = spec.published
    assert pub is not None and pub.value is not None
    err = pub.metric == "test_error"
    vals = tuple(1 - v if err else v for v in g.values())
    status, verdict, pi = verdict_on(pub.value, list(vals), group_budget(g).shortfall())
    why = [] if status == REPRODUCED else reasons(g, spec, groups)
    if status == NOT_REPRODUCED and not why:
        why = ["no known cause: seeds, framework and hardware differ from the source's"]
    return PubRow(g, spec, err, pub.value, vals, pi, status, verdict, tuple(why))


def published_rows(groups: list[Group]) -> list[PubRow]:
    """Every group of these (one run set) whose variant published a figure on its dataset."""
    out = []
    for g in groups:
        spec = _spec(g.variant)
        if spec is None or spec.published is None or not trains_the_recipe(g):
            continue
        if spec.published.value is not None and g.dataset == spec.published.dataset:
            out.append(judge(g, spec, groups))
    return out


def _cells(r: PubRow) -> tuple[Cell, ...]:
    s = summarize(list(r.values))
    return (
        Cell(r.group.label), Cell(r.group.dataset),
        Cell("test error" if r.is_error else "test accuracy"),
        cell(r.published, pct(r.published)),
        cell(s["mean"], acc_cell(s, list(r.values), MIN_SEEDS)),
        cell(r.pi[0] if r.pi else None, interval(r.pi) if r.pi else
             (TOO_FEW if r.values else "–")),
        cell(r.diff, pp(r.diff)), Cell(r.verdict),
        Cell(_sentence(list(r.why)) if r.why else "–"),
    )


def _sentence(parts: list[str]) -> str:
    return "; ".join(parts) + "."


def published_section(groups: list[Group], rows: list[PubRow]) -> Section:
    """`groups`: one run set (each suite's leader); `rows`: published_rows(groups)."""
    sec = Section("Published vs reproduced", "published")
    sec.para("Each source's own figure (SPEC §2) beside ours on the same dataset and metric, "
             "from the leading run set only. A published figure is a single run, so it is "
             "compared with the 95% prediction interval for one new run of ours, mean ± "
             "t(n−1) · s · √(1 + 1/n), clipped to [0, 100]%: it is reproduced when it lies "
             "inside. Only runs that trained the recipe's full budget (all its epochs, the whole "
             "training set) are comparable; others say what they trained. Below "
             f"{MIN_SEEDS} seeds nothing is tested: each seed's value is shown instead.")
    notes, missing = [], []
    seen: set[str] = set()
    for g in groups:
        spec = _spec(g.variant)
        if spec is None or spec.published is None or not trains_the_recipe(g):
            continue
        pub = spec.published
        if g.variant not in seen:
            seen.add(g.variant)
            notes.append(text(Code(g.variant), f": {spec.source}"
                              + (f"; {pub.note}" if pub.note else "")))
            if pub.value is None and g.dataset == pub.dataset:
                missing.append(text(Code(g.variant),
                                    f": the source printed no number ({pub.note})"))
    if rows:
        sec.add(Table(HEADERS, tuple(_cells(r) for r in rows), NUMERIC))
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
