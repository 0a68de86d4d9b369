"""The seeds' MoE transformer (MoEMinimalLLM): RoPE causal attention + top-k routed experts.

Experts are stored as two 3-D tensors (experts × out × in) so that dispatch can run them as one
grouped matmul and Muon can orthogonalise every expert in one batched call.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .base import RoutingLoad, TransformerLM


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form). A few lines, so written here rather than
    pulling a model library's private helper with its own calling convention."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, T, D)
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


def grouped_mm_supported(device: torch.device, dtype: torch.dtype) -> bool:
    if not hasattr(F, "grouped_mm"):
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return dtype == torch.bfloat16 and torch.cuda.get_device_capability(device) >= (8, 0)
    return False


class MoEFeedForward(RoutingLoad):
    """Top-k router (softmax over the chosen k) + Linear-SiLU-Linear experts + balance loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.num_experts)
        E, d, f = cfg.num_experts, cfg.d_model, cfg.expert_d_ff
        self.num_experts, self.top_k = E, cfg.top_k
        self.router = nn.Linear(d, E, bias=False)
        self.w1 = nn.Parameter(torch.empty(E, f, d))
        self.w2 = nn.Parameter(torch.empty(E, d, f))
        self.noise_std = cfg.router_noise
        self.aux_weight = cfg.aux_loss_weight
        self.z_weight = cfg.router_z_loss_weight
        self.dispatch = cfg.moe_dispatch
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        logits = self.router(x).float()
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        probs = logits.softmax(dim=-1)
        top_logits, top_idx = logits.topk(self.top_k, dim=-1)
        top_w = top_logits.softmax(dim=-1)
        counts = self.record(top_idx, probs)

        # Switch-style balance loss: E · Σ_e f_e · P_e, f_e = share of routed slots, P_e = mean prob.
        # Equals 1 for uniform routing probabilities, whatever the top-k picks.
        f = counts.to(probs.dtype) / top_idx.numel()
        aux = self.aux_weight * self.num_experts * (f * probs.mean(0)).sum()
        if self.z_weight > 0:  # ST-MoE router z-loss: keeps the router's logits small (stable softmax)
            aux = aux + self.z_weight * (torch.logsumexp(logits, dim=-1) ** 2).mean()

        out = self._experts(x, top_idx, top_w.to(x.dtype))
        return self.dropout(out).view(shape), aux

    # -------------------------------------------------------------- dispatch
    def _experts(self, x: torch.Tensor, top_idx: torch.Tensor, top_w: torch.Tensor) -> torch.Tensor:
        mode = self.dispatch
        if mode == "auto":
            dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
            mode = "grouped" if grouped_mm_supported(x.device, dtype) else "sorted"
        if mode == "masked":
            return self._masked(x, top_idx, top_w)
        N, k = top_idx.shape
        flat = top_idx.reshape(-1)
        order = flat.argsort(stable=True)  # slots grouped by expert, contiguous
        token_of = order // k
        # a gather whose backward adds each token's k rows in index order: x[token_of] backs into index_put_(accumulate)
        # with atomic float adds on CPU, whose order (so whose rounding, for k >= 3) changes from run to run
        xs = torch.index_select(x, 0, token_of)
        if mode == "grouped":
            ys = self._grouped(xs, flat[order])
        else:
            ys = self._sorted(xs, flat[order])
        ys = ys * top_w.reshape(-1)[order, None]
        # undo the sort, then sum each token's k expert outputs (deterministic, unlike index_add_)
        out = torch.empty_like(ys)
        out[order] = ys
        return out.view(N, k, -1).sum(1)

    def _grouped(self, xs: torch.Tensor, sorted_ids: torch.Tensor) -> torch.Tensor:
        offs = torch.bincount(sorted_ids, minlength=self.num_experts).cumsum(0).to(torch.int32)
        w1, w2 = self.w1, self.w2
        if torch.is_autocast_enabled(xs.device.type):  # grouped_mm is not autocast-aware
            dt = torch.get_autocast_dtype(xs.device.type)
            xs, w1, w2 = xs.to(dt), w1.to(dt), w2.to(dt)
        h = F.silu(F.grouped_mm(xs, w1.transpose(1, 2), offs=offs))
        return F.grouped_mm(h, w2.transpose(1, 2), offs=offs)

    def _sorted(self, xs: torch.Tensor, sorted_ids: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(sorted_ids, minlength=self.num_experts).tolist()  # one sync per layer
        outs, start = [], 0
        for e, c in enumerate(counts):
            if c:
                seg = xs[start:start + c]
                outs.append(F.silu(seg @ self.w1[e].t()) @ self.w2[e].t())
            start += c
        return torch.cat(outs)

    def _masked(self, x: torch.Tensor, top_idx: torch.Tensor, top_w: torch.Tensor) -> torch.Tensor:
        """The seed design: a Python loop over experts with boolean masks (reference and baseline)."""
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            mask = top_idx == e  # (N, k)
            rows = mask.any(-1)
            if rows.any():
                w = (top_w * mask).sum(-1, keepdim=True)[rows]
                out[rows] += w * (F.silu(x[rows] @ self.w1[e].t()) @ self.w2[e].t())
        return out


class MoEBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.ffn = MoEFeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.dropout(self.attn(self.norm1(x)))
        y, aux = self.ffn(self.norm2(x))
        return x + y, aux


class MoETransformer(TransformerLM):
    scale_embeddings = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, [MoEBlock(cfg) for _ in range(cfg.n_layers)])

    def inactive_params_per_token(self) -> int:
        per_expert = 2 * self.cfg.d_model * self.cfg.expert_d_ff
        return self.cfg.n_layers * (self.cfg.num_experts - self.cfg.top_k) * per_expert
