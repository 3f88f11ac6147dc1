"""Everything that differs between the CPU and a CUDA GPU, in one place.

The rest of the project asks this module, never `device.type == "cuda"`: which device to use,
how to wait for it, how to time it, how much memory a run peaked at, how to make it
deterministic, and what its name is. Everything but the CUDA branches runs (and is tested) on
a machine without a GPU; the CUDA branches are each one or two calls into torch.cuda.
"""

from __future__ import annotations

import os
import time

# cuBLAS needs this before CUDA initializes to have deterministic GEMMs; set once, here, on
# import (the CLI and the engine import this module before touching CUDA).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

from bench.errors import UsageError  # noqa: E402

CUDA = "cuda"
CHOICES = ("auto", "cpu", CUDA)
VERSION_KEYS = ("cuda", "cudnn")  # what `versions()` reports, the record's env keys


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == CUDA


def resolve(name: str) -> str:
    """'auto' → 'cuda' when a GPU is available, else 'cpu'; a bad name, or 'cuda' without a
    GPU, is a one-line usage error."""
    if name not in CHOICES and not name.startswith(f"{CUDA}:"):
        raise UsageError(f"unknown device {name!r}; valid: {', '.join(CHOICES)}")
    if name == "auto":
        return CUDA if torch.cuda.is_available() else "cpu"
    if is_cuda(name) and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for, but torch sees no CUDA device; use cpu")
    return name


def sync(device: torch.device | str) -> None:
    """Wait until the device has finished its queued work (a no-op on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


class Timer:
    """Seconds of device work between start() and stop(): CUDA events on a GPU (after a
    synchronize), `perf_counter` on the CPU, where work is done when the call returns."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = is_cuda(self.device)
        self._t0 = 0.0
        self._events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None

    def start(self) -> None:
        if self.cuda:
            self._events = (torch.cuda.Event(enable_timing=True),
                            torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self._events is not None:
            self._events[1].record()
            sync(self.device)
            return self._events[0].elapsed_time(self._events[1]) / 1000.0
        return time.perf_counter() - self._t0


class PeakMemory:
    """Peak device memory of one run: reset when created, read at the end (None on the CPU,
    where torch does not track it)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        if is_cuda(self.device):
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> int | None:
        if is_cuda(self.device):
            return int(torch.cuda.max_memory_allocated(self.device))
        return None


def set_determinism(deterministic: bool, device: torch.device | str) -> None:
    """Deterministic kernels wherever PyTorch has them. On CUDA an op without one warns
    instead of killing the run (the CPU path is strict, and tested bit for bit)."""
    torch.use_deterministic_algorithms(deterministic, warn_only=is_cuda(device))
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic


def packs_by_default(device: str) -> bool:
    """Seed packing fills a GPU; on the CPU it gains little and would tie a record's last bits
    to how many seeds were trained together, so there it is opt-in."""
    return is_cuda(device)


def pin_memory(device: torch.device | str) -> bool:
    """Whether a DataLoader feeding this device should pin host memory."""
    return is_cuda(device)


def name(device: str, cpu_model: str) -> str:
    """The device's marketing name (the GPU's, or the CPU model given)."""
    if is_cuda(device) and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model


def versions() -> dict[str, object]:
    """CUDA and cuDNN versions where a GPU is usable, else None for both."""
    if not torch.cuda.is_available():
        return dict.fromkeys(VERSION_KEYS)
    return dict(zip(VERSION_KEYS, (torch.version.cuda, torch.backends.cudnn.version()),
                    strict=True))
