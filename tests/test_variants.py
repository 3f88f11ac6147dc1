"""Every registered variant honours the common interface; LeNet-5 matches the paper.

Parametrized over `list_variants()`, so a new variant is tested without touching this file.
Nothing here reads a file outside the checkout: the registry's catalogue is checked against
SPEC.md by tests/test_spec.py alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants import (
    LOSSES,
    InputTransform,
    count_trainable_params,
    create_variant,
    get_spec,
    list_variants,
)
from variants.init import apply_init
from variants.lenet5 import J, LeNet5, MaskedConv2d, Squash, rbf_loss
from variants.lenet5_notebook import SharedSubsampling

# SPEC.md, the paper's Table I, written out independently of variants/lenet5.py.
TABLE_I = [
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
    {0, 1, 2, 3, 4, 5},
]

VARIANTS = list_variants()


def _recipe_loss(name: str, scores: Tensor, y: Tensor) -> Tensor:
    """The recipe's loss, as the engine looks it up."""
    return LOSSES[name](scores, y)


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
def test_declared_params_are_the_models(name: str) -> None:
    assert count_trainable_params(create_variant(name)) == get_spec(name).params


@pytest.mark.parametrize("name", VARIANTS)
def test_catalogue_entry_is_complete(name: str) -> None:
    """What docs/catalogue.md and the SPEC check (tests/test_spec.py) need of every variant."""
    spec = get_spec(name)
    assert spec.source.strip() and spec.description.strip()
    assert spec.spec_row is not None or not spec.in_default_suites, (
        f"{name}: a default variant needs a SPEC row")
    assert spec.recipe.dataset in ("mnist", "fashion-mnist")
    pub = spec.published
    if pub is not None:
        assert pub.metric in ("test_acc", "test_error") and pub.dataset in ("mnist",
                                                                             "fashion-mnist")
        assert pub.value is None or 0 < pub.value < 1, "a fraction, not a percentage"


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


# --- LeNet-5 -------------------------------------------------------------------------------


def test_lenet5_layer_names_are_the_papers() -> None:
    assert [n for n, _ in create_variant("lenet5").named_children()] == [
        "c1", "s2", "c3", "s4", "c5", "f6", "output"
    ]


@pytest.mark.parametrize("name", ["lenet5", "lenet5_linear_head"])
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
    from bench.metrics import topk_error

    scores = -torch.tensor([[3.0, 1.0, 2.0]])  # distances 3, 1, 2: class 1, then 2
    assert topk_error(scores, torch.tensor([1]), 1) == 0.0
    assert topk_error(scores, torch.tensor([2]), 1) == 1.0
    assert topk_error(scores, torch.tensor([2]), 2) == 0.0
    assert topk_error(scores, torch.tensor([0]), 2) == 1.0


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


def test_lenet5_linear_head_differs_from_lenet5_only_in_output() -> None:
    paper, ablation = get_spec("lenet5"), get_spec("lenet5_linear_head")
    assert ablation.recipe == dataclasses.replace(paper.recipe, loss="cross_entropy")
    assert not ablation.in_default_suites
    a, b = create_variant("lenet5"), create_variant("lenet5_linear_head")
    assert isinstance(b.output, nn.Linear)
    trunk = {k: v.shape for k, v in a.state_dict().items() if not k.startswith("output.")}
    assert trunk == {k: v.shape for k, v in b.state_dict().items()
                     if not k.startswith("output.")}
    assert ablation.params == paper.params + 84 * 10 + 10


# --- the lenet5_softmax notebook --------------------------------------------------------------


def test_lenet5_softmax_is_the_notebooks_sequence() -> None:
    """The notebook's layers in its order: tanh after each conv, then the subsampling's tanh;
    a dense C3; flatten before C5's tanh; a softmax at the end."""
    model = create_variant("lenet5_softmax")
    kinds = [(n, type(m).__name__) for n, m in model.named_children()]
    assert [k for _, k in kinds] == [
        "Conv2d", "Tanh", "SharedSubsampling", "Conv2d", "Tanh", "SharedSubsampling",
        "Conv2d", "Flatten", "Tanh", "Linear", "Tanh", "Linear", "Softmax",
    ]
    assert not any(isinstance(m, (MaskedConv2d, Squash)) for m in model.modules())
    c3 = model.c3
    assert isinstance(c3, nn.Conv2d) and c3.weight.shape == (16, 6, 5, 5)


def test_lenet5_softmax_subsampling_shares_one_coefficient_and_bias() -> None:
    torch.manual_seed(0)
    sub = SharedSubsampling()
    assert [p.numel() for p in sub.parameters()] == [1, 1]
    assert all(-1 <= float(p.detach()) < 1 for p in sub.parameters())
    x = torch.randn(2, 6, 4, 4)
    expected = torch.tanh(sub.coefficient * F.avg_pool2d(x, 2) + sub.bias)
    assert torch.equal(sub(x), expected)


def test_lenet5_softmax_scores_are_probabilities_and_loss_is_bce() -> None:
    model = _built("lenet5_softmax")
    x, y = _batch(model, 6)
    scores = model(x)
    assert torch.allclose(scores.sum(1), torch.ones(6), atol=1e-6)
    assert torch.all(scores >= 0)
    loss = _recipe_loss(get_spec("lenet5_softmax").recipe.loss, scores, y)
    expected = F.binary_cross_entropy(scores, F.one_hot(y, 10).float())
    assert torch.equal(loss, expected)


# --- the d2l family ---------------------------------------------------------------------------


def test_lenet_tweakable_pads_every_conv_as_the_blog() -> None:
    model = create_variant("lenet_tweakable")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.padding for c in convs] == [(2, 2), (2, 2)]
    assert model.head.in_features == 84 and model.fc[0].in_features == 16 * 7 * 7
    modern = create_variant("lenet_modern")
    assert [c.padding for c in modern.modules() if isinstance(c, nn.Conv2d)] == [(2, 2), (0, 0)]
    assert count_trainable_params(modern) != count_trainable_params(model)


def test_lenet_d2l_trains_the_chapters_recipe_with_zero_biases() -> None:
    r = get_spec("lenet_d2l").recipe
    assert (r.optimizer, r.lr, r.batch_size, r.num_epochs) == ("sgd", 0.9, 256, 10)
    model = _built("lenet_d2l")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.all(m.bias == 0)
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert 0.8 * bound < float(m.weight.detach().abs().max()) <= bound


def test_flops_count_only_the_connected_c3() -> None:
    from bench.metrics import flops_per_example

    paper = create_variant("lenet5")
    x = torch.zeros(1, 1, 32, 32)
    unconnected = 2 * 10 * 10 * (16 * 6 - 60) * 25  # C3 outputs 10×10; 36 missing pairs
    # By hand: C1, C3 (connected pairs only), C5, F6 multiply-adds, ×2 (the RBF layer's
    # distances are elementwise, which FlopCounterMode does not count).
    by_hand = 2 * (6 * 28 * 28 * 25 + 60 * 25 * 10 * 10 + 120 * 16 * 25 + 120 * 84)
    assert flops_per_example(paper, x) == by_hand < 700_000
    linear = create_variant("lenet5_linear_head")
    assert flops_per_example(linear, x) == by_hand + 2 * 84 * 10
    masked = MaskedConv2d(6, 16, 5, torch.ones(16, 6, 5, 5))
    full = nn.Conv2d(6, 16, 5)
    z = torch.zeros(1, 6, 14, 14)
    assert flops_per_example(masked, z) == flops_per_example(full, z)
    half = MaskedConv2d(6, 16, 5, paper.c3[0].weight_mask)
    assert flops_per_example(full, z) - flops_per_example(half, z) == unconnected


# --- the registry -------------------------------------------------------------------------------


def test_registration_checks_the_declared_parameter_count_and_loss() -> None:
    from variants.registry import register_variant

    recipe = get_spec("mlp").recipe
    with pytest.raises(ValueError, match="declares 10 trainable parameters, its builder"):
        register_variant(name="_bad_params", recipe=recipe, params=10, source="t",
                         description="t")(lambda: nn.Linear(784, 10))
    odd = dataclasses.replace(recipe, loss="nope")
    with pytest.raises(ValueError, match="loss 'nope' is not registered"):
        register_variant(name="_bad_loss", recipe=odd, params=7850, source="t",
                         description="t")(lambda: nn.Linear(784, 10))
    assert "_bad_params" not in list_variants() and "_bad_loss" not in list_variants()


def test_a_new_variant_is_one_file(tmp_path: Path) -> None:
    """A family module dropped into variants/ (a temporary copy of the project) is found:
    `lenet-bench list` shows it, with its own loss, and the parametrized tests run on it."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    for name in ("bench", "variants", "report", "tests"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "variants" / "tiny.py").write_text('''"""A one-file family (test)."""

import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import LeNetBase
from variants.registry import InputTransform, Recipe, register_loss, register_variant


@register_loss("tiny_nll")
def tiny_nll(scores: Tensor, y: Tensor) -> Tensor:
    return F.nll_loss(F.log_softmax(scores, 1), y)


class Tiny(LeNetBase):
    def __init__(self) -> None:
        super().__init__()
        self.flatten, self.head = nn.Flatten(), nn.Linear(784, 10)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.flatten(x)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)


@register_variant(
    name="tiny", recipe=Recipe(dataset="mnist", transform=InputTransform(), optimizer="sgd",
                               lr=0.1, batch_size=64, num_epochs=1, loss="tiny_nll"),
    params=7850, source="a test", description="a linear classifier", in_default_suites=False,
    spec_row=None,
)
def tiny() -> Tiny:
    return Tiny()
''')
    # Only the copy and the interpreter: nothing beside the checkout, nothing another test made.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "bench", "list", "tiny", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)["variants"]
    assert [(v["name"], v["params"], v["family"], v["recipe"]["loss"]) for v in info] == [
        ("tiny", 7850, "tiny", "tiny_nll")]
    junit = tmp_path / "junit.xml"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         f"--junitxml={junit}", "tests/test_variants.py", "-k", "tiny"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:]
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    outcome = {c.get("name"): [x.tag for x in c if x.tag in ("failure", "error", "skipped")]
               for c in cases}
    assert all(v == [] for v in outcome.values()), outcome  # no skip, failure or error
    assert set(outcome) >= {f"{t}[tiny]" for t in _per_variant_tests()}, outcome


def _per_variant_tests() -> list[str]:
    """This module's tests parametrized over the registry (`VARIANTS`), read from their marks:
    a new one is required of a new variant without anyone updating a count."""
    names = []
    for name, fn in sorted(globals().items()):
        marks = getattr(fn, "pytestmark", []) if name.startswith("test_") else []
        if any(m.name == "parametrize" and m.args[1] is VARIANTS for m in marks):
            names.append(name)
    assert names, "no test is parametrized over VARIANTS"
    return names
