"""Figures for the d2l exercises 4 and 5: what conv layers respond to, in and out of domain.

Plain data in (numpy arrays, lists of dicts), PNG out, Agg backend, no timestamps in the
files, so the same numbers give the same figures. `bench.d2l.activations` and
`bench.d2l.ood` compute; this only draws. (It lives with the d2l extension, not in report/,
so that bench never imports report: only the command line does.)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

DPI = 100
_META = {"Software": None}  # no version string: same figure, same bytes


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata=_META, bbox_inches="tight")
    plt.close(fig)


def plot_activation_grid(
    images: np.ndarray, acts: np.ndarray, row_labels: list[str], title: str, path: Path
) -> None:
    """One row per input: the input image, then each channel's activation map.

    Each channel column shares one colour scale over all rows, so rows (e.g. pullovers vs
    coats) are comparable within a channel.
    """
    n, c = acts.shape[0], acts.shape[1]
    cell = 0.75
    fig, axes = plt.subplots(n, c + 1, figsize=(cell * (c + 1) + 1.5, cell * n + 0.6),
                             squeeze=False, layout="constrained")
    lo = acts.min(axis=(0, 2, 3))
    hi = acts.max(axis=(0, 2, 3))
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=7)
        for j in range(c):
            axes[i, j + 1].imshow(acts[i, j], cmap="viridis", vmin=lo[j],
                                  vmax=hi[j] if hi[j] > lo[j] else lo[j] + 1e-6)
    for j in range(c + 1):
        axes[0, j].set_title("input" if j == 0 else f"ch {j - 1}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_channel_means(rows: list[dict[str, Any]], path: Path) -> None:
    """Mean activation per channel, per class: one panel per (variant, layer)."""
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame({"variant": ["–"], "layer": ["–"], "channel": [0],
                           "class": ["–"], "mean": [0.0]})
    g = sns.catplot(data=df, kind="bar", x="channel", y="mean", hue="class", col="layer",
                    row="variant", sharex=False, sharey=False, height=2.4, aspect=1.8,
                    palette="Set2")
    g.set_axis_labels("channel", "mean activation")
    g.figure.suptitle("Mean activation per channel and class (probe images, lowest seed)",
                      y=1.02, fontsize=9)
    _save(g.figure, path)


def plot_probe(rows: list[dict[str, Any]], path: Path) -> None:
    """Linear-probe accuracy (pullover vs coat) per layer, with error bars (± std)."""
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{r['variant']}\n{r['layer']}" if r["variant"] != "pixels" else "raw\npixels"
              for r in rows]
    colors = sns.color_palette("Set2", n_colors=max(3, len(set(df["variant"]))))
    pal = {v: colors[i] for i, v in enumerate(dict.fromkeys(df["variant"]))}
    ax.bar(range(len(rows)), df["acc"], yerr=[r["std"] or 0 for r in rows], capsize=3,
           color=[pal[r["variant"]] for r in rows])
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("probe CV accuracy")
    ax.set_title("Pullover vs coat: linear probe on each layer's activations", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_image_grid(images: np.ndarray, captions: list[str], title: str, path: Path,
                    cols: int = 10) -> None:
    """Small images with a caption under each (the input and what the network made of it)."""
    n = len(images)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
        ax.set_xlabel(captions[k], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_msp(rows: list[dict[str, Any]], path: Path) -> None:
    """Distribution of the maximum softmax probability per input set and network."""
    df = pd.DataFrame(rows or [{"variant": "–", "input": "–", "msp": 0.0}])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    with warnings.catch_warnings():  # seaborn's own use of a deprecated matplotlib argument
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        sns.boxplot(data=df, x="input", y="msp", hue="variant", ax=ax, fliersize=1,
                    palette="Set2")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("max softmax probability")
    ax.set_xlabel("")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("Confidence on in-distribution vs far-from-training inputs", fontsize=9)
    ax.legend(title="variant", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def plot_activation_ratios(rows: list[dict[str, Any]], path: Path) -> None:
    """Mean |activation| per layer relative to in-distribution inputs (1 = the same)."""
    df = pd.DataFrame(rows or [{"variant": "–", "input": "–", "layer": "–", "ratio": 1.0}])
    g = sns.catplot(data=df, kind="bar", x="input", y="ratio", hue="variant", col="layer",
                    height=2.8, aspect=1.3, palette="Set2")
    for ax in g.axes.flat:
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        ax.tick_params(axis="x", labelsize=6, rotation=45)
    g.set_axis_labels("", "mean |activation| / in-distribution")
    g.figure.suptitle("Activation magnitude on far-from-training inputs", y=1.03, fontsize=9)
    _save(g.figure, path)


def plot_predicted_classes(
    hist: dict[str, dict[str, list[float]]], class_names: list[str], path: Path
) -> None:
    """Fraction of each input set given each class: one heatmap per network."""
    n = max(1, len(hist))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.2), squeeze=False)
    for ax, (vname, sets) in zip(axes[0], hist.items(), strict=False):
        mat = np.array(list(sets.values()))
        sns.heatmap(mat, ax=ax, vmin=0, vmax=1, cmap="mako", annot=True, fmt=".2f",
                    annot_kws={"fontsize": 6}, cbar=False,
                    xticklabels=class_names, yticklabels=list(sets))
        ax.set_title(f"{vname}: predicted class per input set", fontsize=9)
        ax.tick_params(labelsize=6)
    _save(fig, path)
