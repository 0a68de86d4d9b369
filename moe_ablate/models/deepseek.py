"""Experiments 9 and 3: DeepSeek-V3 latent attention + a dense SwiGLU MLP, or + the GLM4-MoE layer.

The attention, rotary embedding, MLP and MoE modules are ``transformers``' own. What they lack for
training from scratch is added here, each in one place:

- causality: attention runs through ``sdpa`` with no mask, which is causal (``eager`` with no mask
  is not: the original Experiment 9 passed an all-ones mask and trained a non-causal model);
- initialisation: standalone modules start from ``torch.empty`` (``TransformerLM.init_weights``);
- the router's ``e_score_correction_bias`` is never updated by ``transformers``: we apply
  DeepSeek-V3's aux-loss-free rule after every optimizer step (``after_optimizer_step``);
- an optional sequence-level balance loss (DeepSeek-V3 eq. 17-20), weight ``aux_loss_weight``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ModelConfig
from .base import RoutingLoad, TransformerLM


def _deepseek_config(cfg: ModelConfig):
    from transformers import DeepseekV3Config

    hf = DeepseekV3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads,
        q_lora_rank=cfg.q_lora_rank or None, kv_lora_rank=cfg.kv_lora_rank,
        qk_rope_head_dim=cfg.qk_rope_head_dim, qk_nope_head_dim=cfg.qk_nope_head_dim,
        v_head_dim=cfg.v_head_dim, max_position_embeddings=cfg.max_seq_len,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_dropout=cfg.dropout, hidden_act="silu", rope_interleave=True,
    )
    hf._attn_implementation = "sdpa"  # causal with no mask; never "eager" without a mask
    return hf


class DeepSeekBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, hf_cfg, layer_idx: int, ffn: nn.Module):
        super().__init__()
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
            DeepseekV3Attention,
            DeepseekV3RotaryEmbedding,
        )

        self.input_norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.attn = DeepseekV3Attention(hf_cfg, layer_idx)
        self.rotary = DeepseekV3RotaryEmbedding(hf_cfg)  # buffers only, no parameters
        self.post_attn_norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.ffn = ffn
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(x.size(1), device=x.device)[None]
        cos_sin = self.rotary(x, pos)
        h, _ = self.attn(self.input_norm(x), position_embeddings=cos_sin, attention_mask=None)
        x = x + self.dropout(h)
        y = self.ffn(self.post_attn_norm(x))
        if isinstance(y, tuple):
            y, aux = y
        else:
            aux = x.new_zeros((), dtype=torch.float32)
        return x + self.dropout(y), aux


class Glm4MoEFeedForward(RoutingLoad):
    """``transformers``' Glm4MoeMoE (routed experts + shared expert, sigmoid router with
    ``e_score_correction_bias``), plus the routing bookkeeping it needs to be trained."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.num_experts)
        from transformers import Glm4MoeConfig
        from transformers.models.glm4_moe.modeling_glm4_moe import Glm4MoeMoE

        hf = Glm4MoeConfig(
            hidden_size=cfg.d_model, moe_intermediate_size=cfg.expert_d_ff, intermediate_size=cfg.d_ff,
            n_routed_experts=cfg.num_experts, num_experts_per_tok=cfg.top_k,
            n_shared_experts=cfg.n_shared_experts, n_group=1, topk_group=1, norm_topk_prob=True,
            routed_scaling_factor=cfg.routed_scaling_factor, hidden_act="silu",
        )
        hf._experts_implementation = "grouped_mm"  # transformers' sorted grouped matmul (falls back by itself)
        self.moe = Glm4MoeMoE(hf)
        self.top_k, self.num_experts = cfg.top_k, cfg.num_experts
        self.aux_weight = cfg.aux_loss_weight
        self.z_weight = cfg.router_z_loss_weight
        self.gamma = cfg.bias_update_rate
        self.register_buffer("step_load", torch.zeros(cfg.num_experts), persistent=False)
        self._route: tuple[torch.Tensor, torch.Tensor] | None = None
        self.moe.gate.register_forward_hook(self._on_route)

    def _on_route(self, module, inputs, output) -> None:
        router_logits, _, topk_idx = output
        scores = router_logits.detach().float().sigmoid()
        counts = self.record(topk_idx, scores / scores.sum(-1, keepdim=True))
        if self.training:
            self.step_load += counts.detach().to(self.step_load.dtype)
        self._route = (router_logits, topk_idx)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.moe(x)
        router_logits, topk_idx = self._route
        self._route = None
        aux = y.new_zeros((), dtype=torch.float32)
        if self.aux_weight > 0 and self.training:
            # sequence-wise balance loss: α Σ_i f_i P_i per sequence, averaged over the batch
            B, T = x.shape[:2]
            s = router_logits.sigmoid().view(B, T, -1)
            p = (s / s.sum(-1, keepdim=True)).mean(1)  # (B, E)
            hits = torch.zeros(B, T, self.num_experts, device=x.device)
            hits.scatter_(2, topk_idx.view(B, T, -1), 1.0)
            f = hits.mean(1) * self.num_experts / self.top_k
            aux = self.aux_weight * (f * p).sum(-1).mean()
        if self.z_weight > 0 and self.training:  # ST-MoE router z-loss on the router's logits
            aux = aux + self.z_weight * (torch.logsumexp(router_logits.float(), dim=-1) ** 2).mean()
        return y, aux

    def routing_bias(self) -> torch.Tensor:
        return self.moe.gate.e_score_correction_bias

    @torch.no_grad()
    def update_bias(self) -> None:
        """DeepSeek-V3 aux-loss-free balancing: bias_i += γ · sign(mean load − load_i)."""
        if self.gamma > 0 and self.step_load.sum() > 0:
            load = self.step_load
            self.moe.gate.e_score_correction_bias += self.gamma * torch.sign(load.mean() - load)
        self.step_load.zero_()


class DeepSeekLM(TransformerLM):
    def __init__(self, cfg: ModelConfig, moe: bool):
        hf = _deepseek_config(cfg)
        if moe:
            ffns = [Glm4MoEFeedForward(cfg) for _ in range(cfg.n_layers)]
        else:
            from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
                DeepseekV3MLP,
            )

            ffns = [DeepseekV3MLP(hf) for _ in range(cfg.n_layers)]
        self.is_moe = moe
        super().__init__(cfg, [DeepSeekBlock(cfg, hf, i, f) for i, f in enumerate(ffns)])

    def after_optimizer_step(self) -> None:
        for m in self.moe_layers():
            m.update_bias()

    def attention_width(self) -> int:
        c = self.cfg  # multi-head latent attention: queries/keys of qk_nope + qk_rope, values of v_head_dim
        return c.n_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim) // 2

    def inactive_params_per_token(self) -> int:
        if not self.is_moe:
            return 0
        per_expert = 3 * self.cfg.d_model * self.cfg.expert_d_ff  # gate, up, down
        return self.cfg.n_layers * (self.cfg.num_experts - self.cfg.top_k) * per_expert
