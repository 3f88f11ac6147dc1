"""Which code made a record: a behavioural fingerprint of how a configuration trains.

A run id hashes the config, not the code, so an edit to a variant's forward, a loss, the data
pipeline or the evaluation would otherwise hand back old records as if the new code had made
them. A digest of source files would do the opposite wrong: a pure refactor (a renamed private
function, a moved module) would invalidate every record. So the fingerprint is what the code
*does*: the configuration is trained for a few real steps through the real engine (its data
transform, batch order, init, model, loss, optimizer, schedule and evaluation), on the CPU with
one thread so that it is bit-stable, and the resulting numbers are hashed. Code that trains
the same gives the same fingerprint; code that trains differently almost surely does not.

What it cannot see: a change that only shows after the probe's budget (e.g. in epoch 20 of a
schedule; the whole schedule's learning rates are hashed to cover the usual case), changes to
speed levers it turns off (compile, packing, channels_last: tested to match the plain path),
and changes that move numbers by less than its rounding (6 significant digits).

Portable across x86 CPUs: the math libraries pick vectorised kernels per CPU (ATen's AVX-512,
AVX2 or scalar loops; oneDNN's convolutions; MKL's GEMM), and a probe whose training amplifies
rounding (Kaiming init of lenet_tweakable: the 4th digit after 12 steps) hashes differently
under each. So the probe always runs under one fixed kernel set, `PROBE_ENV` (AVX2 in all
three libraries, which every x86-64 CPU since 2013 runs), in one child process per call for
all the configurations it is asked about (the libraries read these settings at start-up). A
record made on an AVX-512 CPU is then recognised on an AVX2-only one and the reverse. A CPU
that cannot run AVX2 kernels cannot check a fingerprint at all, and says so (`UNCHECKABLE`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig, config_from_record, config_key
from bench.datasets import DataError

PROBE_EPOCHS = 3  # enough to cross a per-epoch schedule step (exponential, LeNet-5's passes)
PROBE_BATCHES = 4  # training batches per probe epoch, at the run's own batch size
PROBE_TEST = 256  # test images evaluated after each probe epoch
PROBE_SEED = 0  # one probe per configuration: the seed only picks RNG streams
DIGITS = 6  # significant digits kept of every number before hashing
# Bump when the probe itself changes: a record made by another probe version cannot be
# compared (it says so, and is retrained). v2: the fixed portable kernel set below.
VERSION = 2

# The kernel set every probe runs under: ATen's dispatch, oneDNN's ISA ceiling and MKL's
# conditional numerical reproducibility branch, all AVX2; one OpenMP thread.
PROBE_KERNELS = "AVX2"
PROBE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
CHILD_TIMEOUT_S = 1800

# What `judge` says of a record.
THIS = "this code"  # same fingerprint under the same probe: reused
OTHER = "other code"  # the fingerprint differs under the same probe and kernels: code changed
NO_FINGERPRINT = "unknown code"  # made before records named their code
OLD_PROBE = "older probe"  # fingerprinted by another probe version: cannot be compared
UNCHECKABLE = "not checkable here"  # this CPU cannot run the probe's kernels

_CACHE: dict[str, str | None] = {}  # probe key → fingerprint (None: this CPU cannot probe)


class FingerprintError(RuntimeError):
    """The probe's child process failed for a reason other than the code under test."""


def probe_config(cfg: RunConfig) -> RunConfig:
    """The short CPU run whose numbers stand for `cfg`'s code; speed levers off."""
    n_train = PROBE_BATCHES * cfg.batch_size
    if cfg.train_subset is not None:
        n_train = min(n_train, cfg.train_subset)
    return dataclasses.replace(
        cfg, seed=PROBE_SEED, num_epochs=min(cfg.num_epochs, PROBE_EPOCHS),
        train_subset=n_train, test_subset=PROBE_TEST, device="cpu", pack_seeds=False,
        channels_last=False, compile=False, cuda_graphs=False,
    )


def _probe_key(cfg: RunConfig) -> str:
    """What the probe depends on: the config less seed and device (one probe serves them all)."""
    return config_key(cfg.to_dict(), without=("seed", "device"))


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.{DIGITS}g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def kernel_set() -> str:
    """The CPU kernel set ATen runs in this process (AVX512, AVX2, DEFAULT, …)."""
    return torch.backends.cpu.get_cpu_capability()


def in_probe_env() -> bool:
    """Does this process already run the probe's kernels (the child does; so may a caller
    started under PROBE_ENV, which then needs no child)?"""
    return (kernel_set() == PROBE_KERNELS
            and all(os.environ.get(k) == v for k, v in PROBE_ENV.items()))


def _probe(cfg: RunConfig, data_root: Path) -> str:
    """Train `cfg`'s probe here, with one thread, and hash what it did."""
    from bench.engine import lr_at, run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_training(probe_config(cfg), data_root, measure_inference=False)
        observed: Any = {
            "status": result.status, "history": result.history, "metrics": result.metrics,
        }
    except DataError:
        raise  # no data to probe with says nothing about the code
    except Exception as e:  # noqa: BLE001 — code that cannot train is a behaviour too
        observed = {"error": type(e).__name__}
    finally:
        torch.set_num_threads(threads)
    observed["schedule"] = [lr_at(cfg, e) for e in range(cfg.num_epochs)]
    observed["version"] = VERSION
    blob = json.dumps(_rounded(observed), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _from_child(cfgs: list[RunConfig], data_root: Path) -> list[str | None]:
    """Fingerprints of `cfgs` from one child process started under PROBE_ENV."""
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **PROBE_ENV, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    ask = {"data_root": str(data_root), "kernels": PROBE_KERNELS,
           "configs": [c.to_dict() for c in cfgs]}
    try:
        out = subprocess.run([sys.executable, "-m", "bench.fingerprint"], env=env,
                             input=json.dumps(ask), capture_output=True, text=True,
                             timeout=CHILD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        raise FingerprintError(f"the fingerprint probe could not run: {e}") from None
    try:
        got = json.loads(out.stdout)
    except ValueError:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise FingerprintError(f"the fingerprint probe failed (exit {out.returncode}): "
                               f"{last}") from None
    if "data_error" in got:
        raise DataError(got["data_error"])
    if got["kernels"] != PROBE_KERNELS:
        return [None] * len(cfgs)
    return list(got["fingerprints"])


def fingerprints(cfgs: Sequence[RunConfig], data_root: Path) -> list[str | None]:
    """16 hex digits per configuration naming how this checkout trains it, under the probe's
    kernel set (None where this CPU cannot run it); one child process for all that are not
    cached yet, so a call costs one start-up however many configurations it asks about."""
    keys = [_probe_key(c) for c in cfgs]
    need = {k: c for k, c in zip(keys, cfgs, strict=True) if k not in _CACHE}
    if need:
        if in_probe_env():
            got: list[str | None] = [_probe(c, data_root) for c in need.values()]
        else:
            got = _from_child(list(need.values()), data_root)
        _CACHE.update(zip(need, got, strict=True))
    return [_CACHE[k] for k in keys]


def fingerprint(cfg: RunConfig, data_root: Path) -> str | None:
    """One configuration's fingerprint (see `fingerprints`)."""
    return fingerprints([cfg], data_root)[0]


def record_fingerprint(record: Mapping[str, Any]) -> str | None:
    """The fingerprint a record was made with (None: made before fingerprints existed)."""
    code = record.get("code")
    return code.get("fingerprint") if isinstance(code, dict) else None


def record_probe_version(record: Mapping[str, Any]) -> int:
    """The probe version that fingerprinted a record (1: before records named it)."""
    code = record.get("code")
    return int(code.get("probe_version", 1)) if isinstance(code, dict) else 1


def judge(items: Sequence[tuple[RunConfig, Mapping[str, Any]]], data_root: Path) -> list[str]:
    """For each (config, record): THIS (made by code that trains `config` as this checkout
    does), OTHER (the code changed: another fingerprint under the same probe and kernels),
    NO_FINGERPRINT, OLD_PROBE or UNCHECKABLE (this CPU cannot run the probe's kernels)."""
    out = [NO_FINGERPRINT] * len(items)
    probe: list[int] = []
    for i, (_, rec) in enumerate(items):
        if record_fingerprint(rec) is None:
            continue
        if record_probe_version(rec) != VERSION:
            out[i] = OLD_PROBE
            continue
        probe.append(i)
    now = fingerprints([items[i][0] for i in probe], data_root)
    for i, fp in zip(probe, now, strict=True):
        if fp is None:
            out[i] = UNCHECKABLE
        else:
            out[i] = THIS if fp == record_fingerprint(items[i][1]) else OTHER
    return out


def made_by_this_code(items: Sequence[tuple[RunConfig, Mapping[str, Any]]],
                      data_root: Path) -> list[bool]:
    """For each (config, record): was it made by code that trains `config` as this one does?"""
    return [v == THIS for v in judge(items, data_root)]


def why_not(verdict: str) -> str:
    """The words a user reads for a record that is not reused, by `judge`'s verdict."""
    return {
        OTHER: "made by code that trains differently",
        NO_FINGERPRINT: "made before records named their code",
        OLD_PROBE: f"fingerprinted by an older probe than v{VERSION}, which cannot be compared",
        UNCHECKABLE: (f"not checkable on this CPU (the fingerprint probe runs "
                       f"{PROBE_KERNELS} kernels; this CPU runs {kernel_set()})"),
    }[verdict]


def code_block(cfg: RunConfig, data_root: Path) -> dict[str, Any]:
    """What a record stores under `code`."""
    return {
        "fingerprint": fingerprint(cfg, data_root),
        "kernels": PROBE_KERNELS,
        "probe_version": VERSION,
        "probe": (f"{PROBE_EPOCHS} epochs × {PROBE_BATCHES} batches, {PROBE_TEST} test images, "
                  f"seed {PROBE_SEED}, CPU, 1 thread, {PROBE_KERNELS} kernels (ATen, oneDNN, "
                  f"MKL); numbers to {DIGITS} significant digits; probe v{VERSION}"),
    }


def _child() -> None:
    """`python -m bench.fingerprint`: JSON {data_root, kernels, configs} on stdin → the
    fingerprints, when this process runs the kernels asked for (the parent sets PROBE_ENV),
    or the kernels it runs instead, or the data problem that stopped it."""
    ask = json.load(sys.stdin)
    root = Path(ask["data_root"])
    cfgs = [config_from_record(c) for c in ask["configs"]]
    ks = kernel_set()
    try:
        fps = [_probe(c, root) for c in cfgs] if ks == ask["kernels"] else []
    except DataError as e:
        json.dump({"data_error": str(e)}, sys.stdout)
        return
    json.dump({"kernels": ks, "fingerprints": fps}, sys.stdout)


if __name__ == "__main__":
    _child()
