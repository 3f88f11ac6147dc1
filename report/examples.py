"""Most-confident-wrong and least-confident-correct test images of one saved run.

One forward pass over the test set per chosen run (the report chooses one per dataset), on
the CPU, from the run's saved weights: nothing is retrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.config import config_from_record
from bench.records import weights_path
from report.collect import Group, Record

N_SHOWN = 8


@dataclass(frozen=True)
class Examples:
    run: Record
    images: np.ndarray  # K×28×28 uint8, the raw test images
    true: list[int]
    pred: list[int]
    conf: list[float]  # softmax probability of the predicted class
    kind: list[str]  # "wrong" | "correct"
    class_names: tuple[str, ...]


def pick_run(group: Group, results: Path) -> tuple[Record | None, str]:
    """The lowest-seed finished run with saved weights, or (None, why not)."""
    for r in group.ok:
        if weights_path(results, r["suite"], r["profile"], r["run_id"]).is_file():
            return r, ""
    where = f"{group.suite}/{group.profile}/weights/"
    return None, f"no saved weights for {group.label} in {where}"


def confident_examples(run: Record, results: Path, data_root: Path) -> Examples:
    """Scores of the whole test split → the N most confident errors, N least confident hits."""
    import torch

    from bench.data import DATASETS, load_split
    from bench.engine import load_weights
    from bench.metrics import predict_scores
    from bench.resident import device_data, subset_indices

    cfg = config_from_record(run["config"])
    model = load_weights(cfg, weights_path(results, run["suite"], run["profile"], run["run_id"]))
    data = device_data(cfg.dataset, "test", cfg.transform, "cpu", data_root, cfg.test_subset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small net on a shared CPU: one thread is fastest, and steady
    try:
        with torch.inference_mode():
            probs = predict_scores(model, data.X, cfg.eval_batch_size).double().softmax(dim=1)
    finally:
        torch.set_num_threads(threads)
    conf, pred = probs.max(dim=1)
    y = data.y
    raw, _ = load_split(cfg.dataset, "test", data_root)
    idx = subset_indices(len(raw), cfg.test_subset)
    raw = raw if idx is None else raw[idx]
    order = np.lexsort((np.arange(len(y)), -conf.numpy()))  # most confident first, stable
    wrong = [int(i) for i in order if pred[i] != y[i]][:N_SHOWN]
    right = [int(i) for i in order[::-1] if pred[i] == y[i]][:N_SHOWN]
    chosen = wrong + right
    return Examples(
        run=run,
        images=raw[chosen].numpy(),
        true=[int(y[i]) for i in chosen],
        pred=[int(pred[i]) for i in chosen],
        conf=[float(conf[i]) for i in chosen],
        kind=["wrong"] * len(wrong) + ["correct"] * len(right),
        class_names=DATASETS[cfg.dataset].class_names,
    )
