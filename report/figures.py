"""The report's figures (seaborn on matplotlib's Agg backend), written as byte-stable PNGs.

Stability: a fixed style inside an rc_context, no bootstrap (bands are ± SD), no jitter, and
PNGs saved without the Software/date metadata, so the same records give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

from report.collect import Group, by_dataset  # noqa: E402
from report.examples import Examples  # noqa: E402
from report.stats import confidence  # noqa: E402

DPI = 100
FIG_DIR = "figures"


@contextmanager
def style() -> Iterator[None]:
    """A fixed look that does not leak into the caller's matplotlib settings."""
    with matplotlib.rc_context():
        sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
        matplotlib.rcParams.update({"svg.hashsalt": "lenet-bench", "figure.dpi": DPI,
                                    "savefig.dpi": DPI, "axes.titleweight": "bold"})
        yield


def save(fig: MplFigure, out_dir: Path, name: str) -> str:
    """Write a PNG under out_dir/figures/ and return its POSIX path relative to out_dir."""
    path = out_dir / FIG_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})
    return f"{FIG_DIR}/{name}"


def palette(labels: list[str]) -> dict[str, Any]:
    """One colour per label, the same in every figure."""
    labels = sorted(set(labels))
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors, strict=True))


def _pareto(points: list[tuple[float, float]], higher_x_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (accuracy: higher is better)."""
    order = sorted(range(len(points)),
                   key=lambda i: (-points[i][0] if higher_x_better else points[i][0],
                                  -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _xscale(ax: Any, xs: list[float], label: str) -> None:
    """Log scale only where the values span a decade; plain thousands either way."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}")
    if xs and max(xs) > 10 * min(xs) > 0:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label += " (log scale)"
    ax.xaxis.set_major_formatter(fmt)
    ax.set_xlabel(label)


def pareto_figure(groups: list[Group], out_dir: Path, colors: dict[str, Any],
                  tag: str = "") -> str | None:
    by_ds = {ds: [g for g in gs if g.ok] for ds, gs in by_dataset(groups).items()}
    by_ds = {ds: gs for ds, gs in by_ds.items() if gs}
    if not by_ds:
        return None
    fig = MplFigure(figsize=(11, 4.2 * len(by_ds)))
    axes = np.atleast_2d(fig.subplots(len(by_ds), 2, squeeze=False))
    axis = (("params", "trainable parameters", False),
            ("train", "training examples/s", True))
    for row, (ds, gs) in enumerate(by_ds.items()):
        for col, (key, xlabel, higher) in enumerate(axis):
            ax = axes[row][col]
            pts, labels = [], []
            for g in gs:
                a = g.accuracy()
                x = (g.first("metrics", "params_trainable") if key == "params" else
                     np.mean([r["timing"]["train_examples_per_s"] for r in g.ok
                              if r["timing"].get("train_examples_per_s")] or [np.nan]))
                if x is None or not np.isfinite(x):
                    continue
                iv = confidence(g.values())  # none below MIN_SEEDS seeds; clipped to [0, 1]
                yerr = [[100 * (a["mean"] - iv[0])], [100 * (iv[1] - a["mean"])]] if iv \
                    else None
                ax.errorbar(x, 100 * a["mean"], yerr=yerr, fmt="o", capsize=3,
                            color=colors[g.label], ms=6)
                ax.annotate(g.label, (x, 100 * a["mean"]), xytext=(5, 4),
                            textcoords="offset points", fontsize=7.5)
                pts.append((float(x), float(a["mean"])))
                labels.append(g.label)
            front = sorted(_pareto(pts, higher), key=lambda i: pts[i][0])
            if len(front) > 1:
                ax.plot([pts[i][0] for i in front], [100 * pts[i][1] for i in front], "--",
                        color="0.45", lw=1, zorder=0, label="Pareto front")
                ax.legend(loc="lower right", fontsize=7.5)
            _xscale(ax, [p[0] for p in pts], xlabel)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{ds}: accuracy vs {'size' if key == 'params' else 'speed'}")
    fig.tight_layout()
    return save(fig, out_dir, f"pareto{tag}.png")


def curves_figure(groups: list[Group], out_dir: Path, colors: dict[str, Any],
                  tag: str = "") -> str | None:
    rows = [{"dataset": g.dataset, "variant": g.label, "seed": r["seed"], "epoch": h["epoch"],
             "test accuracy (%)": 100 * h["test_acc"], "train loss": h["train_loss"]}
            for g in groups for r in g.ok for h in r.get("history", [])
            if h.get("test_acc") is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    datasets = sorted(df["dataset"].unique())
    fig = MplFigure(figsize=(11, 3.9 * len(datasets)))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for i, ds in enumerate(datasets):
        d = df[df["dataset"] == ds]
        order = sorted(d["variant"].unique())
        for j, y in enumerate(("test accuracy (%)", "train loss")):
            ax = axes[i][j]
            sns.lineplot(data=d, x="epoch", y=y, hue="variant", hue_order=order, palette=colors,
                         errorbar="sd", marker="o", ax=ax, legend=j == 1)
            ax.set_title(f"{ds}: {y}")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if j == 1:
                ax.set_yscale("log")
                ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7.5,
                          title="variant", title_fontsize=8)
    fig.tight_layout()
    return save(fig, out_dir, f"curves{tag}.png")


def topk_figure(groups: list[Group], out_dir: Path, colors: dict[str, Any],
                tag: str = "") -> str | None:
    rows = [{"dataset": g.dataset, "variant": g.label, "k": f"top-{k}",
             "error (%)": max(100 * r["metrics"][f"top{k}_error"], 1e-3)}
            for g in groups for r in g.ok for k in (1, 3, 5)
            if r["metrics"].get(f"top{k}_error") is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    datasets = sorted(df["dataset"].unique())
    fig = MplFigure(figsize=(5.4 * len(datasets) + 2.2, 4.2))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for i, ds in enumerate(datasets):
        d = df[df["dataset"] == ds]
        ax = axes[i]
        sns.pointplot(data=d, x="k", y="error (%)", hue="variant",
                      hue_order=sorted(d["variant"].unique()), order=["top-1", "top-3", "top-5"],
                      palette=colors, errorbar="sd", ax=ax, markersize=4,
                      dodge=0.35 if d["variant"].nunique() > 1 else False,  # seaborn: 1 level
                      linewidth=1.2, capsize=0.08)
        ax.set_yscale("log")
        ax.set_title(f"{ds}: top-k test error")
        ax.legend(fontsize=7, loc="upper right", title=None)
    fig.tight_layout()
    return save(fig, out_dir, f"topk{tag}.png")


def confusion_figure(ds: str, panels: list[tuple[str, Group]], class_names: tuple[str, ...],
                     out_dir: Path, tag: str = "") -> str | None:
    """Row-normalized confusion (% of each true class), summed over the group's seeds."""
    mats = []
    for title, g in panels:
        cms = [np.asarray(r["metrics"]["confusion"], dtype=np.int64) for r in g.ok
               if r["metrics"].get("confusion")]
        if cms:
            total = np.sum(cms, axis=0)
            mats.append((title, g, 100 * total / np.maximum(total.sum(axis=1, keepdims=True), 1)))
    if not mats:
        return None
    fig = MplFigure(figsize=(5.6 * len(mats), 5.2))
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    for ax, (title, g, m) in zip(axes, mats, strict=True):
        sns.heatmap(m, ax=ax, annot=True, fmt=".1f", cmap="Blues", vmin=0, vmax=100, cbar=False,
                    square=True, annot_kws={"fontsize": 6.5}, linewidths=0.3, linecolor="white",
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {g.label} (n = {len(g.ok)} seeds)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7.5)
        ax.tick_params(axis="y", labelrotation=0, labelsize=7.5)
    fig.tight_layout()
    return save(fig, out_dir, f"confusion-{ds}{tag}.png")


def examples_figure(ex: Examples, ds: str, out_dir: Path, tag: str = "") -> str:
    n = max(ex.kind.count("wrong"), ex.kind.count("correct"), 1)
    fig = MplFigure(figsize=(1.45 * n, 3.9))
    axes = fig.subplots(2, n, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    cols = {"wrong": 0, "correct": 0}
    for img, t, p, c, kind in zip(ex.images, ex.true, ex.pred, ex.conf, ex.kind, strict=True):
        r = 0 if kind == "wrong" else 1
        ax = axes[r][cols[kind]]
        cols[kind] += 1
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        names = ex.class_names
        ax.set_title(f"true {names[t]}\npred {names[p]}\np = {c:.3f}", fontsize=7,
                     color="#b42318" if kind == "wrong" else "#1a7f37")
    axes[0][0].text(-0.15, 0.5, "most confident\nwrong", transform=axes[0][0].transAxes,
                    ha="right", va="center", fontsize=8)
    axes[1][0].text(-0.15, 0.5, "least confident\ncorrect", transform=axes[1][0].transAxes,
                    ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.86, bottom=0.02, wspace=0.15, hspace=0.75)
    return save(fig, out_dir, f"examples-{ds}{tag}.png")


def factor_figure(df: pd.DataFrame, name: str, title: str, factor: str, out_dir: Path,
                  notes: dict[tuple[str, str], str] | None = None,
                  levels: list[str] | None = None) -> str:
    """Accuracy vs a factor's levels: mean with 95% CI bars, seeds as dots, per dataset.

    `notes[(dataset, level)]` goes under that tick (e.g. "2 diverged"), so a level whose runs
    mostly diverged does not look like a clean point.
    """
    notes = notes or {}
    datasets = sorted(df["dataset"].unique())
    levels = levels or list(dict.fromkeys(df.sort_values("order")["level"]))
    per_level = 0.9 if len(levels) <= 12 else 0.4  # an epochs curve has 30: keep it readable
    fig = MplFigure(figsize=(max(4.5, per_level * len(levels) + 2.5) * len(datasets), 3.8))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, ds in zip(axes, datasets, strict=True):
        d = df[df["dataset"] == ds]
        xs = {lv: i for i, lv in enumerate(levels)}
        ax.plot([xs[v] for v in d["level"]], 100 * d["acc"], "o", color="0.6", ms=3.5,
                label="one seed", zorder=2)
        s = d.groupby("level", sort=False)["acc"].agg(["mean", "std", "count"])
        s = s.reindex([lv for lv in levels if lv in s.index])
        ax.plot([xs[lv] for lv in s.index], 100 * s["mean"], "o-", color="C0", lw=1.5,
                label="mean", zorder=3)
        # the 95% CI only where MIN_SEEDS seeds give one (clipped to [0, 100]%)
        bars = [(xs[lv], m, iv) for lv, m in zip(s.index, s["mean"], strict=True)
                if (iv := confidence(d[d["level"] == lv]["acc"].tolist()))]
        if bars:
            ax.errorbar([b[0] for b in bars], [100 * b[1] for b in bars],
                        yerr=100 * np.asarray([[m - iv[0] for _, m, iv in bars],
                                               [iv[1] - m for _, m, iv in bars]]),
                        fmt="none", ecolor="C0", capsize=4, lw=1.5, label="95% CI", zorder=3)
        ticks = [lv + (f"\n{notes[(ds, lv)]}" if (ds, lv) in notes else "") for lv in levels]
        ax.set_xticks(range(len(levels)), ticks, rotation=20 if len(levels) > 4 else 0)
        ax.set_xlabel(factor)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}", fontsize=9)
        ax.legend(fontsize=7.5, loc="lower right")
    fig.suptitle(title, fontsize=10, fontweight="bold")
    fig.tight_layout()
    return save(fig, out_dir, name + ".png")
