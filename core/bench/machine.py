"""The machine a benchmark ran on: peak memory, threads, the git commit, a description.

Peak memory is the extra RSS on CPU (sampled every 2 ms) or the extra allocated CUDA memory on GPU.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import torch


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Extra memory a block needed: on CUDA max_memory_allocated during the block minus the memory
    allocated when it started; on CPU the peak resident set size (sampled from /proc/self/statm
    every ``interval`` seconds in a thread) minus the RSS when it started. Where /proc is missing,
    the increase of ru_maxrss (0 unless the block set a new process-wide peak)."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss_bytes()
        if self._base is None:
            import resource

            self._ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return self
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = _rss_bytes()
            if value is not None and value > self._peak:
                self._peak = value
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            extra = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._base is None:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024
            extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._ru) * scale
        else:
            self._stop.set()
            self._thread.join()
            last = _rss_bytes() or 0
            extra = max(self._peak, last) - self._base
        self.peak_mb = max(extra, 0) / 2 ** 20


def choose_threads() -> int:
    """Torch threads for the run: $UNLEARN_BENCH_THREADS, else $OMP_NUM_THREADS, else the cores not
    already busy (cpu count minus the 1-minute load average, at least 1): on a shared machine
    fewer threads avoid the stalls of threads waiting for each other."""
    for var in ("UNLEARN_BENCH_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):
        busy = 0.0
    return max(1, min(cores, int(round(cores - busy))))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


def _git_dirty() -> bool | None:
    """True when tracked files under core/ differ from the commit (the results may not match it)."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "core")
    return None if status is None else bool(status)


def machine_info(device: torch.device, threads: int) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "device": str(device), "torch_threads": threads}
    try:
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import zennit
        import sklearn

        info["zennit"] = getattr(zennit, "__version__", "?")
        info["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    return info
