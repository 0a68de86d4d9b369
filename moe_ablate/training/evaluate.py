"""Validation metrics: token-weighted cross-entropy, next-token accuracy, perplexity."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F


def autocast_context(device: str, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: str, amp_dtype: torch.dtype | None = None) -> dict:
    """Average over every target token of the fixed validation batches (not a mean of batch means)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in batches:
        with autocast_context(device, amp_dtype):
            logits, _ = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        correct += (logits.argmax(-1) == y).sum()
        count += y.numel()
    model.train(was_training)
    loss = loss_sum.item() / count
    return {
        "loss": loss,
        "accuracy": correct.item() / count,
        "perplexity": math.exp(loss) if loss < 700 else float("inf"),
        "tokens": count,
    }
