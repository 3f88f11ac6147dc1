"""d2l.ai §7.6 LeNet and its modernized and tweakable forms: one class, three registrations.

The ablation suites (d2l exercises) build every configuration from `lenet_modern` (exercise 1)
or `lenet_tweakable` (exercises 2–3), so there is exactly one implementation of this family.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from variants.base import LeNetBase, make_activation, make_pool
from variants.registry import InputTransform, Published, Recipe, register_variant

D2L_SOURCE = "Zhang, Lipton, Li, Smola — Dive into Deep Learning, §7.6 (LeNet)"
BLOG_SOURCE = "d2l §7.6 exercises 1–2, as worked in a PyTorch blog post"


class TweakableLeNet(LeNetBase):
    """conv(k)+act+pool per entry of `channels`, flatten, `fc` hidden layers with act, →10.

    `padding=None` is d2l's layout (2 on the first conv, 0 after: `lenet_d2l`, `lenet_modern`);
    an int pads every conv, as the blog's `TweakableModernLeNet` does with 2 (`lenet_tweakable`).
    """

    def __init__(
        self,
        *,
        kernel_size: int,
        channels: tuple[int, ...],
        fc: tuple[int, ...],
        activation: str,
        pool: str,
        padding: int | None,
    ) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be ≥ 1, got {kernel_size}")
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive ints: {channels}")
        if any(int(h) < 1 for h in fc):
            raise ValueError(f"fc widths must be positive ints: {fc}")
        self.input_size = 28
        layers: list[nn.Module] = []
        in_ch = 1
        size = self.input_size
        for i, out_ch in enumerate(channels):
            pad = (2 if i == 0 else 0) if padding is None else padding
            size = size + 2 * pad - kernel_size + 1
            size //= 2
            if size < 1:
                raise ValueError(
                    f"conv layer {i + 1} of {len(channels)} leaves no spatial extent "
                    f"(kernel {kernel_size}, padding {pad}); use padding=2"
                )
            layers.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, int(out_ch), kernel_size, padding=pad),
                    make_activation(activation),
                    make_pool(pool),
                )
            )
            in_ch = int(out_ch)
        self.convs = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        hidden: list[nn.Module] = []
        width = in_ch * size * size
        for h in fc:
            hidden += [nn.Linear(width, int(h)), make_activation(activation)]
            width = int(h)
        self.fc = nn.Sequential(*hidden)
        self.head = nn.Linear(width, self.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.convs(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)


_FASHION = "fashion-mnist"
_UNIT = InputTransform()  # pixels in [0, 1], no normalization (d2l's ToTensor)

# The blog's recipe (SGD lr 0.1, batch 128, 15 epochs, Xavier-uniform weights): lenet_modern,
# lenet_tweakable and every d2l exercise suite start from it, because the blog's numbers do.
BLOG_RECIPE = Recipe(
    dataset=_FASHION, transform=_UNIT, optimizer="sgd", lr=0.1, batch_size=128,
    num_epochs=15, loss="cross_entropy", init="xavier_uniform",
)


def _tweakable(**kw: Any) -> TweakableLeNet:
    """The builders' keyword arguments (their `locals()`, typed there) as a TweakableLeNet."""
    return TweakableLeNet(
        kernel_size=int(kw["kernel_size"]),
        channels=tuple(kw["channels"]),
        fc=tuple(kw["fc"]),
        activation=str(kw["activation"]),
        pool=str(kw["pool"]),
        padding=kw["padding"],
    )


@register_variant(
    name="lenet_d2l",
    recipe=Recipe(
        dataset=_FASHION, transform=_UNIT, optimizer="sgd", lr=0.9, batch_size=256,
        num_epochs=10, loss="cross_entropy", init="xavier_uniform_zero_bias",
    ),
    params=61_706,
    source=D2L_SOURCE,
    description=(
        "The textbook LeNet: two 5×5 conv layers (padding 2, then 0) with sigmoid and average "
        "pooling, then a 120-84-10 sigmoid MLP. Trained as the chapter trains it, the recipe "
        "behind its published 0.836: SGD lr 0.9, batch 256, 10 epochs, Xavier-uniform weights "
        "and zero biases (MXNet Gluon's Xavier initializer leaves biases at their zero "
        "initializer). The d2l exercise suites start from the blog's lr 0.1 / batch 128 "
        "recipe instead (lenet_modern's), because the blog's numbers come from it."
    ),
    published=Published(
        "test_acc", 0.836, _FASHION,
        "MXNet edition, SGD lr 0.9, batch 256, 10 epochs: loss 0.471, train acc 0.822, "
        "50,778.8 examples/s on one GPU",
        printed={"train_loss": 0.471, "train_acc": 0.822},
    ),
    gate={"num_epochs": 8},
)
def lenet_d2l(
    *,
    kernel_size: int = 5,
    channels: tuple[int, ...] = (6, 16),
    fc: tuple[int, ...] = (120, 84),
    activation: str = "sigmoid",
    pool: str = "avg",
    padding: int | None = None,
) -> TweakableLeNet:
    return _tweakable(**locals())


@register_variant(
    name="lenet_modern",
    recipe=BLOG_RECIPE,
    params=61_706,
    source=BLOG_SOURCE,
    description=(
        "d2l exercise 1 as the blog builds it (ModernLeNet): the textbook LeNet with ReLU "
        "instead of sigmoid and max- instead of average pooling; same layout (padding 2, then "
        "0) and parameter count. The blog's recipe: SGD lr 0.1, batch 128, 15 epochs, "
        "Xavier-uniform weights, PyTorch's default biases."
    ),
    published=Published("test_acc", 0.8936, _FASHION, "15 epochs, SGD lr 0.1, batch 128; 1 run"),
    gate={"num_epochs": 2},
)
def lenet_modern(
    *,
    kernel_size: int = 5,
    channels: tuple[int, ...] = (6, 16),
    fc: tuple[int, ...] = (120, 84),
    activation: str = "relu",
    pool: str = "max",
    padding: int | None = None,
) -> TweakableLeNet:
    return _tweakable(**locals())


@register_variant(
    name="lenet_tweakable",
    recipe=BLOG_RECIPE,
    params=107_786,
    source=BLOG_SOURCE,
    description=(
        "d2l exercise 2 as the blog builds it (TweakableModernLeNet): every conv has kernel k "
        "and padding 2, each followed by ReLU and 2×2 max pooling; conv channels and hidden FC "
        "widths are lists. At its defaults ([6,16], [120,84], k = 5) the second conv keeps "
        "its 14×14 input, so the flatten is 16·7·7 = 784 and it has 107,786 parameters: not "
        "lenet_modern. The blog's ablation tables (d2l-ex2) were made with this network; "
        "same recipe as lenet_modern."
    ),
    published=Published(
        "test_acc", 0.8949, _FASHION,
        "the blog's channel table at [6,16]: mean of 3 runs, 15 epochs, SGD lr 0.1, batch 128",
    ),
    gate={"num_epochs": 2},
)
def lenet_tweakable(
    *,
    kernel_size: int = 5,
    channels: tuple[int, ...] = (6, 16),
    fc: tuple[int, ...] = (120, 84),
    activation: str = "relu",
    pool: str = "max",
    padding: int | None = 2,
) -> TweakableLeNet:
    return _tweakable(**locals())


__all__ = ["BLOG_RECIPE", "TweakableLeNet", "lenet_d2l", "lenet_modern", "lenet_tweakable"]
