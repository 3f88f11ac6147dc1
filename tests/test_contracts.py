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


# --- which data the numbers came from ----------------------------------------------------------

def _record(cfg: Any, res: Any) -> dict[str, Any]:
    """The fields of a run record the data contracts read (bench.runner.make_record's)."""
    return {"config": cfg.to_dict(), "dataset": cfg.dataset, "status": res.status,
            "metrics": res.metrics, "data": res.data}


def _small_run(data_root: Path, tmp: Path) -> tuple[dict[str, Any], Path]:
    """mlp on 2,048 training images for one epoch, scored on the whole test split (a second)."""
    from bench.config import resolve_config
    from bench.engine import run_training

    cfg = resolve_config("mlp", None, 0, {"train_subset": 2048, "num_epochs": 1})
    wfile = tmp / "w.safetensors"
    res = run_training(cfg, data_root, weights_file=wfile, measure_inference=False)
    assert res.status == "ok"
    return _record(cfg, res), wfile


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory,
              data_root: Path) -> tuple[dict[str, Any], Path]:
    return _small_run(data_root, tmp_path_factory.mktemp("small"))


def _reevaluate(record: dict[str, Any], wfile: Path, root: Path) -> str | None:
    from bench.config import config_from_record
    from bench.engine import load_weights

    model = load_weights(config_from_record(record["config"]), wfile)
    return contracts.reevaluation_problem(model, record, root)


def test_data_contracts_hold_on_a_real_run(small_run: tuple[dict[str, Any], Path],
                                           data_root: Path) -> None:
    record, wfile = small_run
    from bench.datasets import DATASETS

    spec = DATASETS["mnist"].files
    assert record["data"]["test"] == {"n": 10_000, "labels_md5": spec["t10k-labels-idx1-ubyte"]}
    assert record["data"]["train"]["n"] == 2048
    assert "test_labels_md5" not in record["metrics"]  # metrics feed the code fingerprint
    assert contracts.data_problem(record, data_root) is None
    assert _reevaluate(record, wfile, data_root) is None  # exact, from the raw files


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d, m: d["test"].update(n=5000),
         "the test metrics count 10000 images but scored 5000"),
        (lambda d, m: (d["test"].update(n=5000), m.update(n_test=5000)),
         "the test metrics scored 5000 images; the mnist test split has 10000"),
        (lambda d, m: d["test"].update(labels_md5="0" * 32),
         "the test metrics scored 10000 images whose labels are not those of the mnist test"),
        (lambda d, m: d["train"].update(n=12048),
         "training drew from 12048 images; the mnist train split (subset of 2048) has 2048"),
        (lambda d, m: d["train"].update(labels_md5="0" * 32),
         "whose labels are not those of the mnist train split (subset of 2048)"),
        (lambda d, m: d.clear(), "the record does not say which data it trained on"),
    ],
)
def test_data_contract_fails_on_other_data(small_run: tuple[dict[str, Any], Path],
                                           data_root: Path, change: Any, fragment: str) -> None:
    import copy

    record = copy.deepcopy(small_run[0])
    change(record["data"], record["metrics"])
    problem = contracts.data_problem(record, data_root)
    assert problem is not None and problem.startswith("data: ") and fragment in problem, problem


def test_reevaluation_catches_a_reported_accuracy_off_by_one_image(
        small_run: tuple[dict[str, Any], Path], data_root: Path) -> None:
    record, wfile = small_run
    off = {**record, "metrics": {**record["metrics"],
                                 "test_acc": record["metrics"]["test_acc"] + 1e-4}}
    problem = _reevaluate(off, wfile, data_root)
    assert problem is not None and problem.startswith("re-evaluation: the trained weights")


def test_evaluation_on_the_training_split_breaks_the_contracts(
        monkeypatch: pytest.MonkeyPatch, data_root: Path, tmp_path: Path) -> None:
    """The planted regression of issue 29: the learner scores its training data as the test
    metrics (one word). Both the data digest and the re-evaluation see it."""
    from bench.engine import SingleLearner

    def on_train(self: SingleLearner, *, full: bool) -> list[dict[str, Any]]:
        return [metrics.evaluate(self.model, self.train, self.loss_fn,
                                 self.cfg.eval_batch_size, full=full)]

    monkeypatch.setattr(SingleLearner, "evaluate", on_train)
    record, wfile = _small_run(data_root, tmp_path)
    problem = contracts.data_problem(record, data_root)
    assert problem == "data: the test metrics scored 2048 images; the mnist test split has 10000"
    problem = _reevaluate(record, wfile, data_root)
    assert problem is not None and problem.startswith("re-evaluation:"), problem


def test_packed_runs_say_what_they_scored(data_root: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed packing evaluates through its own vmapped path: the same data contract holds."""
    from bench import packed
    from bench.config import resolve_config

    cfgs = [resolve_config("mlp", None, s, {"train_subset": 1024, "num_epochs": 1})
            for s in (0, 1)]
    results = packed.run_packed(cfgs, data_root, measure_inference=False)
    for cfg, res in zip(cfgs, results, strict=True):
        assert contracts.data_problem(_record(cfg, res), data_root) is None
    real = packed._evaluate_members

    def first_half(fwd: Any, params: Any, buffers: Any, test: Any, *a: Any,
                   **k: Any) -> list[dict[str, Any]]:
        return real(fwd, params, buffers, DeviceData(test.X[:5000], test.y[:5000]), *a, **k)

    monkeypatch.setattr(packed, "_evaluate_members", first_half)
    results = packed.run_packed(cfgs, data_root, measure_inference=False)
    for cfg, res in zip(cfgs, results, strict=True):
        problem = contracts.data_problem(_record(cfg, res), data_root)
        assert problem == ("data: the test metrics scored 5000 images; the mnist test split "
                           "has 10000")
