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
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from bench.config import RunConfig
from bench.engine import (
    WARMUP_STEPS,
    EpochEvent,
    _sync,
    autocast,
    build_model,
    compile_note,
    lr_at,
    make_optimizer_for,
    maybe_compile,
    save_weights,
    set_determinism,
    throughput_note,
)
from bench.losses import LOSSES
from bench.metrics import flops_per_example, inference_throughput, score_metrics
from bench.resident import device_data
from variants import count_total_params, count_trainable_params


def packing_key(cfg: RunConfig) -> str:
    """Runs with equal keys may be packed: everything but the seed is the same."""
    d = cfg.to_dict()
    d.pop("seed")
    return repr(sorted(d.items()))


def can_pack(model: nn.Module) -> bool:
    """BatchNorm updates running statistics in place, which vmap cannot batch: not packable."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def packable(cfg: RunConfig, model: nn.Module) -> bool:
    """Whether this configuration trains packed: a packable model, and no lever that only the
    one-model engine applies (channels_last)."""
    return can_pack(model) and not cfg.channels_last


def _unstack(params: dict[str, Tensor], buffers: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    return {name: t[k].detach().clone() for name, t in {**params, **buffers}.items()}


def run_packed(
    cfgs: list[RunConfig],
    data_root: Path,
    *,
    weights_files: list[Path] | None = None,
    on_epoch: Callable[[int, EpochEvent], None] | None = None,
    measure_inference: bool = True,
) -> list[dict[str, Any]]:
    """Train the members together; returns one record body per member, in order."""
    first = cfgs[0]
    if len({packing_key(c) for c in cfgs}) != 1:
        raise ValueError("packed runs must differ only in their seed")
    device = torch.device(first.device)
    set_determinism(first)
    t_start = time.perf_counter()
    models = [build_model(c).to(device) for c in cfgs]
    if not packable(first, models[0]):
        raise ValueError(f"{first.variant} (BatchNorm, or channels_last) cannot be packed")
    train = device_data(first.dataset, "train", first.transform, device, data_root,
                        first.train_subset)
    test = device_data(first.dataset, "test", first.transform, device, data_root,
                       first.test_subset)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def fmodel(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (x,))

    forward_eager = torch.vmap(fmodel, in_dims=(0, 0, 0))
    forward_train, fallback = maybe_compile(first, forward_eager)
    forward_shared = torch.vmap(fmodel, in_dims=(0, 0, None))
    loss_fn = LOSSES[first.loss]
    member_loss = torch.vmap(loss_fn)
    opt = make_optimizer_for(first, list(params.values()))
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    K, n, bs = len(cfgs), len(train), first.batch_size

    histories: list[list[dict[str, Any]]] = [[] for _ in cfgs]
    diverged: list[tuple[int, str] | None] = [None] * K
    epoch_timing: list[dict[str, float]] = []
    for epoch in range(first.num_epochs):
        lr = lr_at(first, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        base.train()
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        loss_sum = torch.zeros(K, device=device, dtype=torch.float64)
        correct = torch.zeros(K, device=device, dtype=torch.int64)
        skip = WARMUP_STEPS if epoch == 0 else 0
        timed = 0
        t0 = time.perf_counter()
        for step, start in enumerate(range(0, n, bs)):
            if step == skip and skip:
                _sync(device)
                t0 = time.perf_counter()
            idx = perms[:, start : start + bs]
            X, y = train.X[idx], train.y[idx]
            try:
                scores, losses = _forward_backward(forward_train, member_loss, params, buffers,
                                                   X, y, opt, first, device)
            except Exception as e:  # noqa: BLE001 — a compiled step that cannot run here
                if forward_train is forward_eager or epoch > 0 or step > 0:
                    raise
                forward_train = forward_eager  # nothing was stepped yet: redo it eagerly
                fallback = compile_note(e)
                scores, losses = _forward_backward(forward_train, member_loss, params, buffers,
                                                   X, y, opt, first, device)
            opt.step()
            loss_sum += losses.detach().double() * y.shape[1]
            correct += (scores.detach().argmax(dim=2) == y).sum(dim=1)
            if step >= skip:
                timed += y.shape[1]
        _sync(device)
        elapsed = time.perf_counter() - t0
        base.eval()
        ev = _evaluate_members(forward_shared, params, buffers, test, loss_fn, first)
        for k in range(K):
            if diverged[k] is not None:
                continue
            tl = float(loss_sum[k]) / n
            if not (torch.isfinite(loss_sum[k]) and ev[k]["test_loss"] == ev[k]["test_loss"]):
                diverged[k] = (epoch + 1, f"loss became {tl} in epoch {epoch + 1}")
                continue
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": tl,
                   "train_acc": int(correct[k]) / n, "test_loss": ev[k]["test_loss"],
                   "test_acc": ev[k]["test_acc"]}
            histories[k].append(row)
            if on_epoch is not None:
                on_epoch(k, EpochEvent(epoch + 1, first.num_epochs, row))
        per_member = timed / elapsed if elapsed > 0 else 0.0
        epoch_timing.append({"epoch": epoch + 1, "train_examples_per_s": per_member,
                             "aggregate_examples_per_s": per_member * K,
                             "train_seconds": elapsed})
        if all(d is not None for d in diverged):
            break

    final = _evaluate_members(forward_shared, params, buffers, test, loss_fn, first, full=True)
    wall = time.perf_counter() - t_start
    bodies = []
    for k in range(K):
        model = models[k]
        model.load_state_dict(_unstack(params, buffers, k))
        metrics: dict[str, Any] = {
            "params_trainable": count_trainable_params(model),
            "params_total": count_total_params(model),
            "flops_per_example": flops_per_example(model, test.X[:1]),
        }
        status = "ok" if diverged[k] is None else "diverged"
        if status == "ok":
            metrics.update(final[k])
        med = statistics.median(t["train_examples_per_s"] for t in epoch_timing)
        timing: dict[str, Any] = {
            "train_examples_per_s": med,
            "train_examples_per_s_note": throughput_note(packed=K),
            "packed_members": K,
            "aggregate_train_examples_per_s": med * K,
            "per_epoch": epoch_timing,
        }
        if measure_inference and status == "ok":
            timing["inference_examples_per_s"] = inference_throughput(model, test.X, (1, 1024))
        if device.type == "cuda":
            timing["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        timing["wall_seconds"] = wall / K
        timing["packed_wall_seconds"] = wall
        if fallback:
            timing["fallback"] = fallback
        if weights_files is not None:
            save_weights(model, weights_files[k])
        bodies.append({
            "status": status,
            "error": None if diverged[k] is None else diverged[k][1],
            "diverged_epoch": None if diverged[k] is None else diverged[k][0],
            "metrics": metrics,
            "history": histories[k],
            "timing": timing,
        })
    return bodies


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
