"""The one format for saved models: ``final_model.pt`` and training checkpoints alike.

Every file holds the experiment config, the model state and the tokenizer, so any of them can be
loaded on its own (``moe-ablate hellaswag``, ``train --resume``); training checkpoints add the
optimizer, scheduler, RNG and loop state on top (``train.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import ExperimentConfig
from .data.tokenizer import LoadedTokenizer
from .errors import UserError
from .utils import atomic_torch_save

FORMAT = 2


def save_model(path: str | Path, cfg: ExperimentConfig, model: torch.nn.Module, tokenizer: LoadedTokenizer,
               **extra: Any) -> None:
    atomic_torch_save({"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(),
                       "tokenizer": tokenizer.to_dict(), **extra}, path)


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; a missing or foreign file is a UserError naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(p, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a moe-ablate checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a moe-ablate checkpoint (format {FORMAT})")
    return ckpt


def load_model(path: str | Path, device: str):
    """(model in eval mode, tokenizer, config) from any file ``save_model`` wrote."""
    from .models import build_model

    ckpt = read_checkpoint(path, device)
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), LoadedTokenizer.from_dict(ckpt["tokenizer"]), cfg
