"""The CUDA path: run on a machine with a GPU (`make gpu-check`); elsewhere each `cuda` test
skips with one line saying so.

CUDA is not bit-exact across different kernels: a packed (vmapped) step and a one-model step
are different cuDNN/cuBLAS calls, and so are a GPU step and a CPU step, so those comparisons
use the tolerances stated below. The same kernels run twice with `deterministic=true` must
give the same bits, and the determinism test checks that.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from bench.config import RunConfig, resolve_config
from bench.engine import run_training
from bench.packed import run_packed
from tests.conftest import REPO, read_jsonl
from variants import get_spec, list_variants

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = (f"no CUDA device: torch {torch.__version__} sees no GPU (these tests run on a GPU "
           "machine: make gpu-check)")

# Packed (vmapped) against one-by-one, on CUDA, after STEPS steps: relative on the losses,
# absolute on accuracy (10 of the 1000 test images).
PACKED_TOL = {"train_loss": 1e-3, "test_loss": 1e-3, "test_acc": 0.01}
# The same run on CUDA and on the CPU (different kernels, rounding amplified by training).
CPU_TOL = {"train_loss": 1e-2, "test_acc": 0.02}
# A compiled or CUDA-graphed step against the eager one (Inductor fuses and reorders).
COMPILE_TOL = {"train_loss": 1e-3, "test_loss": 1e-3}
FALLBACK_REL = 1e-6  # an eager run that fell back against an eager run (the same kernels)
STEPS = 8  # training steps per short run (the first 5 are warm-up, the rest are timed)

F = TypeVar("F", bound=Callable[..., Any])


def on_cuda(fn: F) -> F:
    """Mark a test `cuda` and skip it, with one line, where torch sees no GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)(fn))


def short(variant: str, seed: int, device: str = "cuda", **levers: Any) -> RunConfig:
    """`variant` at its recipe, one epoch of STEPS batches, 1000 test images, on `device`."""
    batch = get_spec(variant).recipe.batch_size
    ov = {"train_subset": STEPS * batch, "test_subset": 1000, "num_epochs": 1, **levers}
    return resolve_config(variant, None, seed, ov, device=device)


def _body(cfg: RunConfig, root: Path, **kw: Any) -> dict[str, Any]:
    return run_training(cfg, root, **kw).to_dict()


def _h(body: dict[str, Any]) -> dict[str, Any]:
    return body["history"][0]


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two history rows of the same kernels: equal accuracy, losses to FALLBACK_REL."""
    for key in ("train_loss", "test_loss"):
        assert a[key] == pytest.approx(b[key], rel=FALLBACK_REL), key
    assert a["test_acc"] == b["test_acc"] and a["train_acc"] == b["train_acc"]


def _outcome(body: dict[str, Any]) -> dict[str, Any]:
    """A run's record body without its timing (the only part allowed to differ on repeat)."""
    return {k: v for k, v in body.items() if k != "timing"}


# --- every default variant ------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("variant", list_variants(default_only=True))
def test_every_default_variant_trains_on_cuda(variant: str, data_root: Path) -> None:
    """One epoch on CUDA: it trains, is timed by CUDA events, reports its peak memory and
    inference speed, and agrees with the same run on the CPU within CPU_TOL."""
    gpu = _body(short(variant, 0), data_root)
    assert gpu["status"] == "ok", gpu["error"]
    timing = gpu["timing"]
    assert timing["train_examples_per_s"] > 0 and timing["peak_gpu_memory_bytes"] > 0
    assert all(v > 0 for v in timing["inference_examples_per_s"].values())
    cpu = _body(short(variant, 0, "cpu"), data_root, measure_inference=False)
    assert math.isfinite(_h(gpu)["train_loss"])
    assert _h(gpu)["train_loss"] == pytest.approx(_h(cpu)["train_loss"],
                                                  rel=CPU_TOL["train_loss"])
    assert abs(_h(gpu)["test_acc"] - _h(cpu)["test_acc"]) <= CPU_TOL["test_acc"]
    assert "peak_gpu_memory_bytes" not in cpu["timing"]


# --- packing --------------------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("variant", ["lenet_d2l", "lenet5", "cnn2_fidle"])
def test_packed_matches_one_by_one_on_cuda(variant: str, data_root: Path) -> None:
    """Packing is the default on CUDA; packed members match their one-by-one runs."""
    cfgs = [short(variant, s) for s in (0, 1)]
    assert all(c.pack_seeds for c in cfgs)  # the CUDA default
    packed = [r.to_dict() for r in run_packed(cfgs, data_root, measure_inference=False)]
    for cfg, body in zip(cfgs, packed, strict=True):
        alone = _body(cfg, data_root, measure_inference=False)
        assert body["status"] == alone["status"] == "ok", (body["error"], alone["error"])
        hp, ha = _h(body), _h(alone)
        for key in ("train_loss", "test_loss"):
            assert hp[key] == pytest.approx(ha[key], rel=PACKED_TOL[key]), key
        assert abs(hp["test_acc"] - ha["test_acc"]) <= PACKED_TOL["test_acc"]
        assert body["timing"]["packed_members"] == 2
        assert body["timing"]["peak_gpu_memory_bytes"] > 0
    assert _h(packed[0]) != _h(packed[1])  # own init and data order each


# --- determinism ----------------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("variant", ["lenet5", "cnn2_fidle", "lenet5_bn", "lenet_tweakable"])
def test_same_config_twice_gives_the_same_record_on_cuda(
    variant: str, data_root: Path, tmp_path: Path
) -> None:
    """deterministic=true: two runs of one config give the same record bar timing, and the same
    weights byte for byte; packed groups repeat too. Ops that have no deterministic CUDA kernel
    (they only warn on CUDA) are named in the failure message."""
    cfg = short(variant, 0)
    assert cfg.deterministic
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = [tmp_path / f"{i}.safetensors" for i in range(2)]
        a, b = (_body(cfg, data_root, weights_file=f, measure_inference=False) for f in files)
        packs = []
        if variant != "lenet5_bn":  # BatchNorm does not pack
            cfgs = [short(variant, s) for s in (0, 1)]
            packs = [[_outcome(r.to_dict()) for r in run_packed(cfgs, data_root,
                                                                  measure_inference=False)]
                     for _ in range(2)]
    nondet = sorted({str(w.message).splitlines()[0] for w in caught
                     if "deterministic" in str(w.message)})
    assert a["status"] == "ok", a["error"]
    assert _outcome(a) == _outcome(b), f"records differ; ops without a deterministic kernel: " \
                                       f"{nondet}"
    assert files[0].read_bytes() == files[1].read_bytes(), nondet
    if packs:
        assert packs[0] == packs[1], f"packed records differ; nondeterministic ops: {nondet}"


# --- speed levers ---------------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("lever", ["compile", "cuda_graphs"])
def test_compile_and_cuda_graphs_train_like_eager(lever: str, data_root: Path) -> None:
    """torch.compile and CUDA graphs (compile mode reduce-overhead) really run on a GPU (no
    fallback), and train as the eager step does within COMPILE_TOL."""
    eager = _body(short("lenet_d2l", 0), data_root, measure_inference=False)
    fast = _body(short("lenet_d2l", 0, **{lever: True}), data_root, measure_inference=False)
    assert fast["status"] == "ok", fast["error"]
    assert "fallback" not in fast["timing"], fast["timing"]["fallback"]
    for key in COMPILE_TOL:
        assert _h(fast)[key] == pytest.approx(_h(eager)[key], rel=COMPILE_TOL[key]), key


@on_cuda
def test_packed_cuda_graphs_train_like_packed_eager(data_root: Path) -> None:
    """`lenet-bench perf`'s packed column with CUDA graphs: the vmapped step graphed."""
    def packed(**levers: Any) -> list[dict[str, Any]]:
        cfgs = [short("lenet_d2l", s, **levers) for s in (0, 1)]
        return [r.to_dict() for r in run_packed(cfgs, data_root, measure_inference=False)]

    for e, g in zip(packed(), packed(cuda_graphs=True), strict=True):
        assert g["status"] == "ok", g["error"]
        assert "fallback" not in g["timing"], g["timing"]["fallback"]
        for key in COMPILE_TOL:
            assert _h(g)[key] == pytest.approx(_h(e)[key], rel=COMPILE_TOL[key]), key


@on_cuda
def test_cuda_graphs_that_fail_fall_back_and_say_so(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compiled step that fails on first use (no compiler, an unsupported op) is redone
    eagerly, one model or packed: the eager run's numbers (to FALLBACK_REL: the same kernels;
    bits are the determinism test's business), and the record says why."""
    eager = _body(short("mlp", 0), data_root, measure_inference=False)
    eager_packed = run_packed([short("mlp", s) for s in (0, 1)], data_root,
                              measure_inference=False)

    def broken(fn: object, **_: object) -> object:
        def fail(*_a: object, **_k: object) -> None:
            raise RuntimeError("no Triton here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    note = "torch.compile failed (RuntimeError: no Triton here); ran eagerly"
    fell = _body(short("mlp", 0, cuda_graphs=True), data_root, measure_inference=False)
    assert fell["timing"]["fallback"] == note
    _same_numbers(_h(fell), _h(eager))
    fell_packed = run_packed([short("mlp", s, cuda_graphs=True) for s in (0, 1)], data_root,
                             measure_inference=False)
    for e, f in zip(eager_packed, fell_packed, strict=True):
        assert f.timing["fallback"] == note
        _same_numbers(f.history[0], e.history[0])


# --- timing and memory ----------------------------------------------------------------------

@on_cuda
def test_cuda_event_timer_times_device_work() -> None:
    """The Timer waits for the queued kernels (CUDA events): the host returns from launching
    long before the GPU is done, yet the timed seconds cover the device's work."""
    from bench import device as dev

    a = torch.randn(4096, 4096, device="cuda")
    a @ a  # cuBLAS initialised outside the timing
    dev.sync("cuda")
    timer = dev.Timer("cuda")
    t0 = time.perf_counter()
    timer.start()
    for _ in range(20):
        a @ a
    launched = time.perf_counter() - t0
    seconds = timer.stop()
    wall = time.perf_counter() - t0
    assert launched < seconds <= wall + 1e-3, (launched, seconds, wall)
    assert seconds >= 0.5 * wall, (seconds, wall)


@on_cuda
def test_peak_memory_is_reset_per_run(data_root: Path) -> None:
    """A run's peak_gpu_memory_bytes is its own: a bigger peak reached before it started (an
    earlier run, here a 2 GiB tensor) does not leak into it."""
    big = 2 * 2**30
    block = torch.empty(big, dtype=torch.uint8, device="cuda")
    del block
    assert torch.cuda.max_memory_allocated() >= big
    peaks = [_body(short("mlp", s), data_root, measure_inference=False)["timing"]
             ["peak_gpu_memory_bytes"] for s in (0, 1)]
    assert all(0 < p < big for p in peaks), peaks
    assert peaks[1] <= 1.5 * peaks[0], peaks  # the second does not carry the first's peak


# --- the command line -----------------------------------------------------------------------

SMOKE_CLI = ["run", "--suite", "variants", "--profile", "smoke", "--quiet", "--seeds", "2",
             "--set", "train_subset=2048", "--set", "test_subset=500"]


def _check_gpu_records(recs: list[dict[str, Any]], packed_variants: set[str]) -> None:
    """Every record trained on this GPU, says so in its env, and packed where it should."""
    name = torch.cuda.get_device_name(0)
    for r in recs:
        assert r["status"] == "ok", r.get("error")
        env = r["env"]
        assert env["device"] == "cuda" and env["device_name"] == name, env
        assert env["cuda"] == torch.version.cuda and env["cudnn"] is not None, env
        assert r["config"]["device"] == "cuda" and r["timing"]["peak_gpu_memory_bytes"] > 0
        if r["variant"] in packed_variants:
            assert r["packed_seeds"] == [0, 1] and r["timing"]["packed_members"] == 2, r
        else:
            assert "packed_seeds" not in r, r


@on_cuda
def test_cli_run_on_cuda_packs_by_default_and_names_the_gpu(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    assert main([*SMOKE_CLI, "--results", str(tmp_path), "--variants", "mlp,lenet5_bn"]) == 0
    assert "device cuda" in capsys.readouterr().out  # --device auto chose the GPU
    recs = read_jsonl(tmp_path / "variants/smoke/runs.jsonl")
    assert sorted((r["variant"], r["seed"]) for r in recs) == [
        ("lenet5_bn", 0), ("lenet5_bn", 1), ("mlp", 0), ("mlp", 1)]
    _check_gpu_records(recs, packed_variants={"mlp"})  # BatchNorm trains one by one


def _make_bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`make bench` with `data` taken as done and lenet-bench echoed: the profile choice is
    the Makefile's own shell, run for real, and nothing trains."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "data", "bench", f"PY={sys.executable}",
         "LB=echo lenet-bench", f"RESULTS={tmp_path}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120)


@on_cuda
def test_make_bench_chooses_full_on_cuda(tmp_path: Path) -> None:
    out = _make_bench(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "CUDA available: running profile full" in out.stdout
    assert f"lenet-bench run --suite variants --profile full --results {tmp_path}" in out.stdout
    assert "--suite d2l --profile full" in out.stdout
    forced = _make_bench(tmp_path, "PROFILE=quick")
    assert "--suite variants --profile quick" in forced.stdout and "CUDA" not in forced.stdout


def test_make_bench_chooses_quick_without_cuda(tmp_path: Path) -> None:
    if HAS_CUDA:
        pytest.skip("this machine has CUDA (test_make_bench_chooses_full_on_cuda covers it)")
    out = _make_bench(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device: running profile quick on the CPU" in out.stdout
    assert f"lenet-bench run --suite variants --profile quick --results {tmp_path}" in out.stdout


@on_cuda
def test_ray_with_a_quarter_gpu_per_run(data_root: Path, tmp_path: Path) -> None:
    """`--executor ray --gpus-per-run 0.25`: packed groups share the GPU as Ray tasks, and
    their records match the local executor's within PACKED_TOL (another process, same
    kernels)."""
    ray = pytest.importorskip(
        "ray", reason="ray is not installed (pip install '.[ray]'; its wheel is too big to "
                      "travel in the GPU pack)")
    from bench.cli import main

    args = [*SMOKE_CLI, "--variants", "mlp,cnn2_fidle"]
    assert main([*args, "--results", str(tmp_path / "local")]) == 0
    try:
        assert main([*args, "--results", str(tmp_path / "ray"), "--executor", "ray",
                     "--gpus-per-run", "0.25"]) == 0
    finally:
        ray.shutdown()
    local = {r["run_id"]: r for r in read_jsonl(tmp_path / "local/variants/smoke/runs.jsonl")}
    recs = read_jsonl(tmp_path / "ray/variants/smoke/runs.jsonl")
    assert {r["run_id"] for r in recs} == set(local) and len(recs) == 4
    _check_gpu_records(recs, packed_variants={"mlp", "cnn2_fidle"})
    for r in recs:
        assert r["env"]["executor"] == "ray" and r["env"]["ray_node_id"]
        h, hl = _h(r), _h(local[r["run_id"]])
        assert h["train_loss"] == pytest.approx(hl["train_loss"], rel=PACKED_TOL["train_loss"])
        assert abs(h["test_acc"] - hl["test_acc"]) <= PACKED_TOL["test_acc"]


# --- make gpu-check on a machine without CUDA -----------------------------------------------

def test_gpu_check_refuses_without_cuda_in_one_line(tmp_path: Path) -> None:
    """On the CPU `make gpu-check` (and its script) stops at once: one line, exit 2, nothing
    installed or written."""
    if HAS_CUDA:
        pytest.skip("this machine has CUDA: make gpu-check runs the check here")
    out_dir = tmp_path / "out"
    env = {**os.environ, "OUT": str(out_dir)}
    calls = [[sys.executable, "scripts/gpu_check.py", str(out_dir)]]
    if shutil.which("make") is not None:
        calls += [["make", "--no-print-directory", "gpu-check", f"GPU_PY={sys.executable}"]]
    for cmd in calls:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=env)
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "no CUDA device: " in lines[0], (cmd, p.stderr)
        assert p.stdout == "" and not out_dir.exists(), cmd
