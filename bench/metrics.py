"""Metrics of SPEC.md §4: top-k error, confusion, FLOPs, throughput, and statistics over seeds."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

TOPK = (1, 3, 5)


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
    return out


def flops_per_example(model: nn.Module, x1: Tensor) -> int:
    """Forward FLOPs for one example, counted by torch's FlopCounterMode (2 per MAC)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x1[:1])
    model.train(was_training)
    return int(counter.get_total_flops())


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
    model.eval()
    out: dict[str, float] = {}
    device = X.device
    for bs in batch_sizes:
        reps = -(-bs // X.shape[0])
        xb = (X.repeat(reps, 1, 1, 1) if reps > 1 else X)[:bs]
        for _ in range(warmup):
            model(xb)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        iters, t0 = 0, time.perf_counter()
        while True:
            model(xb)
            iters += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds or iters >= max_iters:
                break
        out[str(bs)] = iters * bs / elapsed
    model.train()
    return out


# --- statistics over seeds -------------------------------------------------------------------

def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t critical value (scipy-free; exact table, asymptote beyond)."""
    table = {
        1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511, 5: 2.57058184,
        6: 2.44691185, 7: 2.36462425, 8: 2.30600414, 9: 2.26215716, 10: 2.22813885,
        11: 2.20098516, 12: 2.17881283, 13: 2.16036866, 14: 2.14478669, 15: 2.13144955,
        16: 2.11990530, 17: 2.10981558, 18: 2.10092204, 19: 2.09302405, 20: 2.08596345,
        25: 2.05953855, 30: 2.04227246, 40: 2.02107539, 60: 2.00029782, 120: 1.97993041,
    }
    if df in table:
        return table[df]
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, df))
    except ImportError:
        keys = sorted(table)
        for lo, hi in zip(keys, keys[1:], strict=False):
            if lo < df < hi:
                return table[lo] + (table[hi] - table[lo]) * (df - lo) / (hi - lo)
        return 1.959963985


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
