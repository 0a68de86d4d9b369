"""Model registry: ``build_model(cfg)`` picks the architecture named by ``cfg.name``.

- ``moe``: the seeds' MoE transformer (RoPE attention + top-k routed experts).
- ``deepseek_mlp``: Experiment 9, DeepSeek-V3 latent attention + dense SwiGLU MLP.
- ``deepseek_glm4_moe``: Experiment 3, DeepSeek-V3 latent attention + GLM4-MoE layer.
"""

from __future__ import annotations

from ..config import ModelConfig, ModelName, choices
from .base import TransformerLM

MODEL_NAMES = choices(ModelName)
DESCRIPTIONS = {
    "moe": "seed MoE transformer: RoPE + SDPA causal attention, top-k softmax router, Switch balance loss",
    "deepseek_mlp": "Experiment 9: transformers' DeepseekV3Attention (MLA) + dense SwiGLU MLP",
    "deepseek_glm4_moe": "Experiment 3: DeepseekV3Attention + transformers' Glm4MoeMoE (shared expert, "
                         "sigmoid router, aux-loss-free bias)",
}


def build_model(cfg: ModelConfig) -> TransformerLM:
    if cfg.name == "moe":
        from .moe import MoETransformer

        return MoETransformer(cfg)
    if cfg.name in ("deepseek_mlp", "deepseek_glm4_moe"):
        from .deepseek import DeepSeekLM

        return DeepSeekLM(cfg, moe=cfg.name == "deepseek_glm4_moe")
    raise ValueError(f"unknown model {cfg.name!r}")


__all__ = ["MODEL_NAMES", "DESCRIPTIONS", "build_model", "TransformerLM"]
