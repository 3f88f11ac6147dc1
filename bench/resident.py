"""Datasets as single tensors resident on the training device (airbench style).

uint8 → float once, then the variant's input transform (pad/resize, normalize/affine) once per
(dataset, split, transform, device, subset). Training batches are drawn by index from these
tensors with a seeded generator: no DataLoader, no PIL, no per-batch transform in the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data import load_split

SUBSET_SEED = 20260101  # fixed: the smoke subset is the same images on every machine


@dataclass(frozen=True)
class DeviceData:
    X: Tensor  # N×1×H×W float32 on the device, transformed
    y: Tensor  # N int64 on the device

    def __len__(self) -> int:
        return self.y.shape[0]


_CACHE: dict[tuple[Any, ...], DeviceData] = {}


def subset_indices(n_total: int, n: int | None) -> Tensor | None:
    """A fixed pseudo-random subset (class-balanced in expectation), independent of run seeds."""
    if n is None or n >= n_total:
        return None
    g = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def apply_transform(x_uint8: Tensor, transform: dict[str, Any]) -> Tensor:
    """N×28×28 uint8 → N×1×S×S float32, per the variant's InputTransform fields."""
    x = x_uint8.to(torch.float32).div_(255.0).unsqueeze(1)
    size = int(transform.get("size", 28))
    geometry = transform.get("geometry", "none")
    if geometry == "pad":
        p = (size - x.shape[-1]) // 2
        x = F.pad(x, (p, size - x.shape[-1] - p, p, size - x.shape[-2] - p), value=0.0)
    elif geometry == "resize":
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    elif geometry != "none":
        raise ValueError(f"unknown geometry {geometry!r}")
    if transform.get("mean") is not None:
        x = (x - float(transform["mean"])) / float(transform["std"])
    if transform.get("scale") is not None:
        x = x * float(transform["scale"]) + float(transform["shift"])
    return x.contiguous()


def device_data(
    dataset: str,
    split: str,
    transform: dict[str, Any],
    device: torch.device | str,
    root: Path,
    subset: int | None = None,
    holdout: tuple[str, int] | None = None,
) -> DeviceData:
    """The (cached) transformed split on `device`.

    `holdout` = ("fit" | "val", h) cuts the split first: its first N − h images ("fit") or its
    last h ("val"), a fixed split every run shares; `subset` then samples within that part."""
    device = torch.device(device)
    key = (dataset, split, tuple(sorted(transform.items())), str(device), str(root), subset,
           holdout)
    if key not in _CACHE:
        X, y = load_split(dataset, split, root)
        if holdout is not None:
            part, h = holdout
            if part not in ("fit", "val") or not 0 < h < len(y):
                raise ValueError(f"bad holdout {holdout!r} for a split of {len(y)} images")
            cut = slice(0, len(y) - h) if part == "fit" else slice(len(y) - h, len(y))
            X, y = X[cut], y[cut]
        idx = subset_indices(len(y), subset)
        if idx is not None:
            X, y = X[idx], y[idx]
        # Transform on the device when it is a GPU (fast), once.
        Xt = apply_transform(X.to(device), transform)
        _CACHE[key] = DeviceData(Xt, y.to(device=device, dtype=torch.int64))
    return _CACHE[key]

