"""The fidle "MNIST1" course notebook: an MLP and two small CNNs, plus its MLP's bug.

The notebook's MLP applied softmax over dim 0 (the batch) before the cross-entropy loss; its
published 0.9012 comes from that. `mlp` is the correct network, `mlp_softmax_dim0` reproduces
the bug faithfully so the published figure can be checked.
"""

from __future__ import annotations

from torch import Tensor, nn

from variants.base import LeNetBase
from variants.registry import InputTransform, Published, Recipe, register_variant

FIDLE_SOURCE = "fidle (CNRS/MIAI deep-learning course), notebook MNIST1 (PyTorch)"

_MNIST = "mnist"


def _fidle_recipe() -> Recipe:
    """The notebook's one recipe for all three networks: Adam 1e-3, batch 512, 32 epochs."""
    return Recipe(
        dataset=_MNIST, transform=InputTransform(), optimizer="adam", lr=1e-3, batch_size=512,
        num_epochs=32, loss="cross_entropy", init="default",
    )


class FidleMLP(LeNetBase):
    """flatten 784 →100 ReLU →100 ReLU →10; `softmax_dim0` reproduces the notebook's bug."""

    def __init__(self, *, softmax_dim0: bool = False) -> None:
        super().__init__()
        self.input_size = 28
        self.softmax_dim0 = softmax_dim0
        self.flatten = nn.Flatten()
        self.fc1 = nn.Sequential(nn.Linear(784, 100), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(100, 100), nn.ReLU())
        self.head = nn.Linear(100, self.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(self.flatten(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        logits = self.head(features)
        # The bug: a softmax across the batch, so each class column sums to 1 over examples.
        return logits.softmax(dim=0) if self.softmax_dim0 else logits


class FidleCNN(LeNetBase):
    """conv3×6 pad 1 + ReLU + pool, [conv3 6→6 + ReLU + pool, conv3 6→6 + ReLU], →64 →10."""

    def __init__(self, *, deep: bool = False) -> None:
        super().__init__()
        self.input_size = 28
        convs: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 6@14×14
        ]
        size = 14
        if deep:
            convs += [
                nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),  # 7×7
                nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()),
            ]
            size = 7
        self.convs = nn.Sequential(*convs)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(6 * size * size, 64), nn.ReLU())
        self.head = nn.Linear(64, self.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)


@register_variant(
    name="mlp",
    recipe=_fidle_recipe(),
    params=89_610,
    source=FIDLE_SOURCE,
    description=(
        "The notebook's MLP (784-100-100-10, ReLU), without its bug: a plain linear output "
        "trained with cross-entropy; Adam lr 1e-3, batch 512, 32 epochs, pixels/255."
    ),
    published=Published(
        "test_acc", 0.9012, _MNIST,
        "from a bug: softmax over dim 0 (the batch) before the cross-entropy loss; a correct "
        "MLP of this size gets about 0.98 (see mlp_softmax_dim0)",
    ),
    gate={"num_epochs": 2},
)
def mlp() -> FidleMLP:
    return FidleMLP(softmax_dim0=False)


@register_variant(
    name="mlp_softmax_dim0",
    recipe=_fidle_recipe(),
    params=89_610,
    source=FIDLE_SOURCE,
    description=(
        "The notebook's MLP with its bug reproduced: the output is softmax over dim 0 (across "
        "the batch) and cross-entropy is applied on top, as published; predictions then "
        "depend on which examples share a batch."
    ),
    published=Published("test_acc", 0.9012, _MNIST, "the buggy MLP as published"),
    in_default_suites=False,
    spec_row="mlp",  # the same network and recipe as mlp; only the forward's bug differs
)
def mlp_softmax_dim0() -> FidleMLP:
    return FidleMLP(softmax_dim0=True)


@register_variant(
    name="cnn_fidle",
    recipe=_fidle_recipe(),
    params=76_038,
    source=FIDLE_SOURCE,
    description=(
        "The notebook's \"CNN\": one 3×3 conv (6 maps, padding 1) + ReLU + max-pool, then "
        "1176-64-10 with ReLU; Adam lr 1e-3, batch 512, 32 epochs."
    ),
    published=Published("test_acc", 0.9815, _MNIST),
    gate={"num_epochs": 2},
)
def cnn_fidle() -> FidleCNN:
    return FidleCNN(deep=False)


@register_variant(
    name="cnn2_fidle",
    recipe=_fidle_recipe(),
    params=20_250,
    source=FIDLE_SOURCE,
    description=(
        "The notebook's \"CNN2\": three 3×3 convs of 6 maps (padding 1, ReLU; max-pool after "
        "the first two), then 294-64-10 with ReLU; Adam lr 1e-3, batch 512, 32 epochs."
    ),
    published=Published("test_acc", 0.9848, _MNIST),
    gate={"num_epochs": 3},
)
def cnn2_fidle() -> FidleCNN:
    return FidleCNN(deep=True)


__all__ = ["FidleCNN", "FidleMLP", "cnn2_fidle", "cnn_fidle", "mlp", "mlp_softmax_dim0"]
