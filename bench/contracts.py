"""What the gate checks beside accuracy: the inputs are what the recipe declares, evaluation
is a function of the weights alone, and the numbers come from the data the config declares.

Accuracy cannot see a bug that moves the training and the test images alike (an off-centre
pad, a lost division by the std that BatchNorm absorbs), nor an evaluation that depends on its
batch (a model evaluated in training mode, whose BatchNorm takes the statistics of a large
test batch, scores almost as well). These checks are exact and cheap (the first 64 images of
each split), and they exercise the code under test: the tensors the engine trains on
(`bench.resident.device_data`) and the evaluation it reports (`bench.metrics.evaluate`).

Nor does accuracy reliably see a result that is too good for a wrong reason (scoring the
training set, a silent test subset, test images leaked into training): the upper bound
catches only the large ones. So a record says what
it trained on and what its test metrics scored (sizes and label digests, `data_problem`), and
the trained weights are re-evaluated here on the raw test split, independently of the
engine's data and evaluate path, to the exact accuracy reported (`reevaluation_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import load_split
from bench.datasets import DATASETS
from bench.metrics import evaluate, labels_md5
from bench.resident import DeviceData, device_data, subset_indices

N_IMAGES = 64  # per split: enough to see a wrong pixel, a fraction of a second to check
INPUT_ATOL = 1e-5  # float32 arithmetic in a different order
LOSS_RTOL = 1e-4  # a batch of 64 vs batches of 1: convolution algorithms may differ slightly


def expected_inputs(x_uint8: np.ndarray, transform: dict[str, Any], *,
                    dtype: type[np.floating[Any]] = np.float64) -> np.ndarray:
    """The recipe's InputTransform applied to N×28×28 uint8 images, written from its fields
    (NumPy, not the engine's code): scale to [0, 1], centre-pad or resize, normalize, affine.

    The arithmetic runs in `dtype`: float64 is the reference the input contract compares
    with; float32 does the same IEEE operations, in the same order, as the engine's float32
    tensors, so that a re-evaluation from these inputs can be compared exactly."""
    f = np.dtype(dtype).type
    x = x_uint8.astype(dtype) / f(255.0)
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
        x = (x - f(transform["mean"])) / f(transform["std"])
    if transform.get("scale") is not None:
        x = x * f(transform["scale"]) + f(transform["shift"])
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


# --- which data the numbers came from -----------------------------------------------------------

def expected_labels(dataset: str, split: str, subset: int | None, root: Path) -> tuple[int, str]:
    """(n, labels md5) of a split as a config declares it: the whole split's md5 is SPEC's
    checksum of its labels file (no engine code involved); a declared subset's is computed
    from the raw labels at the subset's indices."""
    info = DATASETS[dataset]
    if subset is None:
        n = len(load_split(dataset, split, root)[1])
        return n, info.files[info.splits[split][1]]
    _, y = load_split(dataset, split, root)
    idx = subset_indices(len(y), subset)
    y = y if idx is None else y[idx]
    return len(y), labels_md5(y)


def data_problem(record: Mapping[str, Any], root: Path) -> str | None:
    """None when the record's `data` block says the run trained on the training split its
    config declares and its test metrics scored the test split it declares (the whole split
    unless a test_subset is declared): both sizes and label digests. A record without the
    block (made before records carried it) cannot show where its numbers came from."""
    cfg = record.get("config") or {}
    ds = cfg.get("dataset", record.get("dataset"))
    data = record.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("test"), dict):
        return ("data: the record does not say which data it trained on and scored (made "
                "before records carried it): train it afresh (check --fresh)")
    n_test = (record.get("metrics") or {}).get("n_test")
    if n_test != data["test"].get("n"):
        return (f"data: the test metrics count {n_test} images but scored "
                f"{data['test'].get('n')}")
    for split in ("test", "train"):
        subset = cfg.get(f"{split}_subset")
        n, md5 = expected_labels(str(ds), split, subset, root)
        got = g if isinstance(g := data.get(split), dict) else {}
        what = f"the {ds} {split} split" + ("" if subset is None else f" (subset of {subset})")
        verb = "the test metrics scored" if split == "test" else "training drew from"
        if got.get("n") != n:
            return f"data: {verb} {got.get('n')} images; {what} has {n}"
        if got.get("labels_md5") != md5:
            return (f"data: {verb} {n} images whose labels are not those of {what} (labels "
                    f"md5 {str(got.get('labels_md5'))[:8]}…, want {md5[:8]}…)")
    return None


@torch.no_grad()
def reevaluation_problem(model: torch.nn.Module, record: Mapping[str, Any],
                         root: Path) -> str | None:
    """None when the trained weights, evaluated here on the test split the config declares
    (its own loop over the raw files and `expected_inputs`, not the engine's data or its
    evaluate), give exactly the accuracy the record reports. Exact on the CPU for a run
    trained one at a time: the inputs are the same float32 numbers and the forward the same
    batches; a packed run's vmapped forward is not compared (None)."""
    cfg = record.get("config") or {}
    if record.get("packed_seeds") or cfg.get("device", "cpu") != "cpu":
        return None
    ds = cfg["dataset"]
    raw_x, raw_y = load_split(ds, "test", root)
    idx = subset_indices(len(raw_y), cfg.get("test_subset"))
    if idx is not None:
        raw_x, raw_y = raw_x[idx], raw_y[idx]
    x = torch.from_numpy(expected_inputs(raw_x.numpy(), cfg["transform"], dtype=np.float32))
    if cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    bs = int(cfg.get("eval_batch_size", 1024))
    correct = sum(int((model(x[i:i + bs]).argmax(dim=1) == raw_y[i:i + bs]).sum())
                  for i in range(0, len(raw_y), bs))
    acc = correct / len(raw_y)
    want = (record.get("metrics") or {}).get("test_acc")
    if acc != want:
        return (f"re-evaluation: the trained weights score {acc:.4f} ({correct} of "
                f"{len(raw_y)}) on the {ds} test split, the record says {want}")
    return None
