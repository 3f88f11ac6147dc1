"""Strict variant registry: one decorated builder per name, with its recipe and provenance.

Modelled on timm (decorator + fnmatch listing) and torchvision.models (duplicate names raise,
keyword-only builders, metadata attached to the builder and checked by tests).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


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

    def key(self) -> str:
        """A stable name for caching the transformed dataset tensor."""
        return (
            f"{self.size}-{self.geometry}-{self.mean}-{self.std}-{self.scale}-{self.shift}"
        )


@dataclass(frozen=True)
class Recipe:
    """The source's training recipe. Field names follow d2l (`lr`, `num_epochs`)."""

    dataset: str
    transform: InputTransform
    optimizer: str  # "sgd" | "adam"
    lr: float
    batch_size: int
    num_epochs: int
    loss: str  # a key of bench.losses.LOSSES
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


@dataclass(frozen=True)
class VariantSpec:
    name: str
    builder: Callable[..., nn.Module]
    recipe: Recipe
    params: int  # trainable parameters, as SPEC.md §2 counts them
    source: str
    description: str
    published: Published | None = None
    in_default_suites: bool = True
    family: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> nn.Module:
        return create_variant(self.name, **overrides)


_REGISTRY: dict[str, VariantSpec] = {}


def register_variant(
    *,
    name: str,
    recipe: Recipe,
    params: int,
    source: str,
    description: str,
    published: Published | None = None,
    in_default_suites: bool = True,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a keyword-only builder under `name`; a second registration of a name raises."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
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
        )
        _REGISTRY[name] = spec
        builder.variant_spec = spec  # type: ignore[attr-defined]
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


def create_variant(name: str, **overrides: Any) -> nn.Module:
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
    model.variant_name = name  # type: ignore[assignment]
    return model
