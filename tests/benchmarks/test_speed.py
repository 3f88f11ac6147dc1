"""Speed micro-benchmarks (pytest-benchmark), outside the default test run.

Every variant's forward pass and training step (forward, loss, backward, optimizer step with
the recipe's optimizer and loss) at batch 128 on the CPU, plus one engine epoch on a fixed
2,048-image subset. `make perf-micro` saves them under .benchmarks/ (--benchmark-autosave);
compare two saves with --benchmark-compare, or let `lenet-bench check --perf` warn when one is
more than 25% slower than the previous save of the same machine. Speed never fails CI.

Threads are pinned (BENCH_THREADS, default 1): on a shared 2-core CPU, two OpenMP threads per
process oversubscribe the cores and made the same step 10-30× slower and erratic, while one
thread gives stable, comparable numbers. Saves with different thread counts are not compared.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.config import resolve_config
from bench.engine import (
    SingleLearner,
    build_model,
    make_optimizer,
    set_determinism,
    train_epoch,
)
from bench.resident import device_data
from variants import LOSSES, list_variants

# `benchmark` selects these (-m benchmark); its kwargs are pytest-benchmark's settings: short
# rounds keep the whole file around a minute on a shared 2-core CPU.
pytestmark = pytest.mark.benchmark(max_time=0.5, min_rounds=5, warmup=True,
                                   warmup_iterations=2)

BATCH = 128
EPOCH_SUBSET = 2048
DEVICE = torch.device("cpu")
THREADS = int(os.environ.get("BENCH_THREADS", "1"))


@pytest.fixture(autouse=True, scope="module")
def _pinned_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _setup(variant: str) -> tuple[Any, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The variant as its recipe trains it (init, optimizer, loss), with a fixed random batch."""
    cfg = resolve_config(variant, None, 0, device="cpu")
    set_determinism(cfg)
    model = build_model(cfg).to(DEVICE)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(BATCH, 1, model.input_size, model.input_size, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    return cfg, model, X, y


def _info(benchmark: Any, **extra: Any) -> None:
    benchmark.extra_info.update({"batch": BATCH, "threads": torch.get_num_threads(), **extra})


@pytest.mark.parametrize("variant", list_variants())
def test_forward(benchmark: Any, variant: str) -> None:
    _, model, X, _ = _setup(variant)
    model.eval()
    benchmark.group = f"forward, batch {BATCH}"
    _info(benchmark)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(X)

    out = benchmark(forward)
    assert out.shape == (BATCH, 10)


@pytest.mark.parametrize("variant", list_variants())
def test_train_step(benchmark: Any, variant: str) -> None:
    cfg, model, X, y = _setup(variant)
    model.train()
    opt = make_optimizer(cfg, model)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = LOSSES[cfg.loss]
    benchmark.group = f"forward+backward+step, batch {BATCH}"
    _info(benchmark, optimizer=cfg.optimizer, loss=cfg.loss)

    def step() -> torch.Tensor:
        loss = loss_fn(model(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    loss = benchmark(step)
    assert torch.isfinite(loss)


def test_engine_epoch(benchmark: Any, data_root: Path) -> None:
    """bench.loop.train_epoch of the plain engine over the fixed smoke-style subset."""
    cfg = resolve_config("lenet_d2l", None, 0, {"train_subset": EPOCH_SUBSET}, device="cpu")
    set_determinism(cfg)
    train = device_data(cfg.dataset, "train", cfg.transform, DEVICE, data_root, EPOCH_SUBSET)
    learner = SingleLearner(cfg, train, train)
    benchmark.group = "engine epoch"
    _info(benchmark, variant=cfg.variant, images=EPOCH_SUBSET, batch=cfg.batch_size)
    # epoch=1: the engine's warm-up skip applies to epoch 0 only, so every step is timed work
    timing = benchmark.pedantic(train_epoch, args=(learner, 1), rounds=5, iterations=1,
                                warmup_rounds=1)
    assert timing.timed_examples == EPOCH_SUBSET
