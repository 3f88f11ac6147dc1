"""bench.device, the one module that knows CPU from CUDA: everything that runs without a GPU."""

from __future__ import annotations

import os
import time

import pytest
import torch

from bench import device as dev
from bench.errors import UsageError


def test_cublas_workspace_is_set_on_import() -> None:
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")


def test_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve("auto") == "cpu" and dev.resolve("cpu") == "cpu"
    with pytest.raises(UsageError, match="torch sees no CUDA device"):
        dev.resolve("cuda")
    with pytest.raises(UsageError, match="torch sees no CUDA device"):
        dev.resolve("cuda:1")
    with pytest.raises(UsageError, match=r"unknown device 'tpu'; valid: auto, cpu, cuda"):
        dev.resolve("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve("auto") == "cuda" and dev.resolve("cuda:1") == "cuda:1"


def test_is_cuda_and_defaults() -> None:
    assert dev.is_cuda("cuda") and dev.is_cuda("cuda:0") and dev.is_cuda(torch.device("cuda"))
    assert not dev.is_cuda("cpu")
    assert dev.packs_by_default("cuda") and not dev.packs_by_default("cpu")
    assert dev.pin_memory("cuda:0") and not dev.pin_memory("cpu")


def test_cpu_timer_measures_wall_time() -> None:
    timer = dev.Timer("cpu")
    timer.start()
    time.sleep(0.05)
    elapsed = timer.stop()
    assert 0.05 <= elapsed < 1.0


def test_peak_memory_resets_before_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU there is nothing to read; on CUDA the peak is reset when a run starts, so a
    run never reports an earlier run's peak."""
    assert dev.PeakMemory("cpu").read() is None
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: calls.append("read") or 7)
    peak = dev.PeakMemory("cuda")
    assert calls == ["reset"]
    assert peak.read() == 7 and calls == ["reset", "read"]


def test_set_determinism() -> None:
    try:
        dev.set_determinism(True, "cpu")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        dev.set_determinism(True, "cuda")  # an op without a deterministic kernel only warns
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        dev.set_determinism(True, "cpu")


def test_names_and_versions_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.name("cpu", "Some CPU") == "Some CPU"
    assert dev.name("cuda", "Some CPU") == "Some CPU"
    assert dev.versions() == {"cuda": None, "cudnn": None}


def test_sync_on_the_cpu_is_a_no_op() -> None:
    dev.sync("cpu")
    dev.sync(torch.device("cpu"))
