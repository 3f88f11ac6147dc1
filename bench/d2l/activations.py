"""ex4 (and the network plumbing ex5 shares): trained runs rebuilt from their weights, the
activations of their conv layers, and a linear probe on them, for pullovers vs coats.

Images are chosen by fixed rules (the first N of a class in test-set order), independent of
profile and seed; the probe's folds are seeded; floats are rounded, so the same records,
weights and data give the same JSON and figures.
"""

from __future__ import annotations

import statistics
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.d2l.common import Record, pct, rnd, stats_of
from bench.errors import warn

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

# ex4: which images (fixed rules, independent of profile and seed).
PULLOVER, COAT = 2, 4  # Fashion-MNIST class indices
FIGURE_IMAGES = 8  # the first 8 pullovers and the first 8 coats of the test set
PROBE_IMAGES = 500  # the first 500 pullovers and 500 coats of the test set
PROBE_FOLDS = 5
PROBE_C = 0.1  # L2 strength of the logistic-regression probe on standardized features
#: The layers the analyses read: output of each conv block's activation (before pooling),
#: as d2l's exercise displays them, and the penultimate features.
LAYER_DOC = {
    "conv1": "first conv layer after its activation, before pooling",
    "conv2": "second conv layer after its activation, before pooling",
    "fc": "penultimate features (last hidden FC layer after its activation)",
}


# --- ex4/ex5: models, inputs, activations ---------------------------------------------------

def layer_modules(model: nn.Module) -> dict[str, str]:
    """conv1/conv2/fc → module names: each conv block's activation output, and the features."""
    from torch import nn

    convs = getattr(model, "convs", None)
    if not isinstance(convs, nn.Sequential) or len(convs) < 2:
        raise ValueError(f"{type(model).__name__} has no `convs` stack of ≥ 2 conv blocks")
    names = {f"conv{i + 1}": f"convs.{i}.1" for i in range(2)}
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Sequential) and len(fc) > 0:
        names["fc"] = "fc"
    return names


def forward_with_activations(
    model: nn.Module, x: torch.Tensor, layers: dict[str, str], batch_size: int = 500
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scores, {layer: activation}) for input `x`, batched, on the CPU, in eval mode."""
    import torch

    modules = dict(model.named_modules())
    model.eval()
    acts: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
    scores = []
    current: dict[str, torch.Tensor] = {}
    handles = []
    for key, name in layers.items():
        def hook(_m: Any, _i: Any, out: torch.Tensor, key: str = key) -> None:
            current[key] = out.detach()
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                scores.append(model(x[start:start + batch_size]))
                for key in layers:
                    acts[key].append(current[key])
    finally:
        for h in handles:
            h.remove()
    return torch.cat(scores), {k: torch.cat(v) for k, v in acts.items()}


def load_run_model(rec: Record, results: Path, suite: str, profile: str) -> nn.Module | None:
    """Rebuild a run's network and load its saved weights (None when the file is missing)."""
    from bench.config import config_from_record
    from bench.engine import load_weights
    from bench.records import weights_path

    path = weights_path(results, suite, profile, rec["run_id"])
    if not path.is_file():
        warn(f"{path} is missing; run {rec['run_id']} left out of the analysis")
        return None
    return load_weights(config_from_record(rec["config"]), path)


def to_input(images_u8: torch.Tensor | np.ndarray, rec: Record) -> torch.Tensor:
    """N×28×28 uint8 → the run's input tensor (its own transform, on the CPU)."""
    import torch

    from bench.resident import apply_transform

    x = torch.as_tensor(images_u8)
    return apply_transform(x, rec["config"]["transform"])


def first_of_class(y: torch.Tensor, cls: int, n: int) -> list[int]:
    """Indices of the first n examples of class `cls` (test-set order: a fixed choice)."""
    return [int(i) for i in (y == cls).nonzero().flatten()[:n]]


def models_by_variant(records: list[Record], group_names: list[str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        if not any(m.get("group") in group_names for m in r.get("memberships") or []):
            continue
        out.setdefault(r["variant"], []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["config"]["seed"])
    return dict(sorted(out.items()))


def probe_accuracy(X: np.ndarray, y: np.ndarray, *, folds: int = PROBE_FOLDS) -> dict[str, Any]:
    """k-fold CV accuracy of a logistic-regression probe on standardized features."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=500))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, np.asarray(X, dtype=np.float64), y, cv=cv)
    return {"mean": rnd(scores.mean()), "std": rnd(scores.std(ddof=1)),
            "folds": [rnd(s) for s in scores]}


def _cohen_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column standardized mean difference (pooled std); 0 where both are constant."""
    import numpy as np

    va, vb = a.var(axis=0, ddof=1), b.var(axis=0, ddof=1)
    pooled = np.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2))
    diff = a.mean(axis=0) - b.mean(axis=0)
    return np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), 0.0)


# --- ex4: activations of pullovers vs coats -------------------------------------------------

def activations_summary(
    records: list[Record], group_names: list[str], results: Path, suite: str, profile: str,
    data_root: Path, out_dir: Path,
) -> dict[str, Any]:
    """Layer-1/2 activations of each trained network for pullovers and coats.

    Quantities: mean activation per channel per class, per-channel |Cohen's d| between the
    classes, and a linear probe's CV accuracy at telling them apart from each layer (and from
    the raw pixels, the reference a layer has to beat).
    """
    import numpy as np

    from bench.d2l import figures as figs
    from bench.data import DATASETS, ensure_dataset, load_split

    models = models_by_variant(records, group_names)
    if not models:
        return {"answer": "activations: no finished runs yet.", "variants": {}}
    dataset = next(iter(models.values()))[0]["dataset"]
    names = DATASETS[dataset].class_names
    ensure_dataset(dataset, data_root, log=lambda m: None)
    X, y = load_split(dataset, "test", data_root)
    fig_idx = first_of_class(y, PULLOVER, FIGURE_IMAGES) + first_of_class(y, COAT, FIGURE_IMAGES)
    probe_idx = first_of_class(y, PULLOVER, PROBE_IMAGES) + first_of_class(y, COAT, PROBE_IMAGES)
    y_probe = (y[probe_idx] == COAT).numpy().astype(np.int64)
    n_p = int((y_probe == 0).sum())
    pixels = X[probe_idx].reshape(len(probe_idx), -1).numpy() / 255.0
    pixel_probe = probe_accuracy(pixels, y_probe)
    figures: list[str] = []
    variants: dict[str, Any] = {}
    channel_rows: list[dict[str, Any]] = []
    probe_rows: list[dict[str, Any]] = [
        {"variant": "pixels", "layer": "pixels", "acc": pixel_probe["mean"],
         "std": pixel_probe["std"]}]
    for vname, recs in models.items():
        runs: list[dict[str, Any]] = []
        for rec in recs:
            model = load_run_model(rec, results, suite, profile)
            if model is None:
                continue
            layers = {k: v for k, v in layer_modules(model).items() if k != "fc"}
            _, acts = forward_with_activations(model, to_input(X[probe_idx], rec), layers)
            conf = (rec.get("metrics") or {}).get("confusion")
            run: dict[str, Any] = {"run_id": rec["run_id"], "seed": rec["seed"],
                                   "test_acc": rnd(rec["metrics"].get("test_acc"))}
            if conf:
                c = np.asarray(conf, dtype=np.float64)
                run["pullover_acc"] = rnd(c[PULLOVER, PULLOVER] / c[PULLOVER].sum())
                run["coat_acc"] = rnd(c[COAT, COAT] / c[COAT].sum())
                run["pullover_predicted_coat"] = rnd(c[PULLOVER, COAT] / c[PULLOVER].sum())
                run["coat_predicted_pullover"] = rnd(c[COAT, PULLOVER] / c[COAT].sum())
            run["layers"] = {}
            for lname, a in acts.items():
                a_np = a.numpy().astype(np.float64)
                per_img = a_np.mean(axis=(2, 3))  # N×C: each image's mean per channel
                d = _cohen_d(per_img[y_probe == 1], per_img[y_probe == 0])  # coat − pullover
                probe = probe_accuracy(a_np.reshape(len(a_np), -1), y_probe)
                run["layers"][lname] = {
                    "shape": list(a.shape[1:]),
                    "probe_acc": probe,
                    "channel_mean": {
                        names[PULLOVER]: [rnd(v) for v in per_img[y_probe == 0].mean(axis=0)],
                        names[COAT]: [rnd(v) for v in per_img[y_probe == 1].mean(axis=0)],
                    },
                    "channel_d_coat_minus_pullover": [rnd(v) for v in d],
                    "mean_abs_d": rnd(np.abs(d).mean()),
                    "max_abs_d_channel": int(np.abs(d).argmax()),
                    "mean_activation": rnd(a_np.mean()),
                }
            if not runs:  # the lowest seed's run: figures and the per-channel bar chart
                _, fig_acts = forward_with_activations(model, to_input(X[fig_idx], rec), layers)
                labels = [f"{names[int(y[i])]} #{i}" for i in fig_idx]
                for lname, a in fig_acts.items():
                    fname = f"ex4_{vname}_{lname}.png"
                    figs.plot_activation_grid(
                        X[fig_idx].numpy(), a.numpy(), labels,
                        f"{vname} (seed {rec['seed']}): {lname} activations "
                        f"({LAYER_DOC[lname]})", out_dir / fname)
                    figures.append(fname)
                for lname, lay in run["layers"].items():
                    for cls, vals in lay["channel_mean"].items():
                        for ch, v in enumerate(vals):
                            channel_rows.append({"variant": vname, "layer": lname,
                                                 "channel": ch, "class": cls, "mean": v})
            runs.append(run)
        if not runs:
            continue
        over = {}
        for lname in runs[0]["layers"]:
            over[lname] = {
                "probe_acc": stats_of([r["layers"][lname]["probe_acc"]["mean"] for r in runs]),
                "mean_abs_d": stats_of([r["layers"][lname]["mean_abs_d"] for r in runs]),
            }
            s = over[lname]["probe_acc"]
            probe_rows.append({"variant": vname, "layer": lname, "acc": s["mean"],
                               "std": s["std"] if s["std"] is not None
                               else runs[0]["layers"][lname]["probe_acc"]["std"]})
        variants[vname] = {"runs": runs, "over_seeds": over}
    figs.plot_channel_means(channel_rows, out_dir / "ex4_channel_means.png")
    figs.plot_probe(probe_rows, out_dir / "ex4_probe.png")
    figures += ["ex4_channel_means.png", "ex4_probe.png"]
    answer = _activations_answer(variants, pixel_probe)
    return {
        "dataset": dataset,
        "classes": [names[PULLOVER], names[COAT]],
        "layers": {k: LAYER_DOC[k] for k in ("conv1", "conv2")},
        "figure_images": {"rule": f"the first {FIGURE_IMAGES} {names[PULLOVER]} and first "
                                  f"{FIGURE_IMAGES} {names[COAT]} images of the test set",
                          "test_indices": fig_idx},
        "probe": {
            "rule": f"the first {n_p} {names[PULLOVER]} and first {len(probe_idx) - n_p} "
                    f"{names[COAT]} images of the test set",
            "model": f"StandardScaler + LogisticRegression(C={PROBE_C}) on the flattened "
                     f"activations; {PROBE_FOLDS}-fold stratified CV (shuffled, seed 0); "
                     "accuracy mean ± std over folds; over_seeds: over the runs' seeds",
            "chance": 0.5,
            "pixels": pixel_probe,
        },
        "variants": variants,
        "figures": figures,
        "answer": answer,
    }


def _activations_answer(variants: dict[str, Any], pixel_probe: dict[str, Any]) -> str:
    parts = [f"activations (pullover vs coat): a linear probe on raw pixels gets "
             f"{pct(pixel_probe['mean'])}"]
    for vname, v in variants.items():
        o = v["over_seeds"]
        p1, p2 = o["conv1"]["probe_acc"], o["conv2"]["probe_acc"]
        d1, d2 = o["conv1"]["mean_abs_d"]["mean"], o["conv2"]["mean_abs_d"]["mean"]
        diff = p2["mean"] - p1["mean"]
        fold_std = max(v["runs"][0]["layers"]["conv1"]["probe_acc"]["std"] or 0,
                       v["runs"][0]["layers"]["conv2"]["probe_acc"]["std"] or 0)
        if abs(diff) <= fold_std:
            verdict = "about as well as"
        else:
            verdict = "better than" if diff > 0 else "worse than"
        acc = statistics.fmean(r["test_acc"] for r in v["runs"])
        conf = [r.get("pullover_predicted_coat") for r in v["runs"]]
        conf_s = ""
        if all(c is not None for c in conf):
            conf_s = f", and calls {pct(statistics.fmean(conf))} of test pullovers coats"
        parts.append(
            f"{vname} (test acc {pct(acc)}, {len(v['runs'])} seed(s)): conv1 {pct(p1['mean'])}, "
            f"conv2 {pct(p2['mean'])} — layer 2 separates the classes {verdict} layer 1 "
            f"({100 * diff:+.2f} pp; fold std up to {100 * fold_std:.2f} pp); mean |d| of "
            f"channel means {d1:.2f} (conv1) vs {d2:.2f} (conv2){conf_s}"
        )
    return "; ".join(parts) + "."
