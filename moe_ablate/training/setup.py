"""Everything a run is built from, made once before the first step: device, precision, the model
(re-initialised from the run's seed), Muon + AdamW, schedules, loss scaler, the fixed validation batches."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ExperimentConfig, validate
from ..data import TokenData
from ..models import TransformerLM, build_model
from ..optim import build_optimizers, build_schedulers
from ..utils import resolve_device


@dataclass
class Run:
    """The built pieces of one training run (``prepare``)."""

    cfg: ExperimentConfig
    device: str
    amp_dtype: torch.dtype | None
    model: TransformerLM
    optimizers: list
    schedulers: list
    scaler: torch.amp.GradScaler
    val_batches: list
    params: list  # the trainable parameters, for gradient clipping

    @property
    def lr(self) -> float:
        return self.schedulers[0].get_last_lr()[0]

    @property
    def tokens_per_step(self) -> int:
        t = self.cfg.train
        return t.batch_size * t.seq_len * t.grad_accum


def amp_dtype_for(device: str, amp: str) -> torch.dtype | None:
    """CUDA: bf16 where supported, else fp16 (with GradScaler). CPU: always fp32."""
    if not device.startswith("cuda") or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare(cfg: ExperimentConfig, data: TokenData, model: TransformerLM | None = None) -> Run:
    """Build a run. ``model`` may be one built earlier for the same architecture: it is re-initialised here,
    which saves rebuilding (and on CUDA recompiling) it for every experiment of a study."""
    cfg = copy.deepcopy(cfg)
    cfg.model.vocab_size = data.vocab_size
    validate(cfg)
    t = cfg.train
    device = resolve_device(t.device)
    amp_dtype = amp_dtype_for(device, t.amp)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    model = _initialised(model or build_model(cfg.model), t.seed, device, compile_it=t.compile)
    optimizers = build_optimizers(model, t.muon_lr, t.adamw_lr_ratio, t.momentum, t.weight_decay, device,
                                  adjust_lr=t.muon_adjust_lr)
    # only fp16 needs loss scaling; disabled, the scaler passes every call straight through
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=amp_dtype == torch.float16)
    val_batches = data.val_batches(t.eval_batch_size or t.batch_size, t.eval_seq_len or t.seq_len,
                                   t.eval_batches, device)
    return Run(cfg, device, amp_dtype, model, optimizers, build_schedulers(optimizers, t), scaler, val_batches,
               [p for p in model.parameters() if p.requires_grad])


def _initialised(model: TransformerLM, seed: int, device: str, compile_it: bool) -> TransformerLM:
    # reseed right before initialising, so a reused model and a freshly built one (whose
    # constructors consumed random numbers) start from identical weights
    seed_everything(seed)
    model.init_weights()
    model.zero_grad(set_to_none=True)  # a reused model may hold gradients from a failed step
    model.to(device).train()
    if compile_it and device.startswith("cuda") and getattr(model, "_compiled_call_impl", None) is None:
        # compile in place (every call of the module, model.loss included, runs compiled); a model
        # reused across a study's experiments is compiled once, since re-initialising keeps the graph
        model.compile()
    return model
