"""`lenet-bench perf`: the usual DataLoader training loop against the engine, in one run.

(a) the usual loop: torchvision dataset + ToTensor (+ the variant's pad/resize/normalize),
    DataLoader(shuffle=True) at the recipe's batch size, one model at a time — as d2l and the
    tutorials do; (b) the engine: the dataset resident on the device as one tensor, batches by
    index (bench.engine.train_epoch, the real hot path), as a default run trains; (c) the same
    engine with the levers given by --set; (d) the engine with K seeds packed. Same recipe math
    in all (batch size, optimizer, lr, loss). R interleaved rounds, ratios per round. Inference
    examples/s at batch 1, 128 and 4096. Writes a JSON record under results/perf/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench import device as dev
from bench.config import resolve_config
from bench.engine import (
    WARMUP_STEPS,
    SingleLearner,
    build_model,
    make_optimizer,
    set_determinism,
    train_epoch,
)
from bench.env import environment
from bench.errors import UsageError
from bench.fsio import atomic_write
from bench.metrics import inference_throughput
from bench.resident import device_data
from variants import LOSSES

DEFAULT_VARIANTS = "lenet_d2l,lenet5,mlp"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("perf", help="training examples/s: usual DataLoader loop vs the engine")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, metavar="PATTERN")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved repeats; ratios are reported as median (min–max)")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="seeds packed in (c); default 5 on CUDA, 3 on the CPU; 1 = skip")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the usual loop (default: d2l's 4, capped by CPUs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="levers for the engine, e.g. channels_last=true compile=true")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="results/perf", metavar="DIR")


def usual_loop_examples_per_s(cfg: Any, root: Path, steps: int, workers: int) -> float:
    """d2l-style loop: PIL → ToTensor per image in a DataLoader, batch moved to the device.

    Runs under PyTorch's defaults (no deterministic algorithms), as the tutorials do."""
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    t = cfg.transform
    tf: list[Any] = [T.ToTensor()]
    if t.get("geometry") == "pad":
        p = (int(t["size"]) - 28) // 2
        tf.append(T.Pad(p))
    elif t.get("geometry") == "resize":
        tf.append(T.Resize((int(t["size"]), int(t["size"])), antialias=False))
    if t.get("mean") is not None:
        tf.append(T.Normalize((t["mean"],), (t["std"],)))
    if t.get("scale") is not None:
        tf.append(T.Lambda(lambda x: x * float(t["scale"]) + float(t["shift"])))
    cls = {"mnist": torchvision.datasets.MNIST,
           "fashion-mnist": torchvision.datasets.FashionMNIST}[cfg.dataset]
    ds = cls(str(root), train=True, download=False, transform=T.Compose(tf))
    device = torch.device(cfg.device)
    dl = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                    pin_memory=dev.pin_memory(device), persistent_workers=workers > 0,
                    generator=torch.Generator().manual_seed(cfg.seed))
    model = build_model(cfg).to(device)
    opt = make_optimizer(cfg, model)
    loss_fn = LOSSES[cfg.loss]
    model.train()
    n, t0 = 0, 0.0
    it = iter(dl)
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            dev.sync(device)
            t0 = time.perf_counter()
        try:
            X, y = next(it)
        except StopIteration:
            it = iter(dl)
            X, y = next(it)
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= WARMUP_STEPS:
            n += y.shape[0]
    dev.sync(device)
    return n / (time.perf_counter() - t0)


def engine_examples_per_s(cfg: Any, root: Path, steps: int) -> tuple[float, str | None]:
    """The engine's own epoch loop over a resident subset of (warm-up + steps) batches.

    Returns (examples/s, fallback note): a lever that cannot run here (torch.compile without a
    compiler) falls back exactly as in a real run, and the record says so."""
    n = (WARMUP_STEPS + steps) * cfg.batch_size
    cfg = dataclasses.replace(cfg, train_subset=n)
    set_determinism(cfg)
    data = device_data(cfg.dataset, "train", cfg.transform, cfg.device, root, n)
    learner = SingleLearner(cfg, data, data)
    timing = train_epoch(learner, 0)
    assert timing.examples_per_s is not None  # steps ≥ 1 timed steps by construction
    return timing.examples_per_s, learner.fallback


def packed_examples_per_s(cfg: Any, root: Path, steps: int, k: int
                          ) -> tuple[float, str | None]:
    """Aggregate examples/s of K seeds packed (bench.packed), over one short epoch, and the
    packed run's fallback note (a lever that could not run), if any."""
    from bench.packed import run_packed

    n = (WARMUP_STEPS + steps) * cfg.batch_size
    cfgs = [dataclasses.replace(cfg, seed=s, train_subset=n, test_subset=1000, num_epochs=1)
            for s in range(k)]
    results = run_packed(cfgs, root, measure_inference=False)
    timing = results[0].timing
    return float(timing["aggregate_train_examples_per_s"]), timing.get("fallback")


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _ratio_cell(r: dict[str, float] | None) -> str:
    if r is None:
        return "–"
    if r["min"] == r["max"]:
        return f"{r['median']:.2f}×"
    return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"


def measure_variant(cfg: Any, plain: Any, root: Path, args: argparse.Namespace, k: int,
                    has_levers: bool) -> dict[str, Any]:
    """R interleaved rounds of usual loop / plain engine / levered engine / packed seeds.

    Ratios are taken within a round (same machine state), then summarized as median and range,
    so one noisy sample on a shared CPU cannot make or break the table. The order alternates
    between rounds so a slow drift (thermal, a neighbour) does not favour one side."""
    from bench.packed import packable

    # Packing cannot apply channels_last (a 4-D format; the packed input is 5-D): the packed
    # column gets every other lever, and the record says which.
    packed_cfg = dataclasses.replace(cfg, channels_last=False)

    kinds = ["usual", "engine_plain"] + (["engine"] if has_levers else [])
    if k > 1 and packable(packed_cfg, build_model(cfg)):
        kinds.append("packed")
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    notes: list[str] = []  # levers that fell back, once each (engine, packed)
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            if kind == "usual":
                eps = usual_loop_examples_per_s(cfg, root, args.steps, args.workers)
            elif kind == "engine_plain":
                eps, _ = engine_examples_per_s(plain, root, args.steps)
            elif kind == "engine":
                eps, note = engine_examples_per_s(cfg, root, args.steps)
                notes += [note] if note and note not in notes else []
            else:
                eps, note = packed_examples_per_s(packed_cfg, root, args.steps, k)
                notes += [f"packed: {note}"] if note and f"packed: {note}" not in notes else []
            samples[kind].append(eps)
    if not has_levers:
        samples["engine"] = samples["engine_plain"]

    def ratio(kind: str) -> dict[str, float] | None:
        if kind not in samples:
            return None
        return _spread([a / b for a, b in zip(samples[kind], samples["usual"], strict=True)])

    return {
        "variant": cfg.variant, "batch_size": cfg.batch_size,
        "samples_examples_per_s": samples,
        "usual_loop_examples_per_s": statistics.median(samples["usual"]),
        "engine_plain_examples_per_s": statistics.median(samples["engine_plain"]),
        "engine_examples_per_s": statistics.median(samples["engine"]),
        "plain_engine_vs_usual": ratio("engine_plain"),
        "engine_vs_usual": ratio("engine"),
        "packed_members": k if "packed" in samples else None,
        "packed_aggregate_examples_per_s": (statistics.median(samples["packed"])
                                            if "packed" in samples else None),
        "packed_vs_usual": ratio("packed"),
        "packed_note": ("channels_last not applied to the packed model (its input is 5-D)"
                        if "packed" in samples and cfg.channels_last else None),
        "fallback": "; ".join(notes) or None,
    }


def cmd_perf(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.config import parse_assignments
    from bench.data import ensure_dataset, resolve_data_root
    from bench.fingerprint import code_block, fingerprints
    from variants import list_variants

    if args.steps < 1:
        raise UsageError(f"--steps must be ≥ 1, got {args.steps}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be ≥ 1, got {args.rounds}")
    device = dev.resolve(args.device)
    names = list_variants(args.variants)
    if not names:
        raise UsageError(f"no variant matches {args.variants!r}; variants: "
                         f"{', '.join(list_variants())}")
    levers = parse_assignments(args.set)
    k = args.pack if args.pack is not None else (5 if dev.is_cuda(device) else 3)
    if k < 1:
        raise UsageError(f"--pack must be ≥ 1, got {k}")
    if args.workers is None:
        args.workers = min(4, os.cpu_count() or 1)
    if args.workers < 0:
        raise UsageError(f"--workers must be ≥ 0, got {args.workers}")
    cfgs = [resolve_config(n, None, 0, levers, device=device) for n in names]
    plain = {n: resolve_config(n, None, 0, {}, device=device) for n in names}
    root = resolve_data_root(args.data_root)
    for ds in sorted({c.dataset for c in cfgs}):
        ensure_dataset(ds, root, log=lambda m: None)
    fingerprints(list(plain.values()), root)  # one probe process names the code of every row
    rows, out_rows = [], []
    for cfg in cfgs:
        print(f"measuring {cfg.variant} ({args.rounds} rounds) …", flush=True)
        row = measure_variant(cfg, plain[cfg.variant], root, args, k, bool(levers))
        test = device_data(cfg.dataset, "test", cfg.transform, device, root, None)
        infer = inference_throughput(build_model(cfg).to(device), test.X, (1, 128, 4096))
        row["inference_examples_per_s"] = infer
        # What was measured, so a report can tell a row of other code or another recipe.
        row["config"] = plain[cfg.variant].to_dict()
        row["code"] = code_block(plain[cfg.variant], root)
        out_rows.append(row)
        packed = row["packed_aggregate_examples_per_s"]
        rows.append([
            cfg.variant, cfg.batch_size, f"{row['usual_loop_examples_per_s']:,.0f}",
            f"{row['engine_plain_examples_per_s']:,.0f}",
            _ratio_cell(row["plain_engine_vs_usual"]),
            f"{row['engine_examples_per_s']:,.0f}" if levers else "=",
            _ratio_cell(row["engine_vs_usual"]) if levers else "=",
            "–" if packed is None else f"{packed:,.0f} (K={k})",
            _ratio_cell(row["packed_vs_usual"]),
            " / ".join(f"{infer[b]:,.0f}" for b in ("1", "128", "4096")),
        ])
    env = environment(device)
    lever_text = ", ".join(f"{a}={str(b).lower() if isinstance(b, bool) else b}"
                           for a, b in levers.items()) or "none"
    print(tabulate(rows, headers=[
        "variant", "batch", "usual loop ex/s", "engine ex/s", "engine ÷ usual",
        "+ levers ex/s", "+ levers ÷ usual", "packed ex/s", "packed ÷ usual",
        "inference ex/s @1/128/4096"], tablefmt="simple", disable_numparse=True))
    print(f"device: {env['device_name']} ({device}); usual loop: torchvision + ToTensor + "
          f"DataLoader with {args.workers} workers; medians of {args.rounds} interleaved "
          f"rounds (ratio range in brackets), each {args.steps} timed steps after "
          f"{WARMUP_STEPS} warm-up; levers: {lever_text}")
    for row in out_rows:
        if row["fallback"]:
            print(f"note: {row['variant']}: {row['fallback']}")
        if row["packed_note"]:
            print(f"note: {row['variant']}: packed column: {row['packed_note']}")
    record = {
        "kind": "perf",
        "device": device,
        "workers": args.workers,
        "steps": args.steps,
        "rounds": args.rounds,
        "levers": levers,
        "rows": out_rows,
        "note": "training examples/s over timed steps after warm-up, device synchronized; "
                "ratios are per round (usual loop and engine measured back to back), reported "
                "as median/min/max over rounds; CPU figures are only comparable as ratios",
        "env": {**env, "ended": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    out_dir = Path(args.out)
    slug = "".join(c if c.isalnum() else "-" for c in env["device_name"]).strip("-")[:40]
    commit = (env.get("git_commit") or "nogit")[:10]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out_dir / f"perf-{device.split(':')[0]}-{slug}-{commit}-{stamp}.json"
    atomic_write(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0
