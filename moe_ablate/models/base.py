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


class RoutingLoad(nn.Module):
    """Mixin state for an MoE layer: per-expert token counts accumulated on device (no sync).
    Persistent, so a checkpoint carries them and a resumed run reports the load of the whole run."""

    def __init__(self, num_experts: int):
        super().__init__()
        self.register_buffer("load", torch.zeros(num_experts))

    def record(self, expert_ids: torch.Tensor) -> torch.Tensor:
        """Count tokens per expert; training tokens are added to ``load`` (evaluation is not)."""
        counts = torch.bincount(expert_ids.reshape(-1), minlength=self.load.numel())
        if self.training:
            self.load += counts.detach().to(self.load.dtype)
        return counts


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
