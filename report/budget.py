"""What a run trained: epochs and optimizer steps against its recipe, and whether it trained.

Two variants compared at budgets cut short measure how fast each starts, not which is better,
and a published figure is only comparable with runs that trained the source's full recipe. The
recipe is read from the variant registry, so this follows whatever the registry holds.

A run "did not train" when its predictions collapsed onto one class: its accuracy is then just
that class's share of the test set, not a learned accuracy to rank.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from report.collect import Group, Record

#: Training images of each dataset (SPEC §1); `train_subset` takes a fixed subset of these.
TRAIN_SIZE = {"mnist": 60_000, "fashion-mnist": 60_000}
#: Share of the test predictions one class must take for a run to count as collapsed.
COLLAPSE_SHARE = 0.95


def recipe_epochs(variant: str) -> int | None:
    from variants import get_spec
    from variants.registry import VariantError

    try:
        return int(get_spec(variant).recipe.num_epochs)
    except VariantError:
        return None


@dataclass(frozen=True)
class Budget:
    """One configuration's training budget, from its record's resolved config."""

    variant: str
    epochs: int | None
    recipe_epochs: int | None
    n_train: int | None  # images per epoch
    full_train: int | None  # the dataset's training images
    batch_size: int | None
    optimizer: str | None

    @property
    def steps(self) -> int | None:
        """Optimizer steps: the engine steps on every batch, the last one partial (no drop_last),
        so epochs × ⌈n_train / batch_size⌉."""
        if not (self.epochs and self.n_train and self.batch_size):
            return None
        return self.epochs * math.ceil(self.n_train / self.batch_size)

    @property
    def short_epochs(self) -> bool:
        return self.recipe_epochs is None or self.epochs is None \
            or self.epochs < self.recipe_epochs

    @property
    def subset(self) -> bool:
        return self.n_train is None or self.full_train is None or self.n_train < self.full_train

    @property
    def full(self) -> bool:
        """The recipe's epochs on the whole training set."""
        return not self.short_epochs and not self.subset

    def shortfall(self) -> str | None:
        """'trained 2 of 20 epochs' (and the subset), or None for a full-budget run."""
        if self.full:
            return None
        parts = []
        if self.recipe_epochs is None:
            parts.append(f"{self.variant} is not registered here, so its recipe is unknown")
        elif self.short_epochs:
            parts.append(f"trained {self.epochs} of {self.recipe_epochs} epochs")
        if self.subset and self.n_train and self.full_train:
            parts.append(f"on {self.n_train:,} of {self.full_train:,} training images")
        return " ".join(parts) or "budget unknown"

    def epochs_text(self) -> str:
        if self.epochs is None:
            return "–"
        return f"{self.epochs}" + (f" of {self.recipe_epochs}"
                                   if self.recipe_epochs and self.epochs != self.recipe_epochs
                                   else "")

    def steps_text(self) -> str:
        if self.steps is None:
            return "–"
        return f"{self.steps:,}" + (f" ({self.optimizer})" if self.optimizer else "")


@functools.cache
def suite_epochs(suite: str, group: str) -> int | None:
    """The epochs a suite's group sets for every variant (a shared recipe: equal-terms), or
    None where the group keeps each variant's recipe (or the suite is not in this checkout)."""
    from bench.errors import UsageError
    from bench.suites import load_suite

    try:
        groups = load_suite(suite).groups
    except UsageError:
        return None
    g = next((g for g in groups if g.name == group), None)
    epochs = None if g is None else g.fixed.get("num_epochs")
    return int(epochs) if isinstance(epochs, int) else None


def planned_epochs(r: Record) -> int | None:
    """The budget a run was planned to train: its group's shared recipe where it has one,
    else its variant's recipe."""
    shared = suite_epochs(str(r.get("suite")), str(r.get("group")))
    return shared if shared is not None else recipe_epochs(str(r.get("variant")))


def budget_of(r: Record) -> Budget:
    cfg: dict[str, Any] = r.get("config") or {}
    full = TRAIN_SIZE.get(str(r.get("dataset")))
    holdout = cfg.get("holdout")
    if full and holdout:  # a selection run trains on what the validation split leaves
        full -= int(holdout)
    subset = cfg.get("train_subset")
    n_train = min(int(subset), full) if subset and full else (int(subset) if subset else full)
    epochs = cfg.get("num_epochs")
    return Budget(str(r.get("variant")), int(epochs) if epochs is not None else None,
                  planned_epochs(r), n_train, full,
                  cfg.get("batch_size"), cfg.get("optimizer"))


def group_budget(g: Group) -> Budget:
    """A group's seeds share their config but the seed: its first record speaks for all."""
    first = min(g.records, key=lambda r: (r["status"] != "ok", r["seed"]))
    return budget_of(first)


def did_not_train(r: Record) -> bool:
    """A finished run whose test predictions all but fall in one class (COLLAPSE_SHARE).

    From the confusion matrix's column sums; an older record without one is judged by its
    per-class accuracy (one class ≈ 100%, every other ≈ 0%). A run with neither is not judged.
    """
    if r.get("status") != "ok":
        return False
    m = r.get("metrics") or {}
    cm = m.get("confusion")
    if isinstance(cm, list) and cm:
        cols = [sum(row[j] for row in cm) for j in range(len(cm[0]))]
        total = sum(cols)
        return total > 0 and max(cols) >= COLLAPSE_SHARE * total
    pc = m.get("per_class_acc")
    if isinstance(pc, list) and len(pc) > 1:
        high = [p for p in pc if p >= COLLAPSE_SHARE]
        low = [p for p in pc if p <= 1 - COLLAPSE_SHARE]
        return len(high) == 1 and len(low) == len(pc) - 1
    return False


def untrained(g: Group) -> list[Record]:
    """The group's finished seeds that did not train."""
    return [r for r in g.ok if did_not_train(r)]


def collapsed_class(r: Record, class_names: tuple[str, ...] | None = None) -> str:
    """The class a collapsed run predicts, by name where the dataset has names."""
    cm = (r.get("metrics") or {}).get("confusion")
    if not cm:
        return "one class"
    cols = [sum(row[j] for row in cm) for j in range(len(cm[0]))]
    k = cols.index(max(cols))
    return class_names[k] if class_names and k < len(class_names) else f"class {k}"
