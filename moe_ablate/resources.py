"""Will it fit? A rough memory estimate for one run, checked before anything is built or written, so that
``--vocab-size 1000000000`` or ``--num-experts 100000`` is one line saying what does not fit instead of an
allocator's abort.

The estimate: parameters (counted on the meta device, nothing allocated) x 16 bytes (fp32 weights and
gradients, two optimizer moments), plus activations of one micro-batch: about 34 floats per token per
layer per ``d_model`` (attention and MLP intermediates kept for backward, Korthikanti et al. 2022) and the
logits with their gradient (2 x vocab floats per token). It is deliberately a lower bound: a run that fails
it cannot fit; one that passes may still run out, and is then recorded as ``oom``.
"""

from __future__ import annotations

import os

from .config import ExperimentConfig
from .errors import UserError

BYTES_PER_PARAM = 16
ACTIVATION_FLOATS_PER_TOKEN_LAYER = 34


def estimate(cfg: ExperimentConfig) -> dict[str, int]:
    import torch

    from .models import build_model

    model_cfg = cfg.model
    if cfg.data.tokenizer == "bpe":  # before the data is prepared, its vocabulary is at most this
        model_cfg = type(model_cfg)(**{**model_cfg.__dict__, "vocab_size": cfg.data.vocab_size})
    try:
        with torch.device("meta"):
            params = build_model(model_cfg).param_counts()["total"]
    except (RuntimeError, TypeError, OverflowError) as e:  # a tensor size torch cannot even index
        raise UserError(f"the model is too large to build (d_model {model_cfg.d_model:,}, d_ff {model_cfg.d_ff:,}, "
                        f"{model_cfg.num_experts:,} experts, {model_cfg.n_layers:,} layers): "
                        f"{str(e).splitlines()[0][:120]}") from None
    t, m = cfg.train, model_cfg
    tokens = t.batch_size * t.seq_len
    activations = 4 * tokens * (ACTIVATION_FLOATS_PER_TOKEN_LAYER * m.d_model * m.n_layers + 2 * m.vocab_size)
    return {"params": params, "state_bytes": params * BYTES_PER_PARAM, "activation_bytes": activations,
            "total_bytes": params * BYTES_PER_PARAM + activations}


def available_bytes(device: str) -> int | None:
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(cfg: ExperimentConfig, device: str, what: str = "this run") -> None:
    """One line naming what does not fit, or nothing."""
    e = estimate(cfg)
    have = available_bytes(device)
    if have is not None and e["total_bytes"] > have:
        gib = 2 ** 30
        m = cfg.model
        raise UserError(
            f"{what} does not fit on {device}: it needs at least {e['total_bytes'] / gib:,.1f} GiB "
            f"({e['params']:,} parameters: {e['state_bytes'] / gib:,.1f} GiB with gradients and optimizer state; "
            f"activations of batch {cfg.train.batch_size} x seq_len {cfg.train.seq_len}: "
            f"{e['activation_bytes'] / gib:,.1f} GiB) and {have / gib:,.1f} GiB is free (d_model {m.d_model}, "
            f"{m.n_layers} layers, {m.num_experts} experts, vocabulary "
            f"{cfg.data.vocab_size if cfg.data.tokenizer == 'bpe' else m.vocab_size})")
