"""LeNet-5 as a PyTorch notebook re-implements it (softmax output): its code, not its prose.

The notebook says it follows the 1998 paper, but the network its code builds differs: it
defines a sparse C3 with the paper's connection table and never uses it (C3 is a plain dense
conv); each subsampling layer has one coefficient and one bias shared by all maps, with a tanh
inside, so every conv is followed by a tanh and then the subsampling's tanh; it uses plain
tanh, not 1.7159·tanh(2a/3); and it ends in Linear(84, 10) + softmax, trained with binary
cross-entropy on one-hot targets. We build what the code builds (61,710 parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import LeNetBase
from variants.registry import (
    InputTransform,
    Published,
    Recipe,
    register_loss,
    register_variant,
)

NOTEBOOK_SOURCE = (
    "a PyTorch (scorch + wandb) notebook re-implementing LeNet-5 with a softmax output"
)


@register_loss("bce_onehot")
def bce_onehot(scores: Tensor, y: Tensor) -> Tensor:
    """BCE between probabilities and one-hot targets, as the notebook trains: its network ends
    in a softmax, so its scores already are probabilities."""
    target = F.one_hot(y, scores.shape[1]).to(scores.dtype)
    return F.binary_cross_entropy(scores, target)


class SharedSubsampling(nn.Module):
    """The notebook's S2/S4: 2×2 average, × one coefficient + one bias for all maps, tanh.

    Both scalars start uniform in [−1, 1), as the notebook draws them (`rand · 2 − 1`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.coefficient = nn.Parameter(torch.rand(1) * 2 - 1)
        self.bias = nn.Parameter(torch.rand(1) * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.coefficient * F.avg_pool2d(x, 2) + self.bias)


class LeNet5Notebook(LeNetBase):
    """The notebook's `nn.Sequential`, layer for layer and in its order.

    Its last layer is a softmax, so this network's scores are class probabilities (still
    "higher = more likely", as `LeNetBase` asks), and its loss is BCE on them (`bce_onehot`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.input_size = 32
        self.c1 = nn.Conv2d(1, 6, 5)  # 6@28×28
        self.c1_tanh = nn.Tanh()
        self.s2 = SharedSubsampling()  # 6@14×14
        self.c3 = nn.Conv2d(6, 16, 5)  # 16@10×10, every S2 map feeds every C3 map
        self.c3_tanh = nn.Tanh()
        self.s4 = SharedSubsampling()  # 16@5×5
        self.c5 = nn.Conv2d(16, 120, 5)  # 120@1×1
        self.flatten = nn.Flatten()
        self.c5_tanh = nn.Tanh()  # after the flatten, as in the notebook
        self.f6 = nn.Linear(120, 84)
        self.f6_tanh = nn.Tanh()
        self.output = nn.Linear(84, self.num_classes)
        self.softmax = nn.Softmax(dim=1)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.s2(self.c1_tanh(self.c1(x)))
        x = self.s4(self.c3_tanh(self.c3(x)))
        x = self.c5_tanh(self.flatten(self.c5(x)))
        return self.f6_tanh(self.f6(x))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.softmax(self.output(features))


@register_variant(
    name="lenet5_softmax",
    recipe=Recipe(
        dataset="mnist",
        transform=InputTransform(size=32, geometry="pad", mean=0.078, std=0.78),
        optimizer="adam", lr=1e-3, batch_size=128, num_epochs=20, loss="bce_onehot",
        schedule="exponential", gamma=0.9,
    ),
    params=61_710,
    source=NOTEBOOK_SOURCE,
    description=(
        "LeNet-5 as the notebook's code builds it (its prose says it follows the paper; we "
        "follow its code): input zero-padded to 32×32 and normalized (mean 0.078, std 0.78, "
        "the paper's −0.1/1.175 solved for); C1 conv + tanh; S2 = 2×2 average × one shared "
        "coefficient + one shared bias, then tanh; C3 a dense 6→16 conv (the notebook defines "
        "a sparse C3 with Table I but never uses it) + tanh; S4 like S2; C5 conv, flatten, "
        "tanh; F6 + tanh; Linear(84, 10) + softmax. Plain tanh. Trained as the notebook does: "
        "binary cross-entropy between the softmax output and one-hot targets, Adam lr 1e-3 "
        "decayed ×0.9 per epoch, batch 128, 20 epochs; PyTorch's default init (the notebook's "
        "layers come from its own library, whose init it does not show)."
    ),
    published=Published(
        "test_error", None, "mnist", "top-1/top-3 error curves and a confusion matrix only"
    ),
    gate={"num_epochs": 3},
)
def lenet5_softmax() -> LeNet5Notebook:
    return LeNet5Notebook()


__all__ = ["LeNet5Notebook", "SharedSubsampling", "lenet5_softmax"]
