"""bench.loop, the one epoch driver both the plain engine and seed packing use.

A scripted learner exercises the driver's rules exactly (divergence, fallback, timing); the
real engines are checked against them in test_engine.py and test_levers.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.config import resolve_config
from bench.engine import run_training
from bench.loop import WARMUP_STEPS, drive, train_epoch
from bench.resident import DeviceData


class Scripted:
    """K members whose losses and test losses follow a script; the model is a real Linear."""

    compiled = False
    fallback: str | None = None

    def __init__(self, k: int, *, test_loss: list[list[float]] | None = None,
                 train_loss: list[list[float]] | None = None, steps: int = 8,
                 raise_at: int | None = None, compiled: bool = False) -> None:
        self.cfg = resolve_config("mlp", None, 0, {"num_epochs": 3, "batch_size": 4})
        self.members, self.epoch, self.n_steps = k, -1, steps
        self.test = DeviceData(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64))
        self.train = self.test
        self.script_test = test_loss or [[1.0] * k] * 3
        self.script_train = train_loss or [[1.0] * k] * 3
        self.raise_at, self.compiled, self.steps_done = raise_at, compiled, []
        self.lrs: list[float] = []
        self.net = [nn.Sequential(nn.Flatten(), nn.Linear(784, 10)) for _ in range(k)]

    def set_lr(self, lr: float) -> None:
        self.lrs.append(lr)

    def begin_epoch(self) -> int:
        self.epoch += 1
        return self.n_steps

    def step(self, i: int) -> int:
        if self.compiled and self.raise_at == i:
            raise RuntimeError("compiled step failed")
        if not self.compiled and self.raise_at is not None and i == self.raise_at:
            raise RuntimeError("eager step failed")
        self.steps_done.append((self.epoch, i, self.compiled))
        return 4

    def fall_back(self, e: BaseException) -> None:
        self.compiled, self.fallback = False, f"fell back: {e}"
        self.raise_at = None

    def nonfinite(self) -> list[bool]:
        return [not math.isfinite(v) for v in self.script_train[self.epoch]]

    def end_epoch(self) -> list[tuple[float, float]]:
        return [(v, 0.5) for v in self.script_train[self.epoch]]

    def evaluate(self, *, full: bool) -> list[dict[str, Any]]:
        row = self.script_test[min(self.epoch, len(self.script_test) - 1)]
        return [{"test_loss": v, "test_acc": 0.5} for v in row]

    def models(self) -> list[nn.Module]:
        return list(self.net)


def test_an_infinite_test_loss_marks_that_member_diverged_and_never_enters_history() -> None:
    learner = Scripted(2, test_loss=[[1.0, 1.0], [1.0, math.inf], [1.0, 1.0]])
    ok, bad = drive(learner, measure_inference=False)
    assert ok.status == "ok" and len(ok.history) == 3
    assert (bad.status, bad.diverged_epoch, bad.error) == ("diverged", 2, "test loss not finite")
    assert [r["test_loss"] for r in bad.history] == [1.0, None]
    assert all(math.isfinite(r["test_loss"]) for r in ok.history)


def test_nan_training_loss_stops_when_every_member_diverged() -> None:
    learner = Scripted(1, train_loss=[[1.0], [math.nan], [1.0]])
    [res] = drive(learner, measure_inference=False)
    assert (res.status, res.diverged_epoch) == ("diverged", 2)
    assert len(res.history) == 1 and learner.epoch == 1  # the third epoch never ran


def test_compiled_step_failing_on_the_first_step_redoes_it_eagerly() -> None:
    learner = Scripted(1, raise_at=0, compiled=True)
    [res] = drive(learner, measure_inference=False)
    assert res.status == "ok" and res.timing["fallback"] == "fell back: compiled step failed"
    assert learner.steps_done[0] == (0, 0, False)  # step 0 trained once, eagerly
    assert len(learner.steps_done) == 3 * learner.n_steps


def test_compiled_step_failing_after_weights_moved_is_not_retried() -> None:
    """Retrying the epoch would train on weights that already took steps: the run fails."""
    learner = Scripted(1, raise_at=3, compiled=True)
    with pytest.raises(RuntimeError, match="compiled step failed"):
        drive(learner, measure_inference=False)
    assert learner.fallback is None and len(learner.steps_done) == 3


def test_an_epoch_no_longer_than_the_warm_up_records_no_throughput() -> None:
    learner = Scripted(1, steps=WARMUP_STEPS)
    learner.begin_epoch = lambda: WARMUP_STEPS  # type: ignore[method-assign]
    assert train_epoch(learner, 0).examples_per_s is None
    assert train_epoch(learner, 1).examples_per_s is not None


def test_short_real_run_median_skips_the_untimed_epoch(data_root: Path) -> None:
    """2 steps per epoch: epoch 1 is all warm-up. Its rate is None (once 0.0, which halved
    the median), and the run's figure is epoch 2's."""
    cfg = resolve_config("mlp", None, 0, {"train_subset": 1024, "test_subset": 256,
                                          "num_epochs": 2})
    res = run_training(cfg, data_root, measure_inference=False)
    per_epoch = res.timing["per_epoch"]
    assert per_epoch[0]["train_examples_per_s"] is None
    assert res.timing["train_examples_per_s"] == per_epoch[1]["train_examples_per_s"] > 0
