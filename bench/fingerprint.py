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

Bit-stable holds for one CPU kernel set. ATen picks its vectorised kernels (AVX-512, AVX2,
scalar) once per process from the CPU, and a probe whose training amplifies rounding (Kaiming
init of lenet_tweakable: the 4th digit after 12 steps) hashes differently under each. So a
record names the kernel set its probe ran with, and a record that does not match here is
probed again, in a child process, under the kernel set it names (or, for records made before
they named one, under each lesser set this CPU can run): the same code matches there. A
record made with a kernel set this CPU lacks (AVX-512 read on an AVX2 CPU) cannot be checked
and counts as made by other code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
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
VERSION = 1  # bump when the probe itself changes (every record then reads as stale)

# ATen's CPU kernel sets, best first (ATEN_CPU_CAPABILITY takes them in lower case).
KERNEL_SETS = ("AVX512", "AVX2", "DEFAULT")
CHILD_TIMEOUT_S = 600

_CACHE: dict[str, str] = {}
_UNDER: dict[tuple[str, str], str | None] = {}  # (kernel set, config key) → fingerprint


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


def fingerprint(cfg: RunConfig, data_root: Path) -> str:
    """16 hex digits naming how this checkout trains `cfg` (cached per configuration)."""
    from bench.engine import lr_at, run_training

    key = _probe_key(cfg)
    if key in _CACHE:
        return _CACHE[key]
    probe = probe_config(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_training(probe, data_root, measure_inference=False)
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
    _CACHE[key] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return _CACHE[key]


def kernel_set() -> str:
    """The CPU kernel set ATen runs in this process (AVX512, AVX2, DEFAULT, …)."""
    return torch.backends.cpu.get_cpu_capability()


def kernel_sets_to_try(recorded: str | None) -> list[str]:
    """The other kernel sets a record's probe may have run with that this CPU can run too."""
    ours = kernel_set()
    if ours not in KERNEL_SETS:
        return []
    lesser = list(KERNEL_SETS[KERNEL_SETS.index(ours) + 1:])
    if recorded is None:
        return lesser
    return [recorded] if recorded in lesser else []


def fingerprints_under(cfgs: list[RunConfig], kernels: str, data_root: Path) -> list[str | None]:
    """The fingerprints of `cfgs` under ATen kernel set `kernels`, from one child process
    (ATen picks its kernels at start-up). None for each when the child cannot run them."""
    keys = [_probe_key(c) for c in cfgs]
    need = {k: c for k, c in zip(keys, cfgs, strict=True) if (kernels, k) not in _UNDER}
    if need:
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "ATEN_CPU_CAPABILITY": kernels.lower(), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        ask = {"data_root": str(data_root), "configs": [c.to_dict() for c in need.values()]}
        try:
            out = subprocess.run([sys.executable, "-m", "bench.fingerprint"], env=env,
                                 input=json.dumps(ask), capture_output=True, text=True,
                                 timeout=CHILD_TIMEOUT_S, check=True)
            got = json.loads(out.stdout)
            ran = got["kernels"] == kernels
        except (OSError, subprocess.SubprocessError, ValueError, KeyError):
            got, ran = {}, False
        for i, k in enumerate(need):
            _UNDER[(kernels, k)] = got["fingerprints"][i] if ran else None
    return [_UNDER[(kernels, k)] for k in keys]


def made_by_this_code(items: list[tuple[RunConfig, dict[str, Any]]],
                      data_root: Path) -> list[bool]:
    """For each (config, record): was the record made by code that trains `config` as this
    checkout does? Same fingerprint here, or under the kernel set the record's probe used."""
    out = [False] * len(items)
    retry: dict[str, list[int]] = {}  # kernel set → items to probe under it
    for i, (cfg, rec) in enumerate(items):
        made = record_fingerprint(rec)
        if made is None:
            continue
        if made == fingerprint(cfg, data_root):
            out[i] = True
            continue
        for kernels in kernel_sets_to_try(record_kernel_set(rec)):
            retry.setdefault(kernels, []).append(i)
    for kernels, idx in retry.items():
        todo = [i for i in idx if not out[i]]
        if not todo:
            continue
        got = fingerprints_under([items[i][0] for i in todo], kernels, data_root)
        for i, fp in zip(todo, got, strict=True):
            out[i] = fp is not None and fp == record_fingerprint(items[i][1])
    return out


def record_kernel_set(record: dict[str, Any]) -> str | None:
    """The ATen kernel set a record's probe ran with (None: made before records named it)."""
    code = record.get("code")
    return code.get("kernels") if isinstance(code, dict) else None


def record_fingerprint(record: dict[str, Any]) -> str | None:
    """The fingerprint a record was made with (None: made before fingerprints existed)."""
    code = record.get("code")
    return code.get("fingerprint") if isinstance(code, dict) else None


def code_block(cfg: RunConfig, data_root: Path) -> dict[str, Any]:
    """What a record stores under `code`."""
    return {
        "fingerprint": fingerprint(cfg, data_root),
        "kernels": kernel_set(),
        "probe": (f"{PROBE_EPOCHS} epochs × {PROBE_BATCHES} batches, {PROBE_TEST} test images, "
                  f"seed {PROBE_SEED}, CPU, 1 thread; numbers to {DIGITS} significant digits; "
                  f"probe v{VERSION}"),
    }


def _child() -> None:
    """`python -m bench.fingerprint`: JSON {data_root, configs} on stdin → the fingerprints
    under this process's kernel set (the parent sets ATEN_CPU_CAPABILITY)."""
    ask = json.load(sys.stdin)
    root = Path(ask["data_root"])
    fps = [fingerprint(config_from_record(c), root) for c in ask["configs"]]
    json.dump({"kernels": kernel_set(), "fingerprints": fps}, sys.stdout)


if __name__ == "__main__":
    _child()
