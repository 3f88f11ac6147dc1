"""Strict variant registry: one decorated builder per name, with its recipe and provenance.

Modelled on timm (decorator + fnmatch listing) and torchvision.models (duplicate names raise,
keyword-only builders, metadata attached to the builder and checked by tests).
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from variants.base import LeNetBase, count_trainable_params

LossFn = Callable[[Tensor, Tensor], Tensor]


class VariantError(ValueError):
    """A user-facing problem with a variant name or its overrides (one-line message)."""


@dataclass(frozen=True)
class InputTransform:
    """How uint8 28×28 pixels become the network's input; applied once per dataset tensor.

    Steps, in order: pixels / 255 → geometry (`pad` zero-pads to `size`, `resize` is bilinear)
    → either `normalize` ((x - mean) / std) or `affine` (x * scale + shift).
    """

    size: int = 28
    geometry: str = "none"  # "none" | "pad" | "resize"
    mean: float | None = None
    std: float | None = None
    scale: float | None = None
    shift: float | None = None

    def describe(self) -> str:
        parts = ["pixels/255"]
        if self.geometry == "pad":
            parts.append(f"zero-pad to {self.size}×{self.size}")
        elif self.geometry == "resize":
            parts.append(f"bilinear resize to {self.size}×{self.size}")
        if self.mean is not None:
            parts.append(f"normalize mean {self.mean} std {self.std}")
        if self.scale is not None:
            parts.append(f"x·{self.scale:g} {self.shift:+g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Recipe:
    """The source's training recipe. Field names follow d2l (`lr`, `num_epochs`)."""

    dataset: str
    transform: InputTransform
    optimizer: str  # "sgd" | "adam"
    lr: float
    batch_size: int
    num_epochs: int
    loss: str  # a registered loss (register_loss, LOSSES)
    init: str = "default"  # a key of variants.init.INITS
    schedule: str = "constant"  # "constant" | "exponential" | "lenet5_passes"
    gamma: float = 1.0  # ExponentialLR factor per epoch
    momentum: float = 0.0
    weight_decay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["transform"] = dataclasses.asdict(self.transform)
        return d


@dataclass(frozen=True)
class Published:
    """A figure the source published, to compare ours against."""

    metric: str  # e.g. "test_acc" or "test_error"
    value: float | None  # None when the source printed no number
    dataset: str
    note: str = ""
    # Other numbers the source printed beside the figure, by name (d2l's final training loss and
    # accuracy): the report compares ours with them from here, so no second copy is kept.
    printed: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantSpec:
    name: str
    builder: Callable[..., LeNetBase]
    recipe: Recipe
    params: int  # trainable parameters, as SPEC.md §2 counts them
    source: str
    description: str
    published: Published | None = None
    in_default_suites: bool = True
    family: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    # The SPEC.md §2 row whose parameter count and recipe this variant must match
    # (tests/test_spec.py reads SPEC itself, where it is beside the checkout); None for a
    # network of this project's own, e.g. an ablation.
    spec_row: str | None = None
    # The CI gate's budget for it (profile `gate`): where it has left its initial plateau and
    # its accuracy is steady across seeds. Keys: num_epochs, train_subset, test_subset.
    gate: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GATE))


_REGISTRY: dict[str, VariantSpec] = {}
# Training losses by name (a recipe's `loss`): each takes class scores and labels. A variant
# whose loss is its own registers it beside itself, so a new variant is one file.
LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register a loss under `name` (a recipe's `loss`); a second registration raises."""

    def decorate(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = fn
        return fn

    return decorate


@register_loss("cross_entropy")
def cross_entropy(scores: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(scores, y)


class _Default(enum.Enum):
    """A typed sentinel: register_variant's default spec_row, the variant's own name."""

    OWN_ROW = "own row"


GATE_KEYS = ("num_epochs", "train_subset", "test_subset")
# A variant that names no gate budget: one epoch of a fixed 10,000-image subset (as smoke).
DEFAULT_GATE: dict[str, Any] = {"num_epochs": 1, "train_subset": 10_000}


def register_variant(
    *,
    name: str,
    recipe: Recipe,
    params: int,
    source: str,
    description: str,
    published: Published | None = None,
    in_default_suites: bool = True,
    spec_row: str | None | Literal[_Default.OWN_ROW] = _Default.OWN_ROW,
    gate: dict[str, Any] | None = None,
) -> Callable[[Callable[..., LeNetBase]], Callable[..., LeNetBase]]:
    """Register a keyword-only builder under `name`; a second registration of a name raises.

    `spec_row` defaults to `name` (the variant is a SPEC.md §2 row of its own).
    """

    def decorate(builder: Callable[..., LeNetBase]) -> Callable[..., LeNetBase]:
        if name in _REGISTRY:
            raise ValueError(f"variant {name!r} is already registered")
        sig = inspect.signature(builder)
        defaults: dict[str, Any] = {}
        for p in sig.parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"builder of {name!r}: parameter {p.name!r} must be keyword-only")
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"builder of {name!r}: parameter {p.name!r} needs a default")
            defaults[p.name] = p.default
        spec = VariantSpec(
            name=name,
            builder=builder,
            recipe=recipe,
            params=params,
            source=source,
            description=description,
            published=published,
            in_default_suites=in_default_suites,
            family=builder.__module__.rsplit(".", 1)[-1],
            defaults=defaults,
            spec_row=name if spec_row is _Default.OWN_ROW else spec_row,
            gate=dict(DEFAULT_GATE if gate is None else gate),
        )
        bad = sorted(set(spec.gate) - set(GATE_KEYS))
        if bad:
            raise ValueError(f"variant {name!r}: gate keys {bad} unknown; valid: {GATE_KEYS}")
        with torch.random.fork_rng(devices=[]):  # building draws weights: leave no trace
            built = count_trainable_params(builder())
        if built != params:
            raise ValueError(f"variant {name!r} declares {params:,} trainable parameters, "
                             f"its builder makes {built:,}")
        if recipe.loss not in LOSSES:
            raise ValueError(f"variant {name!r}: loss {recipe.loss!r} is not registered "
                             f"(register_loss); known: {', '.join(sorted(LOSSES))}")
        _REGISTRY[name] = spec
        return builder

    return decorate


def list_variants(pattern: str | None = None, *, default_only: bool = False) -> list[str]:
    """Sorted registered names, filtered by an fnmatch pattern (comma-separated allowed)."""
    names = sorted(_REGISTRY)
    if default_only:
        names = [n for n in names if _REGISTRY[n].in_default_suites]
    if pattern:
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    return names


def get_spec(name: str) -> VariantSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise VariantError(
            f"unknown variant {name!r}; valid: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_variant(name: str, **overrides: Any) -> LeNetBase:
    """Build a variant; an unknown keyword names the valid ones."""
    spec = get_spec(name)
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        valid = ", ".join(sorted(spec.defaults)) or "none"
        raise VariantError(
            f"variant {name!r} has no option {', '.join(map(repr, unknown))}; valid: {valid}"
        )
    try:
        model = spec.builder(**overrides)
    except (TypeError, ValueError) as e:
        raise VariantError(f"variant {name!r}: {e}") from None
    model.variant_name = name
    return model
