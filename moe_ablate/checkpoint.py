"""The one format for saved models: ``final_model.pt`` and training checkpoints alike.

Every file holds the experiment config, the model state and the tokenizer, so any of them can be
loaded on its own (``moe-ablate hellaswag``, ``train --resume``); training checkpoints add the
optimizer, scheduler, RNG and loop state on top (``training/``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .config import ExperimentConfig, validate
from .data.tokenizer import LoadedTokenizer
from .errors import UserError
from .utils import atomic_torch_save

FORMAT = 2


def save_model(path: str | Path, cfg: ExperimentConfig, model: torch.nn.Module, tokenizer: LoadedTokenizer,
               **extra: Any) -> None:
    atomic_torch_save({"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(),
                       "tokenizer": tokenizer.to_dict(), **extra}, path)


def save_training_state(path: str | Path, cfg: ExperimentConfig, model: torch.nn.Module, tokenizer: LoadedTokenizer,
                        optimizers: list, schedulers: list, scaler, history: dict, state: dict, device: str) -> None:
    """A full training checkpoint: the saved model plus everything the loop needs to continue exactly."""
    save_model(path, cfg, model, tokenizer, optimizers=[o.state_dict() for o in optimizers],
               schedulers=[s.state_dict() for s in schedulers], scaler=scaler.state_dict(),
               rng={"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None},
               history=history, state=state)


def restore_training_state(path: str | Path, model: torch.nn.Module, optimizers: list, schedulers: list, scaler,
                           device: str) -> tuple[dict, dict]:
    """Load a checkpoint written by ``save_training_state`` into the live objects; return (history, state)."""
    ckpt = read_checkpoint(path, device)
    if "optimizers" not in ckpt:
        raise UserError(f"{path} holds a final model, not a training checkpoint")
    try:
        model.load_state_dict(ckpt["model"])
        for o, s in zip(optimizers, ckpt["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(schedulers, ckpt["schedulers"], strict=True):
            sch.load_state_dict(s)
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"{path} does not fit this model and optimizer ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})") from None
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    # RNG states are CPU byte tensors; read_checkpoint mapped every tensor to ``device`` (on CUDA: moved there)
    torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    if device.startswith("cuda") and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), device)
    return ckpt["history"], ckpt["state"]


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; a missing or foreign file is a UserError naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {path} is not a regular file (a FIFO, a device or a folder)" if p.exists()
                        else f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(p, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, ImportError, IndexError,
            TypeError, UnicodeDecodeError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        # truncated, corrupt or foreign files fail in many ways
        raise UserError(f"{path} is not a moe-ablate checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a moe-ablate checkpoint (format {FORMAT})")
    return ckpt


def load_model(path: str | Path, device: str):
    """(model in eval mode, tokenizer, config) from any file ``save_model`` wrote."""
    from .models import build_model

    ckpt = read_checkpoint(path, device)
    try:
        cfg = validate(ExperimentConfig.from_dict(ckpt["config"]))
        tok = LoadedTokenizer.from_dict(ckpt["tokenizer"])
        model = build_model(cfg.model)
        model.load_state_dict(ckpt["model"])
    except UserError as e:
        raise UserError(f"{path}: its config is not valid ({e})") from None
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:  # weights that do not fit it
        lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [type(e).__name__]
        first = (lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0])[:200]
        raise UserError(f"{path}: its weights do not match its config ({first}); the file was edited or damaged")\
            from None
    return model.to(device).eval(), tok, cfg
