"""LeNet-5 as LeCun et al. (1998) describe it, and an ablation that swaps its RBF output.

Everything that makes the paper's network differ from the textbook LeNet is here for real:
C3's partial connection table (a masked convolution whose unconnected weights are zero, get
no gradient and are not counted), trainable subsampling (S2, S4), the scaled tanh squashing
function on every layer up to F6, and an output of Euclidean RBF units with fixed ±1
prototypes drawn as 7×12 digit bitmaps, trained with the paper's loss (`rbf_loss`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import LeNetBase
from variants.init import INITS
from variants.registry import (
    InputTransform,
    Published,
    Recipe,
    register_loss,
    register_variant,
)

PAPER_SOURCE = (
    "LeCun, Bottou, Bengio, Haffner 1998 — Gradient-based learning applied to document "
    "recognition (Proc. IEEE), §II.B"
)

# f(a) = A·tanh(S·a), paper appendix A: A = 1.7159, S = 2/3, so that f(±1) = ±1.
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0

# The constant j of the paper's loss (eq. 9). The text fixes only "j positive"; e^-j acts as
# the distance of an extra "rubbish" class, so once every wrong class is more than ~j away the
# competitive term stops pushing them further. 1.0 keeps that margin small next to the
# distances (sums of 84 squared differences, tens at init).
J = 1.0

# Paper Table I: the S2 maps that feed each C3 map.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The RBF prototypes: stylized 7×12 bitmaps of the digits 0–9 ('#' = +1, '.' = −1), as in the
# paper's Fig. 3 (redrawn: the paper gives a picture, not the bits). Side by side, 0 to 9.
_DIGIT_ART = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... .#####. .#####. .....#. ####### ..####. ####### .#####. .#####.
.#...#. ..##... #.....# #.....# ....##. #...... .#..... ......# #.....# #.....#
#.....# .#.#... ......# ......# ...#.#. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# ..#..#. ######. #...... ....#.. #.....# #.....#
#.....# ...#... .....#. ..####. .#...#. ......# ######. ...#... .#####. #.....#
#.....# ...#... ....#.. ......# #....#. ......# #.....# ...#... #.....# .######
#.....# ...#... ...#... ......# ####### ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... .#..... #.....# .....#. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. .....#. .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_bitmaps() -> list[list[str]]:
    """The ten 12-row × 7-column bitmaps parsed from `_DIGIT_ART` (index = digit)."""
    rows = [line.split() for line in _DIGIT_ART.strip().splitlines()]
    if len(rows) != 12 or any(len(r) != 10 or any(len(g) != 7 for g in r) for r in rows):
        raise ValueError("digit art must be 12 rows of ten 7-character glyphs")
    return [[row[d] for row in rows] for d in range(10)]


def rbf_prototypes() -> Tensor:
    """10×84 tensor of ±1: each digit's bitmap, row by row."""
    protos = [[1.0 if c == "#" else -1.0 for row in bm for c in row] for bm in digit_bitmaps()]
    return torch.tensor(protos)


def c3_mask() -> Tensor:
    """16×6×5×5 of 0/1: Table I broadcast over the 5×5 kernel."""
    mask = torch.zeros(16, 6, 5, 5)
    for out_map, inputs in enumerate(C3_TABLE):
        mask[out_map, list(inputs)] = 1.0
    return mask


@register_loss("lenet5_rbf")
def lenet5_rbf(scores: Tensor, y: Tensor) -> Tensor:
    """The recipe's loss: eq. (9) with the module's j."""
    return rbf_loss(scores, y)


def rbf_loss(scores: Tensor, y: Tensor, j: float = J) -> Tensor:
    """The paper's eq. (9): mean over examples of y_correct + log(e^-j + Σ_i e^-y_i).

    `scores` are the network's output, i.e. negated RBF distances (scores = −y); the log term
    is computed as a logsumexp over [−j, scores] for stability.
    """
    correct = -scores.gather(1, y.view(-1, 1)).squeeze(1)
    rubbish = scores.new_full((scores.shape[0], 1), -float(j))
    return (correct + torch.logsumexp(torch.cat([rubbish, scores], dim=1), dim=1)).mean()


class Squash(nn.Module):
    """f(a) = 1.7159·tanh(2a/3): symmetric, f(±1) = ±1, maximal curvature near ±1."""

    def forward(self, x: Tensor) -> Tensor:
        return SQUASH_A * torch.tanh(SQUASH_S * x)


def _lecun98_uniform_(t: Tensor, fan_in: float) -> None:
    bound = 2.4 / fan_in
    nn.init.uniform_(t, -bound, bound)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose `weight_mask` (0/1, weight-shaped) removes connections.

    The mask multiplies the weight in forward, so unconnected weights contribute nothing and
    get exactly zero gradient; they are also zeroed in storage at build and at every init, so
    optimizers (SGD, Adam, with or without weight decay) keep them at zero.
    """

    weight_mask: Tensor

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, mask: Tensor
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight {tuple(self.weight.shape)}")
        self.register_buffer("weight_mask", mask.to(self.weight.dtype))
        self.init_weights("default")

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.weight_mask, self.bias)

    @torch.no_grad()
    def init_weights(self, name: str) -> bool:
        """lecun98 uses each output map's own fan-in (its connected inputs × 25)."""
        if name == "lecun98":
            fan_in = self.weight_mask.flatten(1).sum(1)
            for o in range(self.out_channels):
                _lecun98_uniform_(self.weight[o], float(fan_in[o]))
                if self.bias is not None:
                    _lecun98_uniform_(self.bias[o : o + 1], float(fan_in[o]))
        else:
            fn = INITS.get(name)
            if fn is not None:
                fn(self)
        self.weight.mul_(self.weight_mask)
        return True


class Subsampling(nn.Module):
    """S2/S4: per map, (sum of a 2×2 window) × trainable coefficient + trainable bias.

    The squashing function follows in the enclosing layer. Two parameters per map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Build-time values make it start as plain average pooling; lecun98 re-draws them.
        self.weight = nn.Parameter(torch.full((channels,), 0.25))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        window_sum = F.avg_pool2d(x, 2) * 4.0
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def init_weights(self, name: str) -> bool:
        """lecun98: each unit has 4 inputs (sharing one coefficient), so F_in = 4."""
        if name != "lecun98":
            return False  # other inits are defined for Conv2d/Linear only; keep build values
        _lecun98_uniform_(self.weight, 4.0)
        _lecun98_uniform_(self.bias, 4.0)
        return True


class RBFOutput(nn.Module):
    """10 Euclidean RBF units with fixed prototypes; returns scores = −squared distance."""

    prototypes: Tensor

    def __init__(self, prototypes: Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes.clone())

    def forward(self, x: Tensor) -> Tensor:
        diff = x.unsqueeze(1) - self.prototypes.unsqueeze(0)  # N × 10 × 84
        return -(diff * diff).sum(dim=2)


class LeNet5(LeNetBase):
    """C1-S2-C3-S4-C5-F6 with the paper's squashing, then RBF (`output="rbf"`) or Linear."""

    def __init__(self, *, output: str = "rbf") -> None:
        super().__init__()
        if output not in ("rbf", "linear"):
            raise ValueError(f"unknown output {output!r}; valid: rbf, linear")
        self.input_size = 32
        self.c1 = nn.Sequential(nn.Conv2d(1, 6, 5), Squash())  # 6@28×28
        self.s2 = nn.Sequential(Subsampling(6), Squash())  # 6@14×14
        self.c3 = nn.Sequential(MaskedConv2d(6, 16, 5, c3_mask()), Squash())  # 16@10×10
        self.s4 = nn.Sequential(Subsampling(16), Squash())  # 16@5×5
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5), Squash())  # 120@1×1
        self.f6 = nn.Sequential(nn.Linear(120, 84), Squash())
        self.output: nn.Module = (
            RBFOutput(rbf_prototypes()) if output == "rbf" else nn.Linear(84, self.num_classes)
        )

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.c5(self.s4(self.c3(self.s2(self.c1(x)))))
        return self.f6(x.flatten(1))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.output(features)


# Pixels/255 → zero-pad 28→32 → x·1.275 − 0.1: background (and padding) −0.1, ink 1.175,
# so the input mean is about 0 and its variance about 1 (paper §II.A).
_PAPER_INPUT = InputTransform(size=32, geometry="pad", scale=1.275, shift=-0.1)
_MNIST = "mnist"

# Plain mini-batch SGD replaces stochastic diagonal Levenberg–Marquardt (SDLM), whose step for
# parameter k is η/(μ + h_kk) per example (η = 5e-4 in pass 1, μ = 0.02). The bound η/μ = 0.025
# is too large here: it diverges (F6 saturates) within 50 steps; so does anything above about
# 0.012 for some seeds. The layer that limits stability is F6, whose Gauss–Newton curvature is
# h ≈ 2 (squared distance) → step ≈ η/2 = 2.5e-4 per example; averaging over a mini-batch of 32
# takes 32× fewer steps per pass, so 32 · 2.5e-4 = 0.008. Checked: 0.008 and 0.01 both stable
# on 20 of 20 seeds at the start of training, 0.0125 diverges for 3 of 6.
LENET5_LR = 0.008


_LENET5_RECIPE = Recipe(
    dataset=_MNIST, transform=_PAPER_INPUT, optimizer="sgd", lr=LENET5_LR, batch_size=32,
    num_epochs=20, loss="lenet5_rbf", init="lecun98", schedule="lenet5_passes",
)


@register_variant(
    name="lenet5",
    recipe=_LENET5_RECIPE,
    params=60_000,
    source=PAPER_SOURCE,
    description=(
        "LeNet-5 as the paper describes it: 32×32 input scaled to background −0.1 / ink 1.175; "
        "C1, trainable subsampling S2, C3 with Table I's partial connections (masked conv), "
        "S4, C5, F6, all squashed by 1.7159·tanh(2a/3); 10 Euclidean RBF outputs with fixed "
        "±1 7×12 digit-bitmap prototypes (redrawn after Fig. 3) and the paper's loss with "
        f"j = {J:g}; uniform ±2.4/F_in init. Differs from the paper in training: instead of "
        "stochastic diagonal Levenberg–Marquardt at batch 1 (far too slow here), plain SGD "
        f"on mini-batches of 32 with one global lr {LENET5_LR:g} (SDLM's step η/(μ+h) at F6's "
        "curvature h ≈ 2, times 32 for the batch; SDLM's larger steps in low-curvature layers "
        "are lost, its bound η/μ = 0.025 diverges), scaled per pass by the paper's schedule "
        "(5e-4, 2e-4, 1e-4, 5e-5, 1e-5 relative to 5e-4); 20 passes, no distortions."
    ),
    published=Published("test_error", 0.0095, _MNIST, "no distortions; 0.8% with distortions"),
    gate={"num_epochs": 1},
)
def lenet5() -> LeNet5:
    return LeNet5(output="rbf")


@register_variant(
    name="lenet5_linear_head",
    recipe=dataclasses.replace(_LENET5_RECIPE, loss="cross_entropy"),
    params=60_850,
    source=PAPER_SOURCE + "; ablation of this project, not a source's network",
    description=(
        "An ablation, not a published network: lenet5 exactly (input, partial C3, trainable "
        "subsampling, 1.7159·tanh(2a/3), ±2.4/F_in init, SGD with the per-pass schedule) "
        "with its RBF output and loss replaced by Linear(84, 10) and cross-entropy, so that "
        "the two differ only in the output layer. Not in the default suites."
    ),
    published=None,
    in_default_suites=False,
    spec_row=None,
)
def lenet5_linear_head() -> LeNet5:
    return LeNet5(output="linear")


__all__ = [
    "C3_TABLE",
    "J",
    "LeNet5",
    "MaskedConv2d",
    "RBFOutput",
    "Squash",
    "Subsampling",
    "c3_mask",
    "digit_bitmaps",
    "lenet5",
    "lenet5_linear_head",
    "rbf_loss",
    "rbf_prototypes",
]
