"""Train and evaluate one run (variant × dataset × seed × overrides) and return its record body.

Determinism: every RNG is seeded from the run's seed (model init via the global generator
right before building, data order via a dedicated CPU `torch.Generator`), deterministic
algorithms are on, and cudnn.benchmark is off, so the same config gives the same numbers,
bit for bit on the CPU. Timing fields are the only ones that differ between repeats.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Must be set before CUDA initializes for deterministic cuBLAS.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from bench.config import RunConfig  # noqa: E402
from bench.errors import UsageError  # noqa: E402
from bench.losses import LOSSES  # noqa: E402
from bench.metrics import evaluate, flops_per_example, inference_throughput  # noqa: E402
from bench.resident import DeviceData, device_data  # noqa: E402
from variants import count_total_params, count_trainable_params, create_variant  # noqa: E402
from variants.init import apply_init  # noqa: E402

WARMUP_STEPS = 5  # first steps of epoch 1 are trained but not timed (allocator, caches)
DIVERGENCE_CHECK_EVERY = 50  # steps between NaN/inf checks (each check syncs the device)
LENET5_PASSES = ((2, 1.0), (3, 0.4), (3, 0.2), (4, 0.1))  # then ×0.02: 5e-4, 2e-4, 1e-4, 5e-5


class Diverged(Exception):
    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


@dataclass
class EpochEvent:
    epoch: int
    num_epochs: int
    row: dict[str, Any]


def resolve_device(name: str) -> str:
    """'auto' → 'cuda' when a GPU is available, else 'cpu'; a bad name, or 'cuda' without a
    GPU, is a one-line usage error."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use cpu")
    return name


def set_determinism(cfg: RunConfig) -> None:
    """Deterministic kernels wherever PyTorch has them. On CUDA an op without one warns
    instead of killing the run (the CPU path is strict, and tested bit for bit)."""
    on_cuda = cfg.device.startswith("cuda")
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=on_cuda)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = cfg.deterministic


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Learning rate for a 0-based epoch under the config's schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "exponential":
        return cfg.lr * cfg.gamma**epoch
    if cfg.schedule == "lenet5_passes":
        start = 0
        for length, mult in LENET5_PASSES:
            if epoch < start + length:
                return cfg.lr * mult
            start += length
        return cfg.lr * 0.02
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    return make_optimizer_for(cfg, [p for p in model.parameters() if p.requires_grad])


def make_optimizer_for(cfg: RunConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params` (a model's, or the stacked ones of a packed run)."""
    impl = {"foreach": {"foreach": True}, "fused": {"fused": True},
            "for": {"foreach": False}}[cfg.optimizer_impl]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def throughput_note(packed: int | None = None) -> str:
    """What the training examples/s figure includes (stored beside it in every record)."""
    note = (
        "median over epochs of training examples/s over the timed steps only (batch gather, "
        "forward, loss, backward, optimizer step); excludes evaluation and the first "
        f"{WARMUP_STEPS} warm-up steps; device synchronized before reading the clock"
    )
    if packed:
        note += f"; {packed} seeds trained packed in one vmapped model: per-run figure = " \
                "aggregate / members"
    return note


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: DeviceData,
    cfg: RunConfig,
    gen: torch.Generator,
    epoch: int,
) -> dict[str, float]:
    """One pass over the shuffled training set; returns loss/acc and timing of timed steps."""
    device = train.X.device
    model.train()
    n = len(train)
    perm = torch.randperm(n, generator=gen).to(device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    skip = WARMUP_STEPS if epoch == 0 else 0
    timed_examples = 0
    t0 = time.perf_counter()
    for step, start in enumerate(range(0, n, cfg.batch_size)):
        if step == skip and skip:
            _sync(device)
            t0 = time.perf_counter()
        idx = perm[start : start + cfg.batch_size]
        X, y = train.X[idx], train.y[idx]
        with autocast(cfg, device):
            scores = model(X)
            loss = loss_fn(scores.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * y.shape[0]
        correct += (scores.detach().argmax(dim=1) == y).sum()
        if step >= skip:
            timed_examples += y.shape[0]
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            raise Diverged(epoch + 1, step + 1, float(loss.detach()))
    _sync(device)
    elapsed = time.perf_counter() - t0
    if not torch.isfinite(loss_sum):
        raise Diverged(epoch + 1, n // cfg.batch_size, float(loss_sum))
    return {
        "train_loss": float(loss_sum) / n,
        "train_acc": int(correct) / n,
        "timed_examples": timed_examples,
        "timed_seconds": elapsed,
    }


def train_epoch_with_fallback(
    trained: nn.Module, eager: nn.Module, opt: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor], train: DeviceData, cfg: RunConfig,
    gen: torch.Generator, epoch: int,
) -> tuple[dict[str, float], nn.Module, str | None]:
    """One epoch, returning (metrics, the model to use from now on, a fallback note or None).

    A compiled model that fails on first use (no compiler, unsupported op) falls back to
    eager for the whole run; the record says so. The failed attempt trained nothing."""
    if trained is eager:
        return train_epoch(trained, opt, loss_fn, train, cfg, gen, epoch), trained, None
    state = gen.get_state()
    try:
        return train_epoch(trained, opt, loss_fn, train, cfg, gen, epoch), trained, None
    except Diverged:
        raise
    except Exception as e:  # noqa: BLE001
        if epoch > 0:
            raise
        gen.set_state(state)
        return train_epoch(eager, opt, loss_fn, train, cfg, gen, epoch), eager, compile_note(e)


def run_training(
    cfg: RunConfig,
    data_root: Path,
    *,
    weights_file: Path | None = None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
    measure_inference: bool = True,
) -> dict[str, Any]:
    """Train one run; returns status, metrics, history and timing (the record's body)."""
    device = torch.device(cfg.device)
    set_determinism(cfg)
    t_start = time.perf_counter()
    train = device_data(cfg.dataset, "train", cfg.transform, device, data_root, cfg.train_subset)
    test = device_data(cfg.dataset, "test", cfg.transform, device, data_root, cfg.test_subset)
    model = build_model(cfg).to(device)
    opt = make_optimizer(cfg, model)
    trained, fallback = prepare_model(cfg, model)
    loss_fn = LOSSES[cfg.loss]
    train = prepare_data(cfg, train)
    gen = torch.Generator().manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    history: list[dict[str, Any]] = []
    epoch_timing: list[dict[str, float]] = []
    status, error, diverged_at = "ok", None, None
    for epoch in range(cfg.num_epochs):
        lr = lr_at(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        try:
            tr, trained, note = train_epoch_with_fallback(
                trained, model, opt, loss_fn, train, cfg, gen, epoch)
            fallback = fallback or note
        except Diverged as d:
            status, error, diverged_at = "diverged", str(d), d.epoch
            break
        ev = evaluate(model, test, loss_fn, cfg.eval_batch_size, full=False)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": tr["train_loss"],
            "train_acc": tr["train_acc"],
            "test_loss": ev["test_loss"],
            "test_acc": ev["test_acc"],
        }
        if not math.isfinite(ev["test_loss"]):
            status, error, diverged_at = "diverged", "test loss not finite", epoch + 1
            history.append({**row, "test_loss": None})
            break
        history.append(row)
        eps = tr["timed_examples"] / tr["timed_seconds"] if tr["timed_seconds"] > 0 else 0.0
        epoch_timing.append({"epoch": epoch + 1, "train_examples_per_s": eps,
                             "train_seconds": tr["timed_seconds"]})
        if on_epoch is not None:
            on_epoch(EpochEvent(epoch + 1, cfg.num_epochs, row))

    metrics: dict[str, Any] = {
        "params_trainable": count_trainable_params(model),
        "params_total": count_total_params(model),
        "flops_per_example": flops_per_example(model, test.X[:1]),
    }
    if status == "ok":
        metrics.update(evaluate(model, test, loss_fn, cfg.eval_batch_size, full=True))
    timing: dict[str, Any] = {
        "train_examples_per_s": (
            statistics.median(t["train_examples_per_s"] for t in epoch_timing)
            if epoch_timing else None
        ),
        "train_examples_per_s_note": throughput_note(),
        "per_epoch": epoch_timing,
    }
    if measure_inference and status == "ok":
        timing["inference_examples_per_s"] = inference_throughput(model, test.X, (1, 1024))
    if device.type == "cuda":
        timing["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    timing["wall_seconds"] = time.perf_counter() - t_start
    if fallback:
        timing["fallback"] = fallback
    if weights_file is not None:
        save_weights(model, weights_file)
    return {
        "status": status,
        "error": error,
        "diverged_epoch": diverged_at,
        "metrics": metrics,
        "history": history,
        "timing": timing,
    }


def save_weights(model: nn.Module, path: Path) -> None:
    """safetensors (no pickle): safe to load anywhere, written atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_weights(cfg: RunConfig, path: Path) -> nn.Module:
    """Rebuild a run's model and load its saved weights (for analyses without retraining)."""
    from safetensors.torch import load_file

    model = create_variant(cfg.variant, **cfg.model)
    model.load_state_dict(load_file(str(path)))
    return model.eval()
