"""`lenet-bench perf`: the usual DataLoader training loop against the engine, in one run.

(a) the usual loop: torchvision dataset + ToTensor (+ the variant's pad/resize/normalize),
    DataLoader(shuffle=True) at the recipe's batch size, one model at a time — as d2l and the
    tutorials do; (b) the engine: the dataset resident on the device as one tensor, batches by
    index (bench.engine.train_epoch, the real hot path); (c) the engine with K seeds packed.
Same recipe math in all three (batch size, optimizer, lr, loss). Inference examples/s at
batch 1, 128 and 4096. Writes a JSON record under results/perf/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.config import resolve_config
from bench.engine import (
    WARMUP_STEPS,
    build_model,
    make_optimizer,
    prepare_model,
    resolve_device,
    train_epoch,
)
from bench.env import environment
from bench.errors import UsageError
from bench.losses import LOSSES
from bench.metrics import inference_throughput
from bench.resident import DeviceData, device_data

DEFAULT_VARIANTS = "lenet_d2l,lenet5,mlp"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("perf", help="training examples/s: usual DataLoader loop vs the engine")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, metavar="PATTERN")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="seeds packed in (c); default 5 on CUDA, 3 on the CPU; 1 = skip")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the usual loop (default: d2l's 4, capped by CPUs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="levers for the engine, e.g. channels_last=true compile=true")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="results/perf", metavar="DIR")


def usual_loop_examples_per_s(cfg: Any, root: Path, steps: int, workers: int) -> float:
    """d2l-style loop: PIL → ToTensor per image in a DataLoader, batch moved to the device."""
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
                    pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                    generator=torch.Generator().manual_seed(cfg.seed))
    model = build_model(cfg).to(device)
    opt = make_optimizer(cfg, model)
    loss_fn = LOSSES[cfg.loss]
    model.train()
    n, t0 = 0, 0.0
    it = iter(dl)
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
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
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t0)


def engine_examples_per_s(cfg: Any, root: Path, steps: int) -> float:
    """The engine's own epoch loop over a resident subset of (warm-up + steps) batches."""
    n = (WARMUP_STEPS + steps) * cfg.batch_size
    cfg = dataclasses.replace(cfg, train_subset=n)
    data = device_data(cfg.dataset, "train", cfg.transform, cfg.device, root, n)
    model = build_model(cfg).to(cfg.device)
    opt = make_optimizer(cfg, model)
    trained, _ = prepare_model(cfg, model)
    if cfg.channels_last:
        data = DeviceData(data.X.contiguous(memory_format=torch.channels_last), data.y)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = train_epoch(trained, opt, LOSSES[cfg.loss], data, cfg, gen, 0)
    return out["timed_examples"] / out["timed_seconds"]


def packed_examples_per_s(cfg: Any, root: Path, steps: int, k: int) -> float:
    """Aggregate examples/s of K seeds packed (bench.packed), over one short epoch."""
    from bench.packed import run_packed

    n = (WARMUP_STEPS + steps) * cfg.batch_size
    cfgs = [dataclasses.replace(cfg, seed=s, train_subset=n, test_subset=1000, num_epochs=1)
            for s in range(k)]
    bodies = run_packed(cfgs, root, measure_inference=False)
    return float(bodies[0]["timing"]["aggregate_train_examples_per_s"])


def cmd_perf(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.config import parse_assignments
    from bench.data import ensure_dataset, resolve_data_root
    from bench.packed import can_pack
    from variants import list_variants

    if args.steps < 1:
        raise UsageError(f"--steps must be ≥ 1, got {args.steps}")
    device = resolve_device(args.device)
    names = list_variants(args.variants)
    if not names:
        raise UsageError(f"no variant matches {args.variants!r}; variants: "
                         f"{', '.join(list_variants())}")
    levers = parse_assignments(args.set)
    k = args.pack if args.pack is not None else (5 if device.startswith("cuda") else 3)
    if k < 1:
        raise UsageError(f"--pack must be ≥ 1, got {k}")
    import os

    workers = args.workers if args.workers is not None else min(4, os.cpu_count() or 1)
    cfgs = [resolve_config(n, None, 0, levers, device=device) for n in names]
    plain = {n: resolve_config(n, None, 0, {}, device=device) for n in names}
    root = resolve_data_root(args.data_root)
    for ds in sorted({c.dataset for c in cfgs}):
        ensure_dataset(ds, root, log=lambda m: None)
    rows, out_rows = [], []
    for cfg in cfgs:
        print(f"measuring {cfg.variant} …", flush=True)
        usual = usual_loop_examples_per_s(cfg, root, args.steps, workers)
        engine = engine_examples_per_s(cfg, root, args.steps)
        # With levers, the plain engine is measured in the same run, so the ratio is fair.
        engine_plain = engine_examples_per_s(plain[cfg.variant], root, args.steps) \
            if levers else engine
        packed = None
        if k > 1 and can_pack(build_model(cfg)):
            packed = packed_examples_per_s(cfg, root, args.steps, k)
        test = device_data(cfg.dataset, "test", cfg.transform, device, root, None)
        model = build_model(cfg).to(device)
        infer = inference_throughput(model, test.X, (1, 128, 4096))
        out_rows.append({
            "variant": cfg.variant, "batch_size": cfg.batch_size,
            "usual_loop_examples_per_s": usual, "engine_examples_per_s": engine,
            "engine_vs_usual": engine / usual,
            "engine_plain_examples_per_s": engine_plain,
            "plain_engine_vs_usual": engine_plain / usual,
            "packed_members": k if packed else None,
            "packed_aggregate_examples_per_s": packed,
            "packed_vs_usual": packed / usual if packed else None,
            "inference_examples_per_s": infer,
        })
        rows.append([cfg.variant, cfg.batch_size, f"{usual:,.0f}",
                     f"{engine_plain:,.0f} ({engine_plain / usual:.2f}×)",
                     f"{engine:,.0f}", f"{engine / usual:.2f}×",
                     "–" if not packed else f"{packed:,.0f} (K={k})",
                     "–" if not packed else f"{packed / usual:.2f}×",
                     " / ".join(f"{infer[b]:,.0f}" for b in ("1", "128", "4096"))])
    env = environment(device)
    print(tabulate(rows, headers=["variant", "batch", "usual loop ex/s",
                                  "engine, no levers ex/s (÷ usual)", "engine ex/s",
                                  "engine ÷ usual", "packed aggregate ex/s", "packed ÷ usual",
                                  "inference ex/s @1/128/4096"], tablefmt="simple"))
    print(f"device: {env['device_name']} ({device}); usual loop: DataLoader with {workers} "
          f"workers; {args.steps} timed steps after {WARMUP_STEPS} warm-up; levers: "
          f"{levers or 'none'}")
    record = {
        "kind": "perf",
        "device": device,
        "workers": workers,
        "steps": args.steps,
        "levers": levers,
        "rows": out_rows,
        "note": "training examples/s over timed steps after warm-up, device synchronized; "
                "CPU figures are only comparable as ratios within one run",
        "env": {**env, "ended": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in env["device_name"]).strip("-")[:40]
    commit = (env.get("git_commit") or "nogit")[:10]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out_dir / f"perf-{device.split(':')[0]}-{slug}-{commit}-{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0
