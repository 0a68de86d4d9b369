"""The seeds' named experiments (``--exp 9`` and ``--exp 3``): their models and presets, the long run's
settings, and the recommendations earlier studies left for them under an output folder (``--lr auto``)."""

from __future__ import annotations

from pathlib import Path

from ...config import apply_overrides, preset_config, validate
from ...errors import UserError
from ...utils import read_json

EXPERIMENTS = {  # --exp N -> (model, preset)
    9: ("deepseek_mlp", "exp9"),
    3: ("deepseek_glm4_moe", "exp3"),
}


def experiment_base(exp: int, preset: str | None, defaults: dict, overrides: dict | None):
    """Experiment model + preset, the command's defaults, then the user's settings."""
    if exp not in EXPERIMENTS:
        raise UserError(f"unknown experiment {exp} (choose from: {', '.join(map(str, EXPERIMENTS))})")
    model, default_preset = EXPERIMENTS[exp]
    cfg = apply_overrides(preset_config(preset or default_preset, model), defaults)
    return validate(apply_overrides(cfg, overrides or {}))


def long_run_settings(steps: int = 10000, hellaswag: str | None = None) -> dict:
    """The seeds' long training: evaluate every 100 steps, checkpoint every 3000, HellaSwag every
    1000 when a source is given, no early stopping."""
    return {"train.steps": steps, "train.eval_every": 100, "train.checkpoint_every": 3000,
            "train.hellaswag_every": 1000 if hellaswag else 0, "train.hellaswag_source": hellaswag or "",
            "train.patience": 0}


def auto_lr(output_dir: str | Path, exp: int) -> tuple[float, str]:
    """``--lr auto``: the newest lr-search recommendation for ``exp`` under ``output_dir`` (LR, its path)."""
    found = find_recommendation(output_dir, "lr_recommendation.json", exp)
    if found is None:
        raise UserError(f"--lr auto: no lr_recommendation.json for exp {exp} under {output_dir}; "
                        f"run `moe-ablate lr-search --exp {exp} --output-dir {output_dir}` first")
    rec, path = found
    return rec["best_learning_rate"], str(path)


def find_recommendation(output_dir: str | Path, filename: str, exp: int) -> tuple[dict, Path] | None:
    """The newest ``filename`` under ``output_dir`` made for experiment ``exp``."""
    found = []
    for p in Path(output_dir).glob(f"**/{filename}"):
        try:
            rec = read_json(p)
        except UserError:
            continue
        if rec.get("exp", exp) == exp and (rec.get("best_learning_rate") or rec.get("num_experts")):
            found.append((p.stat().st_mtime, p, rec))
    if not found:
        return None
    _, path, rec = max(found, key=lambda t: t[0])
    return rec, path
