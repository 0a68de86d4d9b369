"""What a run measures about itself: training time (evaluation excluded by construction) and memory."""

from __future__ import annotations

import contextlib
import resource
import time

import torch


class Timer:
    """Training time only: ``with timer.paused():`` around evaluation, checkpoints and HellaSwag
    keeps them out by construction. ``lap()`` adds the time since the last lap (or pause) and
    returns the running total, which a resumed run starts from."""

    def __init__(self, total: float = 0.0):
        self.total, self._since, self.last_pause = total, time.perf_counter(), 0.0

    def lap(self) -> float:
        now = time.perf_counter()
        self.total += now - self._since
        self._since = now
        return self.total

    @contextlib.contextmanager
    def paused(self):
        self.lap()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._since = time.perf_counter()
            self.last_pause = self._since - start


def memory_gb(device: str) -> float:
    """CUDA: peak allocated since the run began. CPU: current resident set size of this process
    (sampled at log steps; ru_maxrss would be the whole process's lifetime peak, not this run's)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**30
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

