"""The gate's contracts (bench/contracts.py): silent on the code as it is, loud on the bugs they
exist for (an off-centre pad, a lost std division, evaluation in training mode)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import contracts, metrics, resident
from bench.resident import DeviceData
from variants import LOSSES, create_variant, get_spec, list_variants

TRANSFORMS = {n: dataclasses.asdict(get_spec(n).recipe.transform) for n in list_variants()}


@pytest.mark.parametrize("variant", sorted(TRANSFORMS))
def test_the_numpy_transform_is_the_engines(variant: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=g)
    want = contracts.expected_inputs(x.numpy(), TRANSFORMS[variant])
    got = resident.apply_transform(x, TRANSFORMS[variant]).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= contracts.INPUT_ATOL


def _one_sided(x_uint8: torch.Tensor, transform: dict[str, Any]) -> torch.Tensor:
    x = x_uint8.to(torch.float32).div(255.0).unsqueeze(1)
    size = int(transform.get("size", 28))
    return F.pad(x, (0, size - 28, 0, size - 28))  # no normalization either


def test_input_contract_holds_and_catches_a_wrong_pipeline(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    padded = TRANSFORMS["lenet5_softmax"]
    assert padded["geometry"] == "pad" and padded["mean"] is not None
    monkeypatch.setattr(resident, "_CACHE", {})
    assert contracts.input_problem("mnist", padded, data_root) is None
    monkeypatch.setattr(resident, "_CACHE", {})
    monkeypatch.setattr(resident, "apply_transform", _one_sided)
    problem = contracts.input_problem("mnist", padded, data_root)
    assert problem is not None and "train images differ" in problem


def _test_data(n: int = 64) -> DeviceData:
    g = torch.Generator().manual_seed(1)
    return DeviceData(torch.rand(n, 1, 32, 32, generator=g),
                      torch.randint(0, 10, (n,), generator=g))


# The fidle notebook's MLP bug, kept on purpose as a (non-default) variant: its softmax runs
# over the batch dimension, so each image's scores depend on the others in its batch.
BATCH_DEPENDENT = {"mlp_softmax_dim0"}


@pytest.mark.parametrize("variant", sorted(TRANSFORMS))
def test_evaluation_contract_on_every_variant(variant: str) -> None:
    torch.manual_seed(0)
    model = create_variant(variant)
    size = TRANSFORMS[variant]["size"]
    g = torch.Generator().manual_seed(1)
    data = DeviceData(torch.rand(64, 1, size, size, generator=g),
                      torch.randint(0, 10, (64,), generator=g))
    problem = contracts.evaluation_problem(model, data, LOSSES[get_spec(variant).recipe.loss])
    if variant in BATCH_DEPENDENT:
        assert problem is not None and "depends on the batch" in problem
    else:
        assert problem is None


def test_evaluation_contract_catches_training_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    def evaluate_in_train_mode(model: torch.nn.Module, data: Any, loss_fn: Any,
                               batch_size: int, *, full: bool) -> dict[str, Any]:
        monkeypatch.setattr(model, "eval", lambda: model)  # the forgotten model.eval()
        return metrics.evaluate(model, data, loss_fn, batch_size, full=full)

    monkeypatch.setattr(contracts, "evaluate", evaluate_in_train_mode)
    torch.manual_seed(0)
    model = create_variant("lenet5_bn")
    problem = contracts.evaluation_problem(model, _test_data(), LOSSES["cross_entropy"])
    assert problem is not None and "changed the model's state" in problem


def test_evaluation_contract_catches_batch_dependence() -> None:
    class BatchMean(torch.nn.Module):  # scores that depend on the other images in the batch
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(32 * 32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin((x - x.mean(0, keepdim=True)).flatten(1))

    torch.manual_seed(0)
    problem = contracts.evaluation_problem(BatchMean(), _test_data(), LOSSES["cross_entropy"])
    assert problem is not None and "depends on the batch" in problem
