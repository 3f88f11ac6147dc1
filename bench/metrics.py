"""Metrics of SPEC.md §4: top-k error, confusion, FLOPs, throughput, and statistics over seeds."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench.idx import idx_bytes, md5_bytes

TOPK = (1, 3, 5)

#: The key under which full metrics carry the digest of the labels they scored. bench.loop
#: moves it out of a run's metrics into the record's `data` block (metrics feed the code
#: fingerprint, which must not change with it).
LABELS_MD5 = "test_labels_md5"


def topk_error(scores: Tensor, y: Tensor, k: int) -> float:
    """Fraction of examples whose label is not among the k highest scores."""
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1..{scores.shape[1]}, got {k}")
    top = scores.topk(k, dim=1).indices
    hit = (top == y.unsqueeze(1)).any(dim=1)
    return 1.0 - hit.double().mean().item()


def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """Rows: true class, columns: predicted class."""
    idx = y.to(torch.int64) * num_classes + pred.to(torch.int64)
    return torch.bincount(idx.cpu(), minlength=num_classes**2).reshape(num_classes, num_classes)


@torch.no_grad()
def predict_scores(model: nn.Module, X: Tensor, batch_size: int) -> Tensor:
    model.eval()
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch_size: int,
    *,
    full: bool,
) -> dict[str, Any]:
    """Test loss and accuracy; with `full`, also top-k errors, per-class accuracy, confusion."""
    model.eval()
    scores_all, loss_sum = [], 0.0
    for i in range(0, len(data), batch_size):
        X, y = data.X[i : i + batch_size], data.y[i : i + batch_size]
        scores = model(X)
        loss_sum += float(loss_fn(scores, y).double()) * y.shape[0]
        scores_all.append(scores)
    model.train()
    return score_metrics(torch.cat(scores_all), data.y, loss_sum / len(data), full=full)


def score_metrics(scores: Tensor, y: Tensor, loss: float, *, full: bool) -> dict[str, Any]:
    """Metrics from a test set's class scores (shared by the plain and the packed engine)."""
    n = y.shape[0]
    pred = scores.argmax(dim=1)
    out: dict[str, Any] = {"test_loss": loss, "test_acc": (pred == y).sum().item() / n}
    if not full:
        return out
    num_classes = scores.shape[1]
    cm = confusion_matrix(pred, y, num_classes)
    per_class = (cm.diag().double() / cm.sum(dim=1).clamp(min=1).double()).tolist()
    for k in TOPK:
        out[f"top{k}_error"] = topk_error(scores, y, k)
    out["per_class_acc"] = per_class
    out["confusion"] = cm.tolist()
    out["n_test"] = n
    out[LABELS_MD5] = labels_md5(y)
    return out


def labels_md5(y: Tensor) -> str:
    """md5 of labels written as an IDX1 file: for a whole split it is the SPEC checksum of the
    split's labels file, so a record can show which labels were scored at the cost of one
    10,000-byte hash (bench.contracts compares it)."""
    return md5_bytes(idx_bytes(y.detach().cpu().numpy().astype("uint8")))


def flops_per_example(model: nn.Module, x1: Tensor) -> int:
    """Forward FLOPs for one example as the network is wired (2 per multiply-add).

    torch's FlopCounterMode counts a masked convolution (LeNet-5's C3, a `weight_mask`
    buffer) as dense, since it runs as one; the multiply-adds of unconnected (input, output)
    pairs are not part of the network, so they are taken out again: 2 per output position
    per zero in the mask.
    """
    was_training = model.training
    model.eval()
    unconnected = 0
    hooks = []

    def discount(m: nn.Module, _inp: object, out: Tensor) -> None:
        nonlocal unconnected
        mask = cast(Tensor, m.weight_mask)  # hooked below only where it is a Tensor
        zeros = int(mask.numel() - mask.count_nonzero())
        unconnected += 2 * zeros * out.shape[-1] * out.shape[-2]

    for m in model.modules():
        if isinstance(m, nn.Conv2d) and isinstance(getattr(m, "weight_mask", None), Tensor):
            if m.groups != 1:
                raise ValueError("masked convolutions with groups > 1 are not counted")
            hooks.append(m.register_forward_hook(discount))
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x1[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(counter.get_total_flops()) - unconnected


@torch.no_grad()
def inference_throughput(
    model: nn.Module,
    X: Tensor,
    batch_sizes: Sequence[int],
    *,
    warmup: int = 3,
    min_seconds: float = 0.2,
    max_iters: int = 200,
) -> dict[str, float]:
    """Forward examples/s at fixed batch sizes, after warm-up, device synchronized."""
    from bench import device as dev

    model.eval()
    out: dict[str, float] = {}
    device = X.device
    for bs in batch_sizes:
        reps = -(-bs // X.shape[0])
        xb = (X.repeat(reps, 1, 1, 1) if reps > 1 else X)[:bs]
        for _ in range(warmup):
            model(xb)
        dev.sync(device)
        iters, t0 = 0, time.perf_counter()
        while True:
            model(xb)
            iters += 1
            dev.sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds or iters >= max_iters:
                break
        out[str(bs)] = iters * bs / elapsed
    model.train()
    return out


# --- statistics over seeds -------------------------------------------------------------------

def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t critical value."""
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample std, and the 95% Student-t CI of the mean (± is that half-width)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "ci_low": None, "ci_high": None}
    mean = statistics.fmean(vals)
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None, "ci_low": None, "ci_high": None}
    std = statistics.stdev(vals)
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": half,
            "ci_low": mean - half, "ci_high": mean + half}
