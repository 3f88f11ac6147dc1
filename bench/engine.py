"""Train and evaluate one run (variant × dataset × seed × overrides): the plain engine.

Determinism: every RNG is seeded from the run's seed (model init via the global generator
right before building, data order via a dedicated CPU `torch.Generator`), deterministic
algorithms are on, and cudnn.benchmark is off, so the same config gives the same numbers,
bit for bit on the CPU. Timing fields are the only ones that differ between repeats.

The epochs themselves (timing, divergence, compile fallback, the result) are driven by
bench.loop, which seed packing (bench.packed) shares; this module is the K = 1 learner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from bench import device as dev
from bench.config import RunConfig
from bench.fsio import atomic_write
from bench.loop import (
    WARMUP_STEPS,
    EpochEvent,
    RunResult,
    drive,
    lr_at,
    throughput_note,
    train_epoch,
)
from bench.metrics import evaluate
from bench.resident import DeviceData, device_data
from variants import LOSSES, create_variant
from variants.init import apply_init

__all__ = [
    "WARMUP_STEPS", "EpochEvent", "RunResult", "SingleLearner", "build_model", "lr_at",
    "load_weights", "make_optimizer", "run_training", "save_weights", "set_determinism",
    "throughput_note", "train_epoch",
]


def set_determinism(cfg: RunConfig) -> None:
    dev.set_determinism(cfg.deterministic, cfg.device)


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    return make_optimizer_for(cfg, [p for p in model.parameters() if p.requires_grad])


class _OptimizerImpl(TypedDict, total=False):
    """The keyword arguments that pick torch's optimizer implementation (`optimizer_impl`)."""

    foreach: bool
    fused: bool


def make_optimizer_for(cfg: RunConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params` (a model's, or the stacked ones of a packed run)."""
    impls: dict[str, _OptimizerImpl] = {"foreach": {"foreach": True}, "fused": {"fused": True},
                                         "for": {"foreach": False}}
    impl = impls[cfg.optimizer_impl]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def build_model(cfg: RunConfig) -> nn.Module:
    """The variant with its init, seeded: the same seed gives the same initial weights."""
    torch.manual_seed(cfg.seed)
    model = create_variant(cfg.variant, **cfg.model)
    apply_init(model, cfg.init)
    return model


def autocast(cfg: RunConfig, device: torch.device) -> Any:
    """bf16 autocast when asked for (opt-in), else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp_bf16)


def compile_note(e: BaseException, when: str = "failed") -> str:
    """The record's note for a torch.compile that could not be used (the run went on eagerly)."""
    return f"torch.compile {when} ({type(e).__name__}: {str(e)[:200]}); ran eagerly"


def maybe_compile(cfg: RunConfig, fn: Any) -> tuple[Any, str | None]:
    """`fn` (a model, or the packed vmapped forward) compiled when the config asks (CUDA graphs:
    mode "reduce-overhead"); returns (fn to use, fallback note or None)."""
    if not (cfg.compile or cfg.cuda_graphs):
        return fn, None
    try:
        return torch.compile(fn, mode="reduce-overhead" if cfg.cuda_graphs else "default"), None
    except Exception as e:  # noqa: BLE001 — compile is an optimization: fall back, say so
        return fn, compile_note(e, "unavailable")


def prepare_model(cfg: RunConfig, model: nn.Module) -> tuple[nn.Module, str | None]:
    """Apply channels_last / torch.compile / CUDA graphs; returns (model, fallback note)."""
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return maybe_compile(cfg, model)


def prepare_data(cfg: RunConfig, data: DeviceData) -> DeviceData:
    """The training tensor in the memory format the model was prepared for."""
    if not cfg.channels_last:
        return data
    return DeviceData(data.X.contiguous(memory_format=torch.channels_last), data.y)


class SingleLearner:
    """One model, its optimizer and its data order: the engine's step, for bench.loop."""

    members = 1

    def __init__(self, cfg: RunConfig, train: DeviceData, test: DeviceData) -> None:
        self.cfg = cfg
        self.model = build_model(cfg).to(cfg.device)
        self.opt = make_optimizer(cfg, self.model)
        self.trained, self.fallback = prepare_model(cfg, self.model)
        self.compiled = self.trained is not self.model
        self.loss_fn = LOSSES[cfg.loss]
        self.train, self.test = prepare_data(cfg, train), test
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def begin_epoch(self) -> int:
        self.model.train()
        n = len(self.train)
        self.perm = torch.randperm(n, generator=self.gen).to(self.device)
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.correct = torch.zeros((), device=self.device, dtype=torch.int64)
        return math.ceil(n / self.cfg.batch_size)

    def step(self, i: int) -> int:
        bs = self.cfg.batch_size
        idx = self.perm[i * bs : (i + 1) * bs]
        X, y = self.train.X[idx], self.train.y[idx]
        with autocast(self.cfg, self.device):
            scores = self.trained(X)
            loss = self.loss_fn(scores.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.correct += (scores.detach().argmax(dim=1) == y).sum()
        return int(y.shape[0])

    def fall_back(self, e: BaseException) -> None:
        self.trained, self.compiled, self.fallback = self.model, False, compile_note(e)

    def nonfinite(self) -> list[bool]:
        return [not bool(torch.isfinite(self.loss_sum))]

    def end_epoch(self) -> list[tuple[float, float]]:
        n = len(self.train)
        return [(float(self.loss_sum) / n, int(self.correct) / n)]

    def evaluate(self, *, full: bool) -> list[dict[str, Any]]:
        return [evaluate(self.model, self.test, self.loss_fn, self.cfg.eval_batch_size,
                         full=full)]

    def models(self) -> list[nn.Module]:
        return [self.model]


def load_data(cfg: RunConfig, data_root: Path) -> tuple[DeviceData, DeviceData]:
    """The run's train and test sets, resident on its device. With a holdout, the "test" set
    is the validation split held out of the training split, and the test split is not read."""
    device = torch.device(cfg.device)
    if cfg.holdout is not None:
        return (
            device_data(cfg.dataset, "train", cfg.transform, device, data_root, cfg.train_subset,
                        holdout=("fit", cfg.holdout)),
            device_data(cfg.dataset, "train", cfg.transform, device, data_root, cfg.test_subset,
                        holdout=("val", cfg.holdout)),
        )
    return (
        device_data(cfg.dataset, "train", cfg.transform, device, data_root, cfg.train_subset),
        device_data(cfg.dataset, "test", cfg.transform, device, data_root, cfg.test_subset),
    )


def run_training(
    cfg: RunConfig,
    data_root: Path,
    *,
    weights_file: Path | None = None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
    measure_inference: bool = True,
) -> RunResult:
    """Train one run; returns its status, metrics, history and timing."""
    t_start = time.perf_counter()
    set_determinism(cfg)
    learner = SingleLearner(cfg, *load_data(cfg, data_root))
    [result] = drive(
        learner, weights_files=None if weights_file is None else [weights_file],
        on_epoch=None if on_epoch is None else (lambda _k, ev: on_epoch(ev)),
        measure_inference=measure_inference, save=save_weights, t_start=t_start)
    return result


def save_weights(model: nn.Module, path: Path) -> None:
    """safetensors (no pickle): safe to load anywhere, written atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(state))


def load_weights(cfg: RunConfig, path: Path) -> nn.Module:
    """Rebuild a run's model and load its saved weights (for analyses without retraining)."""
    from safetensors.torch import load_file

    model = create_variant(cfg.variant, **cfg.model)
    model.load_state_dict(load_file(str(path)))
    return model.eval()
