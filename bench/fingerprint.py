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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig, config_key
from bench.datasets import DataError

PROBE_EPOCHS = 3  # enough to cross a per-epoch schedule step (exponential, LeNet-5's passes)
PROBE_BATCHES = 4  # training batches per probe epoch, at the run's own batch size
PROBE_TEST = 256  # test images evaluated after each probe epoch
PROBE_SEED = 0  # one probe per configuration: the seed only picks RNG streams
DIGITS = 6  # significant digits kept of every number before hashing
VERSION = 1  # bump when the probe itself changes (every record then reads as stale)

_CACHE: dict[str, str] = {}


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

    key = config_key(cfg.to_dict(), without=("seed", "device"))  # one probe serves them all
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


def record_fingerprint(record: dict[str, Any]) -> str | None:
    """The fingerprint a record was made with (None: made before fingerprints existed)."""
    code = record.get("code")
    return code.get("fingerprint") if isinstance(code, dict) else None


def code_block(cfg: RunConfig, data_root: Path) -> dict[str, Any]:
    """What a record stores under `code`."""
    return {
        "fingerprint": fingerprint(cfg, data_root),
        "probe": (f"{PROBE_EPOCHS} epochs × {PROBE_BATCHES} batches, {PROBE_TEST} test images, "
                  f"seed {PROBE_SEED}, CPU, 1 thread; numbers to {DIGITS} significant digits; "
                  f"probe v{VERSION}"),
    }

