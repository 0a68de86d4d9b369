"""The language-model shell every architecture shares: embedding → blocks → RMSNorm → tied head.

An architecture only supplies its blocks. Each block maps ``x -> (x, aux_loss)``; the shell sums
the aux losses, counts parameters (total and active per token) and gathers routing load.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig

DEAD_FRACTION = 0.1  # an expert getting under 10% of its fair share (1/E) of a window's tokens is "dead"


class RoutingLoad(nn.Module):
    """Mixin state for an MoE layer, accumulated on device (no host sync): per-expert token counts over
    the whole run (``load``) and over the window since the last evaluation (``window_load``), and the
    summed router entropy of the window's tokens. Persistent, so a checkpoint carries them and a resumed
    run reports exactly what an uninterrupted one would."""

    def __init__(self, num_experts: int):
        super().__init__()
        self.register_buffer("load", torch.zeros(num_experts))
        self.register_buffer("window_load", torch.zeros(num_experts))
        self.register_buffer("window_entropy", torch.zeros(2))  # (sum of per-token entropy, tokens)

    def record(self, expert_ids: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        """Count tokens per expert; training tokens are added to the run's and the window's load
        (evaluation is not). ``probs`` (tokens x experts): the router's distribution, for its entropy."""
        counts = torch.bincount(expert_ids.reshape(-1), minlength=self.load.numel())
        if self.training:
            c = counts.detach().to(self.load.dtype)
            self.load += c
            self.window_load += c
            if probs is not None:
                p = probs.detach().float()
                ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
                self.window_entropy += torch.stack([ent.sum(), ent.new_tensor(float(ent.numel()))])
        return counts

    def routing_bias(self) -> torch.Tensor | None:
        """The aux-loss-free router's correction bias, where the layer has one."""
        return None

    def take_window(self) -> dict:
        """Routing health of the window since the last call (one host read; call at evaluation):
        MaxVio = max load / mean load - 1 (Wang et al. 2024), dead experts (< DEAD_FRACTION of a fair
        share), mean router entropy normalised by ln E (1 = uniform), the bias norm; then reset."""
        load = self.window_load.float().cpu()
        ent_sum, n = self.window_entropy.float().cpu().tolist()
        E = load.numel()
        frac = load / load.sum().clamp(min=1)
        out = {"maxvio": float(frac.max() * E - 1) if load.sum() > 0 else None,
               "dead": int((frac < DEAD_FRACTION / E).sum()) if load.sum() > 0 else None,
               "entropy": ent_sum / n / math.log(E) if n and E > 1 else None,
               "load_fraction": [round(v, 5) for v in frac.tolist()]}
        bias = self.routing_bias()
        if bias is not None:
            out["bias_norm"] = float(bias.float().norm())
        self.window_load.zero_()
        self.window_entropy.zero_()
        return out


class TransformerLM(nn.Module):
    #: multiply token embeddings by sqrt(d_model) (the seed model does; the HF-style ones do not)
    scale_embeddings = False

    def __init__(self, cfg: ModelConfig, blocks: list[nn.Module]):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied
        self.init_weights()

    # ------------------------------------------------------------------ forward
    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return logits (B, T, V) and the summed auxiliary (load-balancing) loss."""
        x = self.token_embedding(idx)
        if self.scale_embeddings:
            x = x * math.sqrt(self.cfg.d_model)
        x = self.dropout(x)
        aux = x.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x, block_aux = block(x)
            aux = aux + block_aux
        return self.lm_head(self.norm(x)), aux

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss, cross-entropy, logits)."""
        logits, aux = self(idx)
        ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return ce + aux, ce, logits

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re)initialise every weight: N(0, 0.02), residual outputs scaled by 1/sqrt(2·layers).

        Needed for the transformers modules too: standalone they start from ``torch.empty``.
        Called between experiments so a model can be reused instead of rebuilt.
        """
        std = 0.02
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                if name.endswith("bias"):
                    p.zero_()
                else:
                    p.fill_(1.0)  # norm weights
            elif name.endswith(("o_proj.weight", "out_proj.weight", "down_proj", "down_proj.weight", "w2")):
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, std)
        for name, b in self.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.zero_()
        self.reset_routing_load()

    # ------------------------------------------------------------------ reporting
    def moe_layers(self) -> list[RoutingLoad]:
        return [m for m in self.modules() if isinstance(m, RoutingLoad)]

    def reset_routing_load(self) -> None:
        for m in self.moe_layers():
            m.load.zero_()
            m.window_load.zero_()
            m.window_entropy.zero_()

    def routing_window(self) -> list[dict] | None:
        """Per-layer routing health since the last call (see ``RoutingLoad.take_window``)."""
        layers = self.moe_layers()
        return [m.take_window() for m in layers] if layers else None

    def attention_width(self) -> int:
        """d_attn of the compute formula: the width of the query-key and value products per token."""
        return self.cfg.d_model

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token, one documented formula for every model (Kaplan et al. 2020, Table 1):
        forward = 2 N_active + 2 n_layers seq_len d_attn (the matmuls of the active weights, tied head
        included, plus attention scores and values; causal masking not discounted), training = 3 x
        forward. N_active counts a MoE layer's top-k experts only, so MoE settings compare at equal
        active compute (Krajewski et al. 2024: report it beside active and total parameters)."""
        active = self.param_counts()["active"]
        return int(3 * (2 * active + 2 * self.cfg.n_layers * seq_len * self.attention_width()))

    def routing_stats(self) -> dict | None:
        """Per-expert load fraction (summed over layers and per layer) and its coefficient of variation."""
        layers = self.moe_layers()
        if not layers:
            return None
        per_layer = torch.stack([m.load.float().cpu() for m in layers])
        if per_layer.sum() == 0:
            return None

        def summary(load: torch.Tensor) -> dict:
            frac = load / load.sum().clamp(min=1)
            return {"load_fraction": [round(v, 5) for v in frac.tolist()],
                    "cv": float(frac.std(unbiased=False) / frac.mean())}

        total = summary(per_layer.sum(0))
        total["per_layer"] = [summary(row) for row in per_layer]
        return total

    def after_optimizer_step(self) -> None:
        """Hook for state updated outside autograd (the GLM4 router bias). Default: nothing."""

    def param_counts(self) -> dict[str, int]:
        """Total parameters (tied head counted once) and those active for one token."""
        total = sum(p.numel() for p in self.parameters())
        return {"total": total, "active": total - self.inactive_params_per_token()}

    def inactive_params_per_token(self) -> int:
        return 0
