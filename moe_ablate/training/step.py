"""One optimizer step: micro-batches under autocast with gradient accumulation, unscale, clip, Muon + AdamW,
schedules, and the model's own after-step update (the aux-loss-free router bias)."""

from __future__ import annotations

import torch

from ..data import TokenData
from .evaluate import autocast_context
from .metrics import TrainMetrics
from .setup import Run


def optimizer_step(run: Run, data: TokenData, step: int, metrics: TrainMetrics) -> None:
    t, model, scaler = run.cfg.train, run.model, run.scaler
    for micro in range(t.grad_accum):
        x, y = data.train_batch(t.seed, step, micro, t.batch_size, t.seq_len, run.device)
        with autocast_context(run.device, run.amp_dtype):
            loss, ce, logits = model.loss(x, y)
        scaler.scale(loss / t.grad_accum).backward()
        metrics.add(ce)
    metrics.last_batch(logits, y)
    for o in run.optimizers:
        scaler.unscale_(o)
    if t.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.params, t.grad_clip)
    for o in run.optimizers:
        scaler.step(o)
        o.zero_grad(set_to_none=True)
    scaler.update()
    for s in run.schedulers:
        s.step()
    model.after_optimizer_step()
