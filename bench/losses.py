"""Training losses by name (the recipe's `loss`); every loss takes class scores and labels."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from variants.lenet5 import rbf_loss


def cross_entropy(scores: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(scores, y)


def bce_softmax_onehot(scores: Tensor, y: Tensor) -> Tensor:
    """BCE between softmax probabilities and one-hot targets (the lenet5_softmax notebook)."""
    probs = torch.softmax(scores, dim=1)
    target = F.one_hot(y, scores.shape[1]).to(probs.dtype)
    return F.binary_cross_entropy(probs, target)


def lenet5_rbf(scores: Tensor, y: Tensor) -> Tensor:
    """LeCun 1998 eq. (9) on RBF distances (scores are negated distances)."""
    return rbf_loss(scores, y)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": cross_entropy,
    "bce_softmax_onehot": bce_softmax_onehot,
    "lenet5_rbf": lenet5_rbf,
}
