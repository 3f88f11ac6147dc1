"""Every registered variant honours the common interface; LeNet-5 matches the paper.

Parametrized over `list_variants()`, so a new variant is tested without touching this file
(except adding its SPEC.md parameter count below, which is the spec, not a measured result).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants import (
    InputTransform,
    count_trainable_params,
    create_variant,
    get_spec,
    list_variants,
)
from variants.init import apply_init
from variants.lenet5 import J, LeNet5, MaskedConv2d, Squash, rbf_loss

# SPEC.md §2, "params" column (mlp_softmax_dim0 is mlp with the notebook's bug: same network).
SPEC_PARAMS = {
    "lenet5": 60_000,
    "lenet5_softmax": 60_850,
    "lenet_d2l": 61_706,
    "lenet_modern": 61_706,
    "lenet_tweakable": 61_706,
    "lenet5_bn": 61_750,
    "mlp": 89_610,
    "mlp_softmax_dim0": 89_610,
    "cnn_fidle": 76_038,
    "cnn2_fidle": 20_250,
}

# SPEC.md, the paper's Table I, written out independently of variants/lenet5.py.
TABLE_I = [
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
    {0, 1, 2, 3, 4, 5},
]

VARIANTS = list_variants()


def _recipe_loss(name: str, scores: Tensor, y: Tensor) -> Tensor:
    """The recipe losses, written here so the test does not depend on the engine."""
    if name == "cross_entropy":
        return F.cross_entropy(scores, y)
    if name == "bce_softmax_onehot":
        return F.binary_cross_entropy(scores.softmax(1), F.one_hot(y, 10).float())
    if name == "lenet5_rbf":
        return rbf_loss(scores, y)
    raise AssertionError(f"unknown loss {name}")


def _built(name: str, seed: int = 0) -> nn.Module:
    """The variant as the engine would train it: built, then its recipe init applied."""
    torch.manual_seed(seed)
    model = create_variant(name)
    apply_init(model, get_spec(name).recipe.init)
    return model


def _batch(model: nn.Module, n: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = model.input_size
    return torch.rand(n, 1, s, s, generator=g), torch.arange(n) % 10


def _c3(model: LeNet5) -> MaskedConv2d:
    conv = model.c3[0]
    assert isinstance(conv, MaskedConv2d)
    return conv


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shape(name: str) -> None:
    model = _built(name)
    assert model.input_size in (28, 32)
    x, _ = _batch(model, 2)
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("name", VARIANTS)
def test_params_match_spec(name: str) -> None:
    spec = get_spec(name)
    assert name in SPEC_PARAMS, f"{name}: add its SPEC.md parameter count to SPEC_PARAMS"
    assert spec.params == SPEC_PARAMS[name]
    assert count_trainable_params(create_variant(name)) == spec.params


@pytest.mark.parametrize("name", VARIANTS)
def test_gradient_reaches_every_parameter(name: str) -> None:
    model = _built(name)
    model.train()
    x, y = _batch(model, 16)
    _recipe_loss(get_spec(name).recipe.loss, model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    for m in model.modules():
        if isinstance(m, MaskedConv2d):
            grad = m.weight.grad
            assert grad is not None
            assert torch.all(grad[m.weight_mask == 0] == 0)
            connected = grad.abs().sum(dim=(2, 3)) > 0  # per (out, in) pair
            assert torch.equal(connected, m.weight_mask[:, :, 0, 0].bool())


@pytest.mark.parametrize("name", VARIANTS)
def test_few_steps_stay_finite(name: str) -> None:
    model = _built(name)
    model.train()
    r = get_spec(name).recipe
    params = [p for p in model.parameters() if p.requires_grad]
    kw = {"lr": r.lr, "weight_decay": r.weight_decay}
    opt = (
        torch.optim.SGD(params, momentum=r.momentum, **kw)
        if r.optimizer == "sgd"
        else torch.optim.Adam(params, **kw)
    )
    assert r.optimizer in ("sgd", "adam")
    for step in range(5):
        x, y = _batch(model, 8, seed=step)
        opt.zero_grad()
        loss = _recipe_loss(r.loss, model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    for pname, p in model.named_parameters():
        assert torch.isfinite(p).all(), pname
    model.eval()
    assert torch.isfinite(model(_batch(model, 4)[0])).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_activations_cover_layer_names(name: str) -> None:
    model = _built(name)
    model.eval()
    names = model.layer_names()
    assert names
    acts = model.activations(_batch(model, 3)[0])
    assert set(acts) == set(names)
    for n in names:
        assert acts[n].shape[0] == 3, n


# --- LeNet-5 -------------------------------------------------------------------------------


def test_lenet5_layer_names_are_the_papers() -> None:
    assert create_variant("lenet5").layer_names() == [
        "c1", "s2", "c3", "s4", "c5", "f6", "output"
    ]


@pytest.mark.parametrize("name", ["lenet5", "lenet5_softmax"])
def test_c3_mask_is_table_i(name: str) -> None:
    conv = _c3(create_variant(name))
    mask = conv.weight_mask
    assert mask.shape == (16, 6, 5, 5)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for o, inputs in enumerate(TABLE_I):
        for i in range(6):
            expected = 1.0 if i in inputs else 0.0
            assert torch.all(mask[o, i] == expected), (o, i)
    assert int(mask[:, :, 0, 0].sum()) == 60
    assert count_trainable_params(conv) == 60 * 25 + 16


def test_lenet5_masked_weights_zero_at_init_and_after_training() -> None:
    for init in ("default", "lecun98", "xavier_uniform"):
        model = create_variant("lenet5")
        apply_init(model, init)
        conv = _c3(model)
        assert torch.all(conv.weight[conv.weight_mask == 0] == 0), init
    model = _built("lenet5")
    conv = _c3(model)
    for opt in (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3),
        torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3),
    ):
        for step in range(3):
            x, y = _batch(model, 8, seed=step)
            opt.zero_grad()
            rbf_loss(model(x), y).backward()
            opt.step()
    assert torch.all(conv.weight[conv.weight_mask == 0] == 0)
    assert conv.weight[conv.weight_mask == 1].abs().min() > 0


def test_lenet5_lecun98_init_uses_per_map_fan_in() -> None:
    model = _built("lenet5")  # recipe init: lecun98
    conv = _c3(model)
    for o, inputs in enumerate(TABLE_I):
        bound = 2.4 / (len(inputs) * 25)
        connected = conv.weight[o][conv.weight_mask[o] == 1]
        assert connected.abs().max() <= bound
        assert connected.abs().max() > 0.5 * bound  # actually drawn, not left at default
    c1 = model.c1[0]
    assert c1.weight.abs().max() <= 2.4 / 25
    s2 = model.s2[0]
    assert s2.weight.abs().max() <= 2.4 / 4


def test_squash_maps_plus_minus_one_to_itself() -> None:
    out = Squash()(torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(out, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64), atol=1e-4)
    model = create_variant("lenet5")
    for name in ("c1", "s2", "c3", "s4", "c5", "f6"):
        assert isinstance(getattr(model, name)[-1], Squash), name


def test_lenet5_prototypes() -> None:
    model = create_variant("lenet5")
    protos = model.output.prototypes
    assert protos.shape == (10, 84)
    assert set(protos.unique().tolist()) == {-1.0, 1.0}
    assert not any(p.requires_grad for p in model.output.parameters())
    assert "output.prototypes" in dict(model.named_buffers())
    for a in range(10):
        for b in range(a + 1, 10):
            assert not torch.equal(protos[a], protos[b]), (a, b)


def test_lenet5_scores_are_negated_squared_distances() -> None:
    model = create_variant("lenet5")
    feats = torch.randn(3, 84)
    d = torch.cdist(feats, model.output.prototypes) ** 2
    assert torch.allclose(model.forward_head(feats), -d, atol=1e-3)
    # The prototype of each digit is at distance 0 from itself: best score, predicted class.
    assert torch.equal(model.forward_head(model.output.prototypes).argmax(1), torch.arange(10))


def test_rbf_loss_hand_computed() -> None:
    dist = [[3.0, 1.0, 2.0], [0.5, 4.0, 2.5]]
    labels = [1, 2]
    j = 1.5
    expected = 0.0
    for row, c in zip(dist, labels, strict=True):
        expected += row[c] + math.log(math.exp(-j) + sum(math.exp(-v) for v in row))
    expected /= len(dist)
    scores = -torch.tensor(dist, dtype=torch.float64)
    got = rbf_loss(scores, torch.tensor(labels), j=j)
    assert math.isclose(float(got), expected, rel_tol=1e-12)
    default = rbf_loss(scores, torch.tensor(labels))
    assert math.isclose(float(default), float(rbf_loss(scores, torch.tensor(labels), j=J)))
    assert J > 0


def test_topk_on_distances_picks_smallest() -> None:
    model = create_variant("lenet5")
    scores = -torch.tensor([[3.0, 1.0, 2.0]])
    assert model.predict_topk(scores, 2).tolist() == [[1, 2]]


def _reference_transform(x_uint8: Tensor, t: InputTransform) -> Tensor:
    """InputTransform's documented order: /255 → zero-pad to size → x·scale + shift."""
    assert t.scale is not None and t.shift is not None
    x = x_uint8.float().div(255).unsqueeze(1)
    p = (t.size - x.shape[-1]) // 2
    x = F.pad(x, (p, p, p, p), value=0.0)
    return x * t.scale + t.shift


def test_lenet5_input_transform_background_and_ink() -> None:
    t = get_spec("lenet5").recipe.transform
    assert (t.size, t.geometry, t.mean, t.std) == (32, "pad", None, None)
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 10:18, 10:18] = 255
    x = _reference_transform(img, t)
    assert x.shape == (1, 1, 32, 32)
    assert torch.allclose(x[0, 0, 0], torch.full((32,), -0.1))  # padding row
    assert math.isclose(float(x[0, 0, 2, 2]), -0.1, abs_tol=1e-6)  # image background
    assert math.isclose(float(x[0, 0, 14, 14]), 1.175, abs_tol=1e-6)  # ink
    assert float(x.min()) >= -0.1 - 1e-6 and float(x.max()) <= 1.175 + 1e-6


# --- fidle ---------------------------------------------------------------------------------


def test_mlp_softmax_dim0_sums_to_one_over_batch() -> None:
    model = _built("mlp_softmax_dim0")
    out = model(torch.rand(5, 1, 28, 28))
    assert torch.allclose(out.sum(dim=0), torch.ones(10), atol=1e-5)
    assert not torch.allclose(out.sum(dim=1), torch.ones(5), atol=1e-3)
    assert not get_spec("mlp_softmax_dim0").in_default_suites
    assert get_spec("mlp_softmax_dim0").recipe.loss == "cross_entropy"
