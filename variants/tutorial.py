"""The "LeNet5 from scratch in PyTorch" tutorial: LeNet-5's shapes, modernized with BatchNorm.

It keeps the paper's 32×32 input but gets there by resizing (not padding), uses full C3
connections, max-pooling, ReLU and a linear output with cross-entropy.
"""

from __future__ import annotations

from torch import Tensor, nn

from variants.base import LeNetBase
from variants.registry import InputTransform, Published, Recipe, register_variant

TUTORIAL_SOURCE = "\"Writing LeNet5 from Scratch in PyTorch\" tutorial (MNIST)"


class LeNet5BN(LeNetBase):
    """conv5×6+BN+ReLU+pool, conv5×16+BN+ReLU+pool, 400→120→84 (ReLU) →10; tutorial names."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = 32
        self.layer1 = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2, 2)
        )  # 6@14×14
        self.layer2 = nn.Sequential(
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2)
        )  # 16@5×5
        self.fc = nn.Sequential(nn.Linear(400, 120), nn.ReLU())
        self.fc1 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.fc2 = nn.Linear(84, self.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(x))
        return self.fc1(self.fc(x.flatten(1)))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc2(features)


@register_variant(
    name="lenet5_bn",
    recipe=Recipe(
        dataset="mnist",
        transform=InputTransform(size=32, geometry="resize", mean=0.1307, std=0.3081),
        optimizer="adam", lr=1e-3, batch_size=64, num_epochs=10, loss="cross_entropy",
        init="default",
    ),
    params=61_750,
    source=TUTORIAL_SOURCE,
    description=(
        "A tutorial's LeNet-5: 28×28 resized (bilinear) to 32×32 and normalized; two 5×5 conv "
        "layers each with BatchNorm, ReLU and max-pooling (C3 fully connected), then "
        "120-84-10 ReLU MLP; Adam lr 1e-3, batch 64, 10 epochs, cross-entropy. Differs from "
        "its source only in normalizing the test set like the train set."
    ),
    published=Published(
        "test_acc", 0.9881, "mnist",
        "the tutorial normalized its test set with 0.1325/0.3105 instead of 0.1307/0.3081",
        printed={"test_mean": 0.1325, "test_std": 0.3105},
    ),
    gate={"num_epochs": 1},
)
def lenet5_bn() -> LeNet5BN:
    return LeNet5BN()


__all__ = ["LeNet5BN", "lenet5_bn"]
