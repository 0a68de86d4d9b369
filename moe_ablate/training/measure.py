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


def seconds_per_step(cfg, warmup: int = 2, steps: int = 3) -> float:
    """Seconds per optimizer step of ``cfg`` (model, Muon + AdamW, batch, precision, device) on random tokens:
    the speed a study's ETA is computed from before any data is prepared. ``cfg.model.vocab_size`` must be set."""
    import copy

    import numpy as np

    from ..data.tokens import TokenData
    from .setup import prepare
    from .step import optimizer_step

    cfg = copy.deepcopy(cfg)
    cfg.train.steps = max(cfg.train.steps, warmup + steps)
    t = cfg.train
    rng = np.random.default_rng(0)
    n = (t.seq_len + 1) * (t.batch_size + 1)
    tokens = rng.integers(0, cfg.model.vocab_size, size=2 * n).astype(np.int64)
    vocab = type("Vocab", (), {"vocab_size": cfg.model.vocab_size})()
    data = TokenData(train=tokens[:n], val=tokens[n:], tokenizer=vocab, provenance={})
    run = prepare(cfg, data)

    class Discard:  # optimizer_step reports its losses to a metrics object; here they are not needed
        def add(self, ce):
            pass

        def last_batch(self, logits, y):
            pass

    sync = torch.cuda.synchronize if run.device.startswith("cuda") else (lambda: None)
    for step in range(warmup):
        optimizer_step(run, data, step, Discard())
    sync()
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        optimizer_step(run, data, step, Discard())
    sync()
    return (time.perf_counter() - t0) / steps
