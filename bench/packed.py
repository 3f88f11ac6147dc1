"""Seed packing: train K runs that differ only in their seed as one vmapped model.

Each member keeps its own initialization (built with its own seed, exactly as an unpacked
run) and its own data order (its own seeded generator); the loss is the sum of the members'
losses, so each member's gradient is that of its own loss. SGD and Adam are elementwise, so
the stacked optimizer step is each member's step. Results equal training the members one by
one up to floating-point reassociation in the batched kernels (tested). Small models cannot
fill a GPU one at a time; packed, K of them share every kernel launch.

Levers: `compile` / `cuda_graphs` compile the vmapped training forward (falling back to eager,
with a note, where that fails), `amp_bf16` autocasts it, `optimizer_impl` picks the stacked
optimizer's kernels. `channels_last` is a 4-D memory format and the packed input is 5-D, so a
configuration asking for it is trained one model at a time instead (`packable`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from bench.config import RunConfig, config_key
from bench.engine import (
    autocast,
    build_model,
    compile_note,
    load_data,
    make_optimizer_for,
    maybe_compile,
    save_weights,
    set_determinism,
)
from bench.loop import EpochEvent, RunResult, drive
from bench.metrics import score_metrics
from variants import LOSSES


def packing_key(cfg: RunConfig) -> str:
    """Runs with equal keys may be packed: everything but the seed is the same."""
    return config_key(cfg.to_dict())


def can_pack(model: nn.Module) -> bool:
    """BatchNorm updates running statistics in place, which vmap cannot batch: not packable."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def packable(cfg: RunConfig, model: nn.Module) -> bool:
    """Whether this configuration trains packed: a packable model, and no lever that only the
    one-model engine applies (channels_last)."""
    return can_pack(model) and not cfg.channels_last


def _unstack(params: dict[str, Tensor], buffers: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    return {name: t[k].detach().clone() for name, t in {**params, **buffers}.items()}


class PackedLearner:
    """K models that differ only in their seed, stacked and vmapped: bench.loop's K > 1."""

    def __init__(self, cfgs: list[RunConfig], data_root: Path) -> None:
        first = self.cfg = cfgs[0]
        if len({packing_key(c) for c in cfgs}) != 1:
            raise ValueError("packed runs must differ only in their seed")
        self.device = torch.device(first.device)
        self._models = [build_model(c).to(self.device) for c in cfgs]
        if not packable(first, self._models[0]):
            raise ValueError(f"{first.variant} (BatchNorm, or channels_last) cannot be packed")
        self.members = len(cfgs)
        self.train, self.test = load_data(first, data_root)  # after the check: no data needed
        self.params, self.buffers = stack_module_state(self._models)
        self.base = copy.deepcopy(self._models[0]).to("meta")

        def fmodel(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.base, (p, b), (x,))

        self.forward_eager = torch.vmap(fmodel, in_dims=(0, 0, 0))
        self.forward_train, self.fallback = maybe_compile(first, self.forward_eager)
        self.compiled = self.forward_train is not self.forward_eager
        self.forward_shared = torch.vmap(fmodel, in_dims=(0, 0, None))
        self.loss_fn = LOSSES[first.loss]
        self.member_loss = torch.vmap(self.loss_fn)
        self.opt = make_optimizer_for(first, list(self.params.values()))
        self.gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def begin_epoch(self) -> int:
        self.base.train()
        n = len(self.train)
        self.perms = torch.stack([torch.randperm(n, generator=g) for g in self.gens]
                                 ).to(self.device)
        self.loss_sum = torch.zeros(self.members, device=self.device, dtype=torch.float64)
        self.correct = torch.zeros(self.members, device=self.device, dtype=torch.int64)
        return math.ceil(n / self.cfg.batch_size)

    def step(self, i: int) -> int:
        bs = self.cfg.batch_size
        idx = self.perms[:, i * bs : (i + 1) * bs]
        X, y = self.train.X[idx], self.train.y[idx]
        scores, losses = _forward_backward(self.forward_train, self.member_loss, self.params,
                                           self.buffers, X, y, self.opt, self.cfg, self.device)
        self.opt.step()
        self.loss_sum += losses.detach().double() * y.shape[1]
        self.correct += (scores.detach().argmax(dim=2) == y).sum(dim=1)
        return int(y.shape[1])

    def fall_back(self, e: BaseException) -> None:
        self.forward_train, self.compiled = self.forward_eager, False
        self.fallback = compile_note(e)

    def nonfinite(self) -> list[bool]:
        return (~torch.isfinite(self.loss_sum)).tolist()

    def end_epoch(self) -> list[tuple[float, float]]:
        n = len(self.train)
        return [(float(self.loss_sum[k]) / n, int(self.correct[k]) / n)
                for k in range(self.members)]

    def evaluate(self, *, full: bool) -> list[dict[str, Any]]:
        self.base.eval()
        return _evaluate_members(self.forward_shared, self.params, self.buffers, self.test,
                                 self.loss_fn, self.cfg, full=full)

    def models(self) -> list[nn.Module]:
        for k, model in enumerate(self._models):
            model.load_state_dict(_unstack(self.params, self.buffers, k))
        return self._models


def run_packed(
    cfgs: list[RunConfig],
    data_root: Path,
    *,
    weights_files: list[Path] | None = None,
    on_epoch: Callable[[int, EpochEvent], None] | None = None,
    measure_inference: bool = True,
) -> list[RunResult]:
    """Train the members together; returns one result per member, in order."""
    t_start = time.perf_counter()
    set_determinism(cfgs[0])
    learner = PackedLearner(cfgs, data_root)
    return drive(learner, weights_files=weights_files, on_epoch=on_epoch,
                 measure_inference=measure_inference, save=save_weights, t_start=t_start)


def _forward_backward(
    forward: Callable[..., Tensor], member_loss: Callable[..., Tensor],
    params: dict[str, Tensor], buffers: dict[str, Tensor], X: Tensor, y: Tensor,
    opt: torch.optim.Optimizer, cfg: RunConfig, device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Forward all members, sum their losses (each member's gradient is its own), backward."""
    with autocast(cfg, device):
        scores = forward(params, buffers, X)
        losses = member_loss(scores.float(), y)
    opt.zero_grad(set_to_none=True)
    losses.sum().backward()
    return scores, losses


@torch.no_grad()
def _evaluate_members(
    forward_shared: Callable[..., Tensor],
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    test: Any,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    cfg: RunConfig,
    *,
    full: bool = False,
) -> list[dict[str, Any]]:
    chunks, loss_sums = [], None
    for i in range(0, len(test), cfg.eval_batch_size):
        X, y = test.X[i : i + cfg.eval_batch_size], test.y[i : i + cfg.eval_batch_size]
        scores = forward_shared(params, buffers, X)  # K×B×C
        batch_loss = torch.stack([loss_fn(s, y).double() for s in scores]) * y.shape[0]
        loss_sums = batch_loss if loss_sums is None else loss_sums + batch_loss
        chunks.append(scores)
    scores = torch.cat(chunks, dim=1)
    assert loss_sums is not None
    return [score_metrics(scores[k], test.y, float(loss_sums[k]) / len(test), full=full)
            for k in range(scores.shape[0])]


__all__ = ["can_pack", "packable", "packing_key", "run_packed"]
