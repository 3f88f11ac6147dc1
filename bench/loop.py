"""The one epoch driver: a run's epochs, timing, divergence, compile fallback and result.

A `Learner` is K ≥ 1 members trained in lockstep on the same batches of their own data
orders: the plain engine is K = 1 (bench.engine.SingleLearner), seed packing is K vmapped
models (bench.packed.PackedLearner). Everything around the optimizer steps lives here once,
so the two paths cannot drift: warm-up and timing, the learning-rate schedule, divergence
checks, evaluation each epoch, a compiled step that fails on first use, and assembling one
typed `RunResult` per member.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from bench import device as dev
from bench.config import RunConfig
from bench.metrics import LABELS_MD5, flops_per_example, inference_throughput, labels_md5
from bench.resident import DeviceData
from variants import count_total_params, count_trainable_params

WARMUP_STEPS = 5  # first steps of epoch 1 are trained but not timed (allocator, caches)
DIVERGENCE_CHECK_EVERY = 50  # steps between NaN/inf checks (each check syncs the device)
LENET5_PASSES = ((2, 1.0), (3, 0.4), (3, 0.2), (4, 0.1))  # then ×0.02: 5e-4, 2e-4, 1e-4, 5e-5


@dataclass
class RunResult:
    """What one run produced (a record's body): the runner adds identity and environment."""

    status: str  # "ok" | "diverged" | "failed"
    error: str | None = None
    diverged_epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    # What it trained on and what its final metrics scored, {"train"|"test": {"n",
    # "labels_md5"}}: bench.contracts checks them against the recipe's splits. Kept out of
    # `metrics`, which the code fingerprint hashes.
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpochEvent:
    epoch: int
    num_epochs: int
    row: dict[str, Any]


@dataclass
class EpochTiming:
    timed_examples: int  # per member
    seconds: float

    @property
    def examples_per_s(self) -> float | None:
        """None when nothing was timed (an epoch no longer than the warm-up)."""
        if self.timed_examples <= 0 or self.seconds <= 0:
            return None
        return self.timed_examples / self.seconds


class Learner(Protocol):
    cfg: RunConfig
    members: int
    train: DeviceData  # the training set its batches are drawn from
    test: DeviceData  # the test set, on the training device
    compiled: bool  # the step runs a compiled function (it may fail on first use)
    fallback: str | None  # why the compiled step was given up, if it was

    def set_lr(self, lr: float) -> None:
        """The learning rate of every member's optimizer from now on."""

    def begin_epoch(self) -> int:
        """Draw each member's data order; returns the number of steps in the epoch."""

    def step(self, i: int) -> int:
        """One optimizer step on batch i of every member; returns the batch size."""

    def fall_back(self, e: BaseException) -> None:
        """Use the eager step from now on (the compiled one raised before changing weights)."""

    def nonfinite(self) -> list[bool]:
        """Per member: has this epoch's training loss become NaN or inf (syncs)."""

    def end_epoch(self) -> list[tuple[float, float]]:
        """Per member (train loss, train accuracy) of the epoch."""

    def evaluate(self, *, full: bool) -> list[dict[str, Any]]:
        """Per member test metrics (loss and accuracy; top-k, confusion too when full)."""

    def models(self) -> list[nn.Module]:
        """Per member the eager model holding its current weights."""


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Learning rate for a 0-based epoch under the config's schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "exponential":
        return cfg.lr * cfg.gamma**epoch
    if cfg.schedule == "lenet5_passes":
        start = 0
        for length, mult in LENET5_PASSES:
            if epoch < start + length:
                return cfg.lr * mult
            start += length
        return cfg.lr * 0.02
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def throughput_note(packed: int | None = None) -> str:
    """What the training examples/s figure includes (stored beside it in every record)."""
    note = (
        "median over epochs of training examples/s over the timed steps only (batch gather, "
        "forward, loss, backward, optimizer step); excludes evaluation and the first "
        f"{WARMUP_STEPS} warm-up steps; device synchronized before reading the clock"
    )
    if packed:
        note += f"; {packed} seeds trained packed in one vmapped model: per-run figure = " \
                "aggregate / members"
    return note


def train_epoch(learner: Learner, epoch: int) -> EpochTiming:
    """One pass over every member's shuffled training set; the first WARMUP_STEPS steps of
    the run are trained but not timed. A compiled step that raises on the run's very first
    step (before any weight moved) is redone eagerly, for the rest of the run."""
    device = learner.cfg.device
    timer = dev.Timer(device)
    skip = WARMUP_STEPS if epoch == 0 else 0
    steps = learner.begin_epoch()
    timed = 0
    if not skip:
        dev.sync(device)
        timer.start()
    for i in range(steps):
        if i == skip and skip:
            dev.sync(device)
            timer.start()
        if epoch == 0 and i == 0 and learner.compiled:
            try:
                size = learner.step(i)
            except Exception as e:  # noqa: BLE001 — no compiler, an unsupported op: go eager
                learner.fall_back(e)
                size = learner.step(i)
        else:
            size = learner.step(i)
        if i >= skip:
            timed += size
        if (i + 1) % DIVERGENCE_CHECK_EVERY == 0 and all(learner.nonfinite()):
            break  # every member diverged: the rest of the epoch is wasted work
    seconds = timer.stop() if steps > skip else 0.0
    return EpochTiming(timed, seconds)


def drive(
    learner: Learner,
    *,
    weights_files: list[Path] | None = None,
    on_epoch: Callable[[int, EpochEvent], None] | None = None,
    measure_inference: bool = True,
    save: Callable[[nn.Module, Path], None] | None = None,
    t_start: float | None = None,
) -> list[RunResult]:
    """Train every epoch of the schedule and return one result per member, in order."""
    cfg, k_members = learner.cfg, learner.members
    t_start = time.perf_counter() if t_start is None else t_start
    peak = dev.PeakMemory(cfg.device)
    histories: list[list[dict[str, Any]]] = [[] for _ in range(k_members)]
    diverged: list[tuple[int, str] | None] = [None] * k_members
    timings: list[EpochTiming] = []
    for epoch in range(cfg.num_epochs):
        lr = lr_at(cfg, epoch)
        learner.set_lr(lr)
        timings.append(train_epoch(learner, epoch))
        train_stats = learner.end_epoch()
        live = [k for k in range(k_members) if diverged[k] is None]
        for k in live:
            if not math.isfinite(train_stats[k][0]):
                diverged[k] = (epoch + 1, f"training loss became {train_stats[k][0]} "
                                          f"in epoch {epoch + 1}")
        if all(d is not None for d in diverged):
            break
        evals = learner.evaluate(full=False)
        for k in range(k_members):
            if diverged[k] is not None:
                continue
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_stats[k][0],
                   "train_acc": train_stats[k][1], "test_loss": evals[k]["test_loss"],
                   "test_acc": evals[k]["test_acc"]}
            if not math.isfinite(evals[k]["test_loss"]):
                diverged[k] = (epoch + 1, "test loss not finite")
                histories[k].append({**row, "test_loss": None})
                continue
            histories[k].append(row)
            if on_epoch is not None:
                on_epoch(k, EpochEvent(epoch + 1, cfg.num_epochs, row))
        if all(d is not None for d in diverged):
            break
    return _results(learner, histories, diverged, timings, peak, t_start,
                    weights_files=weights_files, measure_inference=measure_inference,
                    save=save)


def _results(learner: Learner, histories: list[list[dict[str, Any]]],
             diverged: list[tuple[int, str] | None], timings: list[EpochTiming],
             peak: dev.PeakMemory, t_start: float, *, weights_files: list[Path] | None,
             measure_inference: bool, save: Callable[[nn.Module, Path], None] | None,
             ) -> list[RunResult]:
    """One RunResult per member: parameters, FLOPs, final test metrics, timing, weights."""
    k_members, test_X = learner.members, learner.test.X
    finals = learner.evaluate(full=True) if any(d is None for d in diverged) else []
    rates = [t.examples_per_s for t in timings]
    per_epoch = []
    for epoch, (t, eps) in enumerate(zip(timings, rates, strict=True)):
        row: dict[str, Any] = {"epoch": epoch + 1, "train_examples_per_s": eps,
                               "train_seconds": t.seconds}
        if k_members > 1:
            row["aggregate_examples_per_s"] = None if eps is None else eps * k_members
        per_epoch.append(row)
    timed = [r for r in rates if r is not None]
    median = statistics.median(timed) if timed else None
    peak_bytes = peak.read()
    trained_on = {"n": len(learner.train), "labels_md5": labels_md5(learner.train.y)}
    wall = time.perf_counter() - t_start
    out = []
    for k, model in enumerate(learner.models()):
        div = diverged[k]  # (epoch, why) or None
        ok = div is None
        metrics: dict[str, Any] = {
            "params_trainable": count_trainable_params(model),
            "params_total": count_total_params(model),
            "flops_per_example": flops_per_example(model, test_X[:1]),
        }
        data: dict[str, Any] = {"train": trained_on}
        if ok:
            final = dict(finals[k])
            data["test"] = {"n": final.get("n_test"), "labels_md5": final.pop(LABELS_MD5, None)}
            metrics.update(final)
        timing: dict[str, Any] = {
            "train_examples_per_s": median,
            "train_examples_per_s_note": throughput_note(k_members if k_members > 1 else None),
            "per_epoch": per_epoch,
        }
        if k_members > 1:
            timing["packed_members"] = k_members
            timing["aggregate_train_examples_per_s"] = (
                None if median is None else median * k_members)
        if measure_inference and ok:
            timing["inference_examples_per_s"] = inference_throughput(model, test_X, (1, 1024))
        if peak_bytes is not None:
            timing["peak_gpu_memory_bytes"] = peak_bytes
        timing["wall_seconds"] = wall / k_members
        if k_members > 1:
            timing["packed_wall_seconds"] = wall
        if learner.fallback:
            timing["fallback"] = learner.fallback
        if weights_files is not None and save is not None:
            save(model, weights_files[k])
        out.append(RunResult(
            status="ok" if ok else "diverged",
            error=None if div is None else div[1],
            diverged_epoch=None if div is None else div[0],
            metrics=metrics, history=histories[k], timing=timing, data=data,
        ))
    return out
