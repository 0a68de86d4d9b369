"""How fast a configuration trains, measured before any data exists: a study's ``--dry-run`` ETA."""

from __future__ import annotations

import time

import torch


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
