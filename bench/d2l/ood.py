"""ex5: activations and predictions of the trained networks for inputs far from the training
data: random noise, the other dataset, and real photos, as they are and inverted.

The inputs are fixed: the first N test images, seeded noise, and photos that ship inside the
scikit-image wheel (nothing is downloaded), so the same weights give the same JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.d2l.activations import (
    LAYER_DOC,
    forward_with_activations,
    layer_modules,
    load_run_model,
    models_by_variant,
    to_input,
)
from bench.d2l.common import Record, rnd, stats_of

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

# ex5: the inputs.
OOD_IN_DIST = 1000  # first N test images of the training dataset (in-distribution reference)
OOD_OTHER = 1000  # first N test images of the other dataset
OOD_NOISE = 500
NOISE_SEED = 0
#: scikit-image's bundled photos (in its wheel: no download), (name, what it shows).
PHOTOS = (
    ("chelsea", "cat"), ("astronaut", "astronaut"), ("coffee", "coffee cup"),
    ("rocket", "rocket"), ("camera", "cameraman"), ("coins", "coins"), ("moon", "moon"),
    ("clock", "clock"), ("horse", "horse silhouette"), ("page", "page of text"),
)

def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as 28×28 uint8 grayscale: centre square crop, resize.

    Nothing is downloaded: these images ship in the scikit-image wheel.
    """
    import numpy as np
    import skimage.data
    from skimage import color, transform, util

    img = getattr(skimage.data, name)()
    img = util.img_as_float(img.astype(np.float64) if img.dtype == bool else img)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = color.rgba2rgb(img)
        img = color.rgb2gray(img)
    h, w = img.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    img = transform.resize(img, (28, 28), anti_aliasing=True, order=1)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def ood_inputs(dataset: str, data_root: Path) -> dict[str, dict[str, Any]]:
    """The ex5 input sets, as N×28×28 uint8 arrays with a description (fixed, seeded)."""
    import numpy as np

    from bench.config import DATASET_NAMES
    from bench.data import ensure_dataset, load_split

    other = next(d for d in DATASET_NAMES if d != dataset)
    for d in (dataset, other):
        ensure_dataset(d, data_root, log=lambda m: None)
    Xi, _ = load_split(dataset, "test", data_root)
    Xo, _ = load_split(other, "test", data_root)
    rng = np.random.default_rng(NOISE_SEED)
    uniform = rng.integers(0, 256, size=(OOD_NOISE, 28, 28), dtype=np.uint8)
    xi = Xi[:OOD_IN_DIST].numpy()
    mean, std = float(xi.mean()), float(xi.std())
    gauss = np.clip(np.rint(rng.normal(mean, std, size=(OOD_NOISE, 28, 28))), 0, 255)
    photos = np.stack([load_photo(n) for n, _ in PHOTOS])
    return {
        "in_distribution": {
            "images": xi, "description": f"first {OOD_IN_DIST} {dataset} test images"},
        "other_dataset": {
            "images": Xo[:OOD_OTHER].numpy(),
            "description": f"first {OOD_OTHER} {other} test images"},
        "uniform_noise": {
            "images": uniform,
            "description": f"{OOD_NOISE} images of i.i.d. uniform pixels (seed {NOISE_SEED})"},
        "gaussian_noise": {
            "images": gauss.astype(np.uint8),
            "description": f"{OOD_NOISE} images of i.i.d. Gaussian pixels with the "
                           f"in-distribution images' mean and std, clipped (seed {NOISE_SEED})"},
        "photos": {
            "images": photos,
            "description": "scikit-image photos (" + ", ".join(f"{n}: {w}" for n, w in PHOTOS)
                           + "), grayscale, centre square crop, resized to 28×28 "
                             "(light backgrounds, unlike the training images)"},
        "photos_inverted": {
            "images": 255 - photos,
            "description": "the same photos inverted (255 − x), so that backgrounds are dark "
                           "and objects light, as in the training images"},
    }


def _softmax_stats(scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max softmax probability, predictive entropy in nats, predicted class) per input."""
    import torch

    p = torch.softmax(scores.double(), dim=1)
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    msp, pred = p.max(dim=1)
    return msp.numpy(), ent.numpy(), pred.numpy()


def ood_summary(
    records: list[Record], group_names: list[str], results: Path, suite: str, profile: str,
    data_root: Path, out_dir: Path,
) -> dict[str, Any]:
    """Activations and predictions of each trained network on far-from-training inputs."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from bench.d2l import figures as figs
    from bench.data import DATASETS

    models = models_by_variant(records, group_names)
    if not models:
        return {"answer": "ood: no finished runs yet.", "variants": {}}
    dataset = next(iter(models.values()))[0]["dataset"]
    names = DATASETS[dataset].class_names
    sets = ood_inputs(dataset, data_root)
    n_classes = len(names)
    figures: list[str] = []
    variants: dict[str, Any] = {}
    msp_rows: list[dict[str, Any]] = []
    act_rows: list[dict[str, Any]] = []
    hist_by_variant: dict[str, dict[str, list[float]]] = {}
    for vname, recs in models.items():
        per_run: list[dict[str, Any]] = []
        for rec in recs:
            model = load_run_model(rec, results, suite, profile)
            if model is None:
                continue
            layers = layer_modules(model)
            out_sets: dict[str, Any] = {}
            ref_msp = None
            ref_act: dict[str, float] = {}
            raw: dict[str, Any] = {}
            for sname, s in sets.items():
                scores, acts = forward_with_activations(model, to_input(s["images"], rec),
                                                        layers)
                msp, ent, pred = _softmax_stats(scores)
                raw[sname] = (msp, pred, acts)
                hist = np.bincount(pred, minlength=n_classes)
                top = int(hist.argmax())
                entry: dict[str, Any] = {
                    "n": len(msp),
                    "msp_mean": rnd(msp.mean()),
                    "msp_median": rnd(np.median(msp)),
                    "frac_msp_above_0.9": rnd((msp > 0.9).mean()),
                    "entropy_mean_nats": rnd(ent.mean()),
                    "entropy_mean_normalized": rnd(ent.mean() / math.log(n_classes)),
                    "predicted_class_counts": {names[c]: int(hist[c]) for c in range(n_classes)},
                    "most_predicted_class": names[top],
                    "most_predicted_frac": rnd(hist[top] / len(pred)),
                    "activations": {},
                }
                for lname, a in acts.items():
                    a64 = a.double()
                    stat = {"mean": rnd(a64.mean().item()), "std": rnd(a64.std().item()),
                            "mean_abs": rnd(a64.abs().mean().item())}
                    if sname == "in_distribution":
                        ref_act[lname] = stat["mean_abs"] or 0.0
                    ref = ref_act.get(lname)
                    mean_abs = stat["mean_abs"]  # None where the activations are not finite
                    stat["mean_abs_ratio_to_in_distribution"] = (
                        rnd(mean_abs / ref) if ref and mean_abs is not None else None)
                    entry["activations"][lname] = stat
                if sname == "in_distribution":
                    ref_msp = msp
                elif ref_msp is not None:
                    labels = np.r_[np.ones(len(ref_msp)), np.zeros(len(msp))]
                    entry["auroc_msp_in_vs_this"] = rnd(
                        roc_auc_score(labels, np.r_[ref_msp, msp]))
                out_sets[sname] = entry
            photos = []
            for key in ("photos", "photos_inverted"):
                msp, pred, _ = raw[key]
                for i, (pname, what) in enumerate(PHOTOS):
                    photos.append({"photo": pname, "shows": what,
                                   "inverted": key == "photos_inverted",
                                   "predicted": names[int(pred[i])], "msp": rnd(msp[i])})
            run = {"run_id": rec["run_id"], "seed": rec["seed"],
                   "test_acc": rnd(rec["metrics"].get("test_acc")), "sets": out_sets,
                   "photos": photos}
            if not per_run:  # the lowest seed: figures
                for sname, (msp, _pred, _acts) in raw.items():
                    msp_rows += [{"variant": vname, "input": sname, "msp": float(m)}
                                 for m in msp]
                    for lname, st in out_sets[sname]["activations"].items():
                        act_rows.append({"variant": vname, "input": sname, "layer": lname,
                                         "ratio": st["mean_abs_ratio_to_in_distribution"]})
                hist_by_variant[vname] = {
                    sname: [c / e["n"] for c in e["predicted_class_counts"].values()]
                    for sname, e in out_sets.items()}
                figures += _ood_example_figures(vname, rec, model, sets, raw, names, out_dir)
            per_run.append(run)
        if not per_run:
            continue
        over = {}
        for sname in sets:
            over[sname] = {
                k: stats_of([r["sets"][sname][k] for r in per_run if r["sets"][sname].get(k)
                           is not None])
                for k in ("msp_mean", "entropy_mean_nats", "auroc_msp_in_vs_this")
                if k in per_run[0]["sets"][sname]
            }
        variants[vname] = {"runs": per_run, "over_seeds": over}
    figs.plot_msp(msp_rows, out_dir / "ex5_msp.png")
    figs.plot_activation_ratios(act_rows, out_dir / "ex5_activation_ratios.png")
    figs.plot_predicted_classes(hist_by_variant, list(names), out_dir / "ex5_predicted_classes.png")
    figures += ["ex5_msp.png", "ex5_activation_ratios.png", "ex5_predicted_classes.png"]
    return {
        "dataset": dataset,
        "inputs": {k: v["description"] for k, v in sets.items()},
        "preprocessing": "every input is 28×28 uint8, then the network's own input transform "
                         "(for the d2l networks: pixels/255)",
        "metrics": {
            "msp": "maximum softmax probability (confidence of the predicted class)",
            "entropy": "predictive entropy of the softmax in nats (max ln 10 = 2.303); "
                       "normalized = divided by ln 10",
            "auroc_msp_in_vs_this": "how well MSP tells the in-distribution test images from "
                                    "this set (1 = perfectly, 0.5 = not at all)",
            "activations": "mean, std and mean |x| over all units and inputs of each layer; "
                           "ratio = mean |x| relative to in-distribution inputs",
        },
        "layers": LAYER_DOC,
        "variants": variants,
        "figures": figures,
        "answer": _ood_answer(variants),
    }


def _ood_example_figures(
    vname: str, rec: Record, model: nn.Module, sets: dict[str, Any], raw: dict[str, Any],
    names: tuple[str, ...], out_dir: Path,
) -> list[str]:
    """Inputs with the predicted class and MSP; conv1 maps of a few inputs vs an in-dist one."""
    import numpy as np

    from bench.d2l import figures as figs

    picks = [("photos", i) for i in range(len(PHOTOS))]
    picks += [("photos_inverted", i) for i in range(len(PHOTOS))]
    picks += [(k, i) for k in ("uniform_noise", "gaussian_noise", "other_dataset",
                               "in_distribution") for i in range(2)]
    imgs, caps = [], []
    for sname, i in picks:
        msp, pred, _ = raw[sname]
        imgs.append(sets[sname]["images"][i])
        label = PHOTOS[i][0] + (" inv." if sname == "photos_inverted" else "") \
            if sname.startswith("photos") else f"{sname.replace('_', ' ')} {i}"
        caps.append(f"{label}\n→ {names[int(pred[i])]} {msp[i]:.2f}")
    f1 = f"ex5_{vname}_predictions.png"
    figs.plot_image_grid(np.stack(imgs), caps,
                         f"{vname} (seed {rec['seed']}): predicted class and max softmax prob.",
                         out_dir / f1)
    rows = [("in_distribution", 0), ("photos", 0), ("photos_inverted", 0),
            ("uniform_noise", 0), ("other_dataset", 0)]
    labels = ["in-dist. test 0", f"{PHOTOS[0][1]}", f"{PHOTOS[0][1]} inverted",
              "uniform noise 0", "other dataset 0"]
    images = np.stack([sets[s]["images"][i] for s, i in rows])
    files = [f1]
    for lname in ("conv1", "conv2"):
        acts = np.stack([raw[s][2][lname][i].numpy() for s, i in rows])
        fname = f"ex5_{vname}_{lname}_maps.png"
        figs.plot_activation_grid(images, acts, labels,
                                  f"{vname} (seed {rec['seed']}): {lname} activations "
                                  "for far-from-training inputs", out_dir / fname)
        files.append(fname)
    return files


def _ood_answer(variants: dict[str, Any]) -> str:
    parts = []
    for vname, v in variants.items():
        run = v["runs"][0]
        s = run["sets"]
        ind = s["in_distribution"]
        bits = [f"in-distribution MSP {ind['msp_mean']:.2f}, entropy "
                f"{ind['entropy_mean_nats']:.2f} nats"]
        for key, label in (("other_dataset", "other dataset"), ("uniform_noise", "noise"),
                           ("photos", "photos"), ("photos_inverted", "inverted photos")):
            e = s[key]
            ratio = e["activations"]["conv1"]["mean_abs_ratio_to_in_distribution"]
            bits.append(
                f"{label} MSP {e['msp_mean']:.2f} (AUROC {e['auroc_msp_in_vs_this']:.2f}, "
                f"{100 * e['most_predicted_frac']:.0f}% called {e['most_predicted_class']}, "
                f"conv1 mean |act| ×{ratio:.2f})"
            )
        cat = next((p for p in run["photos"] if p["photo"] == "chelsea" and not p["inverted"]),
                   None)
        cat_inv = next((p for p in run["photos"] if p["photo"] == "chelsea" and p["inverted"]),
                       None)
        cat_s = ""
        if cat and cat_inv:
            cat_s = (f"; the cat is called {cat['predicted']} ({cat['msp']:.2f}), inverted "
                     f"{cat_inv['predicted']} ({cat_inv['msp']:.2f})")
        over_conf = [k for k in ("uniform_noise", "photos", "photos_inverted", "other_dataset")
                     if s[k]["msp_mean"] >= 0.9 * ind["msp_mean"]]
        verdict = (f"; confidence stays near in-distribution level for "
                   f"{', '.join(over_conf)}" if over_conf else
                   "; confidence drops on every far-from-training set")
        parts.append(f"{vname} (seed {run['seed']}): " + "; ".join(bits) + cat_s + verdict)
    return "ood: " + " | ".join(parts) + "."
