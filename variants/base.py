"""The one interface every variant implements, so engine, tests and analyses treat them alike.

Convention: `forward` returns *scores*, one per class, where higher means more likely. For
ordinary networks these are logits; for LeNet-5's RBF output they are negated distances; for
the lenet5_softmax notebook, which ends in a softmax, probabilities. So argmax, top-k and
confusion matrices need no special case.
"""

from __future__ import annotations

from torch import Tensor, nn


class LeNetBase(nn.Module):
    """Base of all variants: `input_size`, `forward_features` and `forward_head`."""

    input_size: int = 28
    num_classes: int = 10
    variant_name: str  # its registered name, set by variants.registry.create_variant

    def forward_features(self, x: Tensor) -> Tensor:
        """Everything up to (not including) the classifier; returns the feature vector."""
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """The classifier: features → class scores (higher = more likely)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def count_trainable_params(model: nn.Module) -> int:
    """Trainable parameters, where a module's `weight_mask` buffer excludes unconnected weights."""
    total = 0
    masked: dict[int, Tensor] = {}
    for m in model.modules():
        mask = getattr(m, "weight_mask", None)
        w = getattr(m, "weight", None)
        if isinstance(mask, Tensor) and isinstance(w, Tensor):
            masked[id(w)] = mask
    for p in model.parameters():
        if not p.requires_grad:
            continue
        mask = masked.get(id(p))
        total += int(mask.count_nonzero()) if mask is not None else p.numel()
    return total


def count_own_params(module: nn.Module) -> int:
    """Trainable parameters of this module alone (not its children), masks honoured."""
    total = 0
    mask = getattr(module, "weight_mask", None)
    for name, p in module.named_parameters(recurse=False):
        if not p.requires_grad:
            continue
        if name == "weight" and isinstance(mask, Tensor):
            total += int(mask.count_nonzero())
        else:
            total += p.numel()
    return total


def count_total_params(model: nn.Module) -> int:
    """All parameters plus buffers (BatchNorm running statistics, masks, prototypes)."""
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def make_pool(name: str) -> nn.Module:
    if name == "avg":
        return nn.AvgPool2d(2, 2)
    if name == "max":
        return nn.MaxPool2d(2, 2)
    raise ValueError(f"unknown pool {name!r}; valid: avg, max")
