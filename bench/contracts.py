"""What the gate checks beside accuracy: the inputs are what the recipe declares, and
evaluation is a function of the weights alone.

Accuracy cannot see a bug that moves the training and the test images alike (an off-centre
pad, a lost division by the std that BatchNorm absorbs), nor an evaluation that depends on its
batch (a model evaluated in training mode, whose BatchNorm takes the statistics of a large
test batch, scores almost as well). These checks are exact and cheap (the first 64 images of
each split), and they exercise the code under test: the tensors the engine trains on
(`bench.resident.device_data`) and the evaluation it reports (`bench.metrics.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import load_split
from bench.metrics import evaluate
from bench.resident import DeviceData, device_data

N_IMAGES = 64  # per split: enough to see a wrong pixel, a fraction of a second to check
INPUT_ATOL = 1e-5  # float32 arithmetic in a different order
LOSS_RTOL = 1e-4  # a batch of 64 vs batches of 1: convolution algorithms may differ slightly


def expected_inputs(x_uint8: np.ndarray, transform: dict[str, Any]) -> np.ndarray:
    """The recipe's InputTransform applied to N×28×28 uint8 images, written from its fields
    (NumPy, not the engine's code): scale to [0, 1], centre-pad or resize, normalize, affine."""
    x = x_uint8.astype(np.float64) / 255.0
    size = int(transform.get("size", 28))
    geometry = transform.get("geometry", "none")
    if geometry == "pad":
        before = (size - x.shape[-1]) // 2
        after = size - x.shape[-1] - before
        x = np.pad(x, ((0, 0), (before, after), (before, after)))
    elif geometry == "resize":  # bilinear resampling is torch's; the rest is checked here
        t = torch.from_numpy(x).unsqueeze(1)
        x = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        x = x.squeeze(1).numpy()
    if transform.get("mean") is not None:
        x = (x - float(transform["mean"])) / float(transform["std"])
    if transform.get("scale") is not None:
        x = x * float(transform["scale"]) + float(transform["shift"])
    return x[:, None].astype(np.float32)


def input_problem(dataset: str, transform: dict[str, Any], root: Path) -> str | None:
    """None when the first images of both splits, as the engine holds them, are the declared
    transform of the raw files; else what differs."""
    for split in ("train", "test"):
        raw, _ = load_split(dataset, split, root)
        want = expected_inputs(raw[:N_IMAGES].numpy(), transform)
        got = device_data(dataset, split, transform, "cpu", root).X[:N_IMAGES].numpy()
        if got.shape != want.shape:
            return (f"{split} images are {tuple(got.shape[1:])}, the recipe's transform gives "
                    f"{tuple(want.shape[1:])}")
        diff = float(np.abs(got - want).max())
        if not diff <= INPUT_ATOL:
            return (f"{split} images differ from the recipe's transform "
                    f"{_label(transform)} (max |Δ| {diff:.3g})")
    return None


def evaluation_problem(model: torch.nn.Module, test: DeviceData, loss_fn: Any) -> str | None:
    """None when evaluating the first test images in one batch and one at a time gives the
    same loss and accuracy and leaves every parameter and buffer as it was.

    The model is put in training mode first, as the training loop leaves it when it
    evaluates after an epoch."""
    few = DeviceData(test.X[:N_IMAGES], test.y[:N_IMAGES])
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    whole = evaluate(model, few, loss_fn, N_IMAGES, full=False)
    model.train()
    single = evaluate(model, few, loss_fn, 1, full=False)
    changed = sorted(k for k, v in model.state_dict().items() if not torch.equal(v, before[k]))
    if changed:
        return f"evaluation changed the model's state ({', '.join(changed[:3])}…)"
    a, b = whole["test_loss"], single["test_loss"]
    if whole["test_acc"] != single["test_acc"] or abs(a - b) > LOSS_RTOL * max(abs(a), 1e-12):
        return (f"evaluation depends on the batch: loss {a:.6g} in one batch of {N_IMAGES}, "
                f"{b:.6g} one image at a time")
    return None


def _label(transform: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(transform.items()) if v is not None) + "}"
