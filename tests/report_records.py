"""A small fixed set of realistic run records for the report tests (no training).

Configs and run ids are real (resolved like `lenet-bench run` would), metrics are made up
but plausible and fixed. Suite `variants` has three run sets: `reference` (every recipe in
full; it leads the report), `quick` (5 variants on 2 datasets × 3 seeds, one failed and one
diverged run) and `smoke` (1 seed), which go to the appendix. A `d2l-ex2`-like suite has
kernel-size, learning-rate and activation groups that share the baseline runs (kernel 5 =
lr 0.1 = relu), as the planner records them (memberships), a level that did not train
(sigmoid: every prediction one class) and an epochs group read from the runs' history.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.config import resolve_config
from bench.records import append_record, parse_record, runs_path, weights_path
from bench.suites import get_profile

COMMIT = "3f2c1a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39"
T0 = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)
FAILED_ERROR = ("RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                "(64x400 and <b>120</b>) & <script>alert(1)</script>")

# variant → dataset, per-seed test accuracy (None: failed, "div": diverged), train ex/s
VARIANTS: dict[str, tuple[str, list[Any], float]] = {
    "lenet_d2l": ("fashion-mnist", [0.7712, 0.7650, 0.7789], 5210.0),
    "lenet_modern": ("fashion-mnist", [0.8571, 0.8602, 0.8549], 5480.0),
    "lenet5": ("mnist", [0.9781, 0.9794, 0.9776], 1890.0),
    "lenet5_bn": ("mnist", [None, 0.9862, 0.9871], 3120.0),
    "mlp": ("mnist", [0.9652, 0.9671, "div"], 61000.0),
}
# The leading run set (profile `reference`: each recipe's epochs on all training images), chosen
# to exercise the rules: lenet_d2l's and lenet5's published figures lie inside the prediction
# interval, lenet_modern's outside; lenet5_bn's intervals reach past 100% and are clipped; mlp
# has 2 seeds (too few to test).
REFERENCE: dict[str, tuple[str, list[Any], float]] = {
    "lenet_d2l": ("fashion-mnist", [0.8312, 0.8405, 0.8377], 5210.0),
    "lenet_modern": ("fashion-mnist", [0.9021, 0.9050, 0.9032], 5480.0),
    "lenet5": ("mnist", [0.9903, 0.9898, 0.9907], 1890.0),
    "lenet5_bn": ("mnist", [0.9990, 0.9996, 0.9921], 3120.0),
    "mlp": ("mnist", [0.9790, 0.9802], 61000.0),
}
SMOKE: dict[str, tuple[str, list[Any], float]] = {
    "lenet5": ("mnist", [0.8197], 175.0), "mlp": ("mnist", [0.7312], 14000.0)}
PARAMS = {"lenet_d2l": (61706, 846_000), "lenet_modern": (61706, 846_000),
          "lenet5": (60000, 678_000), "lenet5_bn": (61750, 1_318_000), "lenet_tweakable": None,
          "mlp": (89610, 178_000)}
BASE = [0.8571, 0.8549, 0.8590]  # the baseline: kernel 5 = lr 0.1 = relu, one run per seed
# (group = factor, question) → level → per-seed accuracy ("div": diverged, "chance": one class)
D2L = {
    ("kernel_size", "Does the convolution window size (3…7) change accuracy?"): {
        3: [0.8512, 0.8540, 0.8498], 5: BASE, 7: [0.8530, 0.8561, 0.8519]},
    ("lr", "Which learning rate trains best (0.01, 0.1, 0.5)?"): {
        0.01: [0.7012, 0.6954, 0.7088], 0.1: BASE, 0.5: [0.8123, "div", "div"]},
    ("activation", "Which activation works best?"): {
        "relu": BASE, "sigmoid": ["chance", "chance", "chance"]},
}
EPOCHS = (3, [0.8701, 0.8688, 0.8723])  # the epochs group: one 3-epoch run per seed
COLLAPSED_CLASS = 4
CLASS_OFFSET = [0.02, 0.03, -0.02, 0.01, -0.03, 0.03, -0.08, 0.02, 0.03, -0.01]


def _confusion(acc: float) -> list[list[int]]:
    cm = [[0] * 10 for _ in range(10)]
    for c in range(10):
        right = max(0, min(1000, round(1000 * (acc + CLASS_OFFSET[c]))))
        wrong = 1000 - right
        cm[c][c] = right
        cm[c][(c + 1) % 10] += wrong - wrong * 2 // 5
        cm[c][(c + 3) % 10] += wrong * 2 // 5
    return cm


def _collapsed() -> list[list[int]]:
    """Every test image predicted as one class: accuracy = that class's share (10%)."""
    return [[1000 if j == COLLAPSED_CLASS else 0 for j in range(10)] for _ in range(10)]


def _env(i: int, wall: float) -> dict[str, Any]:
    start = T0 + timedelta(minutes=3 * i)
    return {
        "lenet_bench": "0.1.0", "python": "3.11.2", "torch": "2.11.0+cpu",
        "torchvision": "0.26.0+cpu", "cuda": None, "cudnn": None, "device": "cpu",
        "device_name": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz",
        "cpu_count": 2, "threads": 2, "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
        "git_commit": COMMIT, "git_dirty": False,
        "started": start.isoformat(timespec="seconds"),
        "ended": (start + timedelta(seconds=round(wall))).isoformat(timespec="seconds"),
    }


def _body(acc: Any, variant: str, seed: int, eps: float, epochs: int) -> dict[str, Any]:
    params, flops = PARAMS.get(variant) or PARAMS["lenet_modern"]
    base = {"params_trainable": params, "params_total": params, "flops_per_example": flops}
    if acc is None:
        return {"status": "failed", "error": FAILED_ERROR, "metrics": {}, "history": [],
                "timing": {}, "traceback": "Traceback (most recent call last): …"}
    eps = eps * (1 + 0.013 * seed)
    per_epoch = [{"epoch": e + 1, "train_examples_per_s": eps * (1 + 0.01 * e),
                  "train_seconds": 60000 / eps} for e in range(epochs)]
    timing: dict[str, Any] = {"train_examples_per_s": eps, "per_epoch": per_epoch,
                              "wall_seconds": 60000 / eps * epochs + 4.5}
    if acc == "div":
        hist = [{"epoch": 1, "lr": 0.5, "train_loss": 2.31, "train_acc": 0.11,
                 "test_loss": 2.30, "test_acc": 0.1}]
        return {"status": "diverged", "error": "loss became nan at epoch 2, step 50",
                "diverged_epoch": 2, "metrics": base, "history": hist,
                "timing": {**timing, "per_epoch": per_epoch[:1]}}
    cm = _collapsed() if acc == "chance" else _confusion(acc)
    acc = 0.1 if acc == "chance" else acc
    hist = []
    for e in range(epochs):
        left = (epochs - 1 - e) / max(epochs - 1, 1)  # 1 at the first epoch, 0 at the last
        jitter = 0.002 * ((7 * seed + 3 * e) % 5) if e < epochs - 1 else 0.0
        hist.append({"epoch": e + 1, "lr": 0.1, "train_loss": 3.0 * (1 - acc) * (1 + 0.6 * left),
                     "train_acc": acc - 0.02 * left, "test_loss": 2.8 * (1 - acc) * (1 + left),
                     "test_acc": round(acc - 0.06 * left + jitter, 6)})
    metrics = {**base, "test_acc": acc, "test_loss": 2.5 * (1 - acc), "top1_error": 1 - acc,
               "top3_error": round((1 - acc) * 0.12, 6), "top5_error": round((1 - acc) * 0.03, 6),
               "confusion": cm, "n_test": 10000}
    metrics["per_class_acc"] = [row[i] / 1000 for i, row in enumerate(metrics["confusion"])]
    timing["inference_examples_per_s"] = {"1": 2100.0 + seed, "1024": eps * 8}
    return {"status": "ok", "metrics": metrics, "history": hist, "timing": timing}


def _record(i: int, suite: str, group: str, question: str, factor: str | None, fval: Any,
            overrides: dict[str, Any], variant: str, dataset: str, seed: int, acc: Any,
            eps: float, profile: str = "quick") -> dict[str, Any]:
    """`profile` reference trains the recipe in full (no profile defaults), as it is meant to."""
    defaults = None if profile == "reference" else get_profile(profile).training_defaults()
    cfg = resolve_config(variant, dataset, seed, overrides, profile_defaults=defaults)
    body = _body(acc, variant, seed, eps, cfg.num_epochs)
    rec = {
        "record_version": 1, "run_id": cfg.run_id(), "suite": suite, "profile": profile,
        "group": group, "question": question, "factor": factor, "factor_value": fval,
        "overrides": overrides, "variant": variant, "dataset": dataset, "seed": seed,
        "config": cfg.to_dict(), "status": body["status"], "error": body.get("error"),
        "diverged_epoch": body.get("diverged_epoch"), "metrics": body["metrics"],
        "history": body["history"], "timing": body["timing"],
        "env": _env(i, body["timing"].get("wall_seconds", 7.0)),
    }
    if "traceback" in body:
        rec["traceback"] = body["traceback"]
    return rec


def tiny_png(w: int = 24, h: int = 16) -> bytes:
    """A fixed grey-gradient PNG, byte for byte the same on every machine."""
    raw = b"".join(b"\x00" + bytes((x * 10 + y * 5) % 256 for x in range(w)) for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_fixture(results: Path, *, weights: bool = True) -> list[dict[str, Any]]:
    """Write the records (and, with `weights`, untrained weights of the finished variant runs)."""
    from bench.config import RunConfig
    from bench.engine import build_model, save_weights

    recs, i = [], 0
    for profile, table in (("quick", VARIANTS), ("reference", REFERENCE), ("smoke", SMOKE)):
        for variant, (ds, accs, eps) in table.items():
            for seed, acc in enumerate(accs):
                recs.append(_record(i, "variants", "zoo", "Which LeNet variant is best on its "
                                    "own recipe, by how much, and how fast?", None, None, {},
                                    variant, ds, seed, acc, eps, profile))
                i += 1
    shared: dict[str, dict[str, Any]] = {}
    epochs_q = "How many epochs does the baseline need? Read from the per-epoch history."
    groups = [(f, q, f, levels, None) for (f, q), levels in D2L.items()]
    groups.append(("epochs", epochs_q, "num_epochs", {None: EPOCHS[1]}, EPOCHS[0]))
    for gname, question, factor, levels, epochs in groups:
        for value, accs in levels.items():
            for seed, acc in enumerate(accs):
                ov = {factor: value} if value is not None else {"num_epochs": epochs}
                rec = _record(i, "d2l-ex2", gname, question, factor, value, ov,
                              "lenet_tweakable", "fashion-mnist", seed, acc, 5400.0)
                member = {"group": gname, "question": question, "factor": factor,
                          "factor_value": value}
                if rec["run_id"] in shared:  # the baseline is trained once, in every group
                    shared[rec["run_id"]]["memberships"].append(member)
                    continue
                rec["memberships"] = [member]
                shared[rec["run_id"]] = rec
                recs.append(rec)
                i += 1
    for r in recs:
        append_record(runs_path(results, r["suite"], r["profile"]), r)
        if weights and r["suite"] == "variants" and r["status"] == "ok":
            cfg = RunConfig(**r["config"])
            save_weights(build_model(cfg), weights_path(results, r["suite"], r["profile"],
                                                        r["run_id"]))
    write_perf_fixture(results)
    adir = results / "d2l-ex4" / "quick" / "analysis"
    adir.mkdir(parents=True, exist_ok=True)
    (adir / "activations-layer1.png").write_bytes(tiny_png())
    (adir / "summary.json").write_text(json.dumps({
        "inputs": {"digest": "0" * 64, "run_ids": ["a" * 16]},
        "figures": ["activations-layer1.png"],
        "answer": "activations: conv2 separates pullovers from coats better (probe 0.91 vs 0.84).",
        "activations": {
            "classes": ["Pullover", "Coat"],
            "layer1": {"mean_activation": {"pullover": 0.2134, "coat": 0.2311, "noise": 0.4102},
                       "dead_fraction": 0.125, "runs": [{"seed": 0, "probe": 0.84}]},
            "note": "<i>generated</i> by the ex4 analysis",
            "answer": "not repeated in the table",
        },
    }, indent=1, sort_keys=True))
    return recs


def _perf_row(variant: str, usual: list[float], engine: list[float]) -> dict[str, Any]:
    ratios = [e / u for e, u in zip(engine, usual, strict=True)]
    spread = {"median": sorted(ratios)[1], "min": min(ratios), "max": max(ratios)}
    return {"variant": variant, "batch_size": 128, "usual_loop_examples_per_s": sorted(usual)[1],
            "engine_plain_examples_per_s": sorted(engine)[1],
            "engine_examples_per_s": sorted(engine)[1], "plain_engine_vs_usual": spread,
            "engine_vs_usual": spread, "packed_members": None,
            "packed_aggregate_examples_per_s": None, "packed_vs_usual": None,
            "fallback": None, "packed_note": None,
            "inference_examples_per_s": {"1": 2000.0, "128": 30000.0, "4096": 15000.0}}


def write_perf_fixture(results: Path) -> None:
    """Two perf records of one CPU (the report shows the later) and an old-schema one of a
    GPU (a ratio as one float, no rounds)."""
    d = results / "perf"
    d.mkdir(parents=True, exist_ok=True)
    env = {"device_name": "Test CPU", "torch": "2.14.1", "threads": 2, "git_commit": "c" * 40}
    for ended, usual in (("2026-01-01T00:00:00+00:00", [1000.0, 1100.0, 1200.0]),
                         ("2026-01-02T00:00:00+00:00", [3000.0, 3300.0, 3600.0])):
        rec = {"kind": "perf", "device": "cpu", "workers": 2, "steps": 200, "rounds": 3,
               "levers": {}, "env": {**env, "ended": ended},
               "rows": [_perf_row("lenet_d2l", usual, [9000.0, 9600.0, 9900.0])]}
        (d / f"perf-cpu-{ended[:10]}.json").write_text(json.dumps(rec))
    old = {"kind": "perf", "device": "cuda", "workers": 4, "steps": 60,
           "levers": {"compile": True}, "env": {**env, "device_name": "Test GPU",
                                                 "ended": "2025-12-01T00:00:00+00:00"},
           "rows": [{"variant": "lenet_d2l", "batch_size": 128,
                     "usual_loop_examples_per_s": 50000.0, "engine_examples_per_s": 1.5e6,
                     "engine_plain_examples_per_s": 1.0e6, "engine_vs_usual": 30.0,
                     "plain_engine_vs_usual": 20.0, "packed_members": 5,
                     "packed_aggregate_examples_per_s": 2.0e6, "packed_vs_usual": 40.0,
                     "fallback": "torch.compile failed (X); ran eagerly",
                     "inference_examples_per_s": {"1": 5000.0}}]}
    (d / "perf-cuda-old.json").write_text(json.dumps(old))
    (d / "perf-cuda-broken.json").write_text("{not json")


EVIL = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Rendered:
    results: Path
    md: Path
    html: Path
    seconds: float


@contextmanager
def evil_description() -> Iterator[None]:
    """Fixed variant descriptions, so the golden file does not follow the registry's prose;
    `mlp`'s ends in a script tag, which both formats must show as text."""
    import dataclasses

    from variants import registry

    with pytest.MonkeyPatch.context() as mp:
        for name, spec in sorted(registry._REGISTRY.items()):
            desc = f"Fixture description of {name}." + (f" {EVIL}" if name == "mlp" else "")
            mp.setitem(registry._REGISTRY, name, dataclasses.replace(spec, description=desc))
        yield


def render_fixture(root: Path, data_root: Path) -> Rendered:
    """Write the fixed records under root/results and render the report there, timed."""
    from report.render import render_report

    results = root / "results"
    write_fixture(results)
    with evil_description():
        t0 = time.perf_counter()
        md, html = render_report(results, data_root=data_root)
        seconds = time.perf_counter() - t0
    return Rendered(results, md, html, seconds)


def synth(variant: str, seed: int, acc: Any, *, suite: str = "variants",
          profile: str = "reference", dataset: str | None = None, epochs: int | None = None,
          subset: int | None = None, device: str = "cpu", group: str = "zoo",
          factor: str | None = None, value: Any = None, overrides: dict[str, Any] | None = None,
          history: list[float] | None = None) -> dict[str, Any]:
    """A minimal record, as the report reads it (no real run id, no training).

    The config follows the variant's recipe in the registry unless `epochs` or `subset` cut it;
    `acc` "chance" is a run whose every prediction is one class; `history` gives the per-epoch
    test accuracy (default: one entry per epoch ending at `acc`).
    """
    import hashlib

    from variants import get_spec

    rec = get_spec(variant).recipe
    n_epochs = epochs or rec.num_epochs
    cm = _collapsed() if acc == "chance" else _confusion(acc)
    a = 0.1 if acc == "chance" else float(acc)
    hist = history or [a - 0.01 * (n_epochs - 1 - e) for e in range(n_epochs)]
    ident = json.dumps([suite, profile, variant, dataset, seed, device, epochs, subset, group,
                        value, overrides], sort_keys=True, default=str)
    r: dict[str, Any] = {
        "run_id": hashlib.sha256(ident.encode()).hexdigest()[:16], "suite": suite,
        "profile": profile, "group": group, "question": f"What does {group} change?",
        "factor": factor, "factor_value": value, "overrides": overrides or {},
        "variant": variant, "dataset": dataset or rec.dataset, "seed": seed,
        "config": {"variant": variant, "seed": seed, "num_epochs": n_epochs,
                   "batch_size": rec.batch_size, "optimizer": rec.optimizer, "lr": rec.lr,
                   "train_subset": subset, "test_subset": None, "device": device},
        "status": "ok", "error": None,
        "metrics": {"test_acc": a, "top1_error": 1 - a, "top3_error": (1 - a) / 8,
                    "top5_error": (1 - a) / 30, "confusion": cm, "n_test": 10000,
                    "per_class_acc": [row[i] / 1000 for i, row in enumerate(cm)],
                    "params_trainable": 60000, "flops_per_example": 800_000},
        "history": [{"epoch": e + 1, "test_acc": v, "train_loss": 1.0 / (e + 1)}
                    for e, v in enumerate(hist)],
        "timing": {"train_examples_per_s": 5000.0 + seed, "wall_seconds": 10.0},
        "env": {"ended": (T0 + timedelta(minutes=seed)).isoformat(timespec="seconds"),
                "device": device, "device_name": device.upper()},
    }
    return parse_record(r, suite, profile)
