"""Weight initializations by name, applied after a model is built (the recipe's `init`).

A module that knows better (e.g. LeNet-5's masked C3, whose fan-in is per output map) may
define `init_weights(name: str) -> bool`; returning True means it handled itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import torch
from torch import nn

# What an init is applied to (apply_init visits only these): typed so `.weight` is a Tensor.
Layer: TypeAlias = nn.Conv2d | nn.Linear


def _fan_in(w: torch.Tensor) -> int:
    return w.shape[1] * (w[0, 0].numel() if w.dim() > 2 else 1)


def _xavier(m: Layer) -> None:
    nn.init.xavier_uniform_(m.weight)


def _xavier_zero_bias(m: Layer) -> None:
    """MXNet Gluon's `init.Xavier()` (the d2l chapter): Glorot-uniform weights, zero biases."""
    nn.init.xavier_uniform_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _kaiming(m: Layer) -> None:
    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _normal_small(m: Layer) -> None:
    nn.init.normal_(m.weight, std=0.01)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _lecun98(m: Layer) -> None:
    """LeCun et al. 1998, appendix C: uniform in ±2.4 / F_in, for weights and biases."""
    bound = 2.4 / _fan_in(m.weight)
    nn.init.uniform_(m.weight, -bound, bound)
    if m.bias is not None:
        nn.init.uniform_(m.bias, -bound, bound)


INITS: dict[str, Callable[[Layer], None] | None] = {
    "default": None,  # PyTorch's own (Kaiming-uniform with a=√5) as the layers are built
    "xavier_uniform": _xavier,
    "xavier_uniform_zero_bias": _xavier_zero_bias,
    "kaiming": _kaiming,
    "normal_small": _normal_small,
    "lecun98": _lecun98,
}


def apply_init(model: nn.Module, name: str) -> None:
    """Apply the named init to every Conv2d/Linear (or to modules that handle themselves)."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; valid: {', '.join(INITS)}")
    fn = INITS[name]

    def visit(m: nn.Module) -> None:
        custom = getattr(m, "init_weights", None)
        if callable(custom) and m is not model and custom(name):
            return  # handled itself and its children
        if fn is not None and isinstance(m, (nn.Conv2d, nn.Linear)):
            fn(m)
        for child in m.children():
            visit(child)

    visit(model)
