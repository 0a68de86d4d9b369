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


def search_base(exp: int | None, preset: str | None, defaults: dict, overrides: dict | None, command: str,
                config: str | None = None):
    """A search's base config: ``--exp N`` is a shortcut for a named experiment's model and preset; without it,
    the user's ``--model`` (default moe) at ``--preset`` (default tiny), or the ``[study] preset`` and ``[base]``
    settings of a study TOML (``--config``). Later wins: preset, the search's defaults, the file, the flags."""
    overrides = dict(overrides or {})
    if exp is not None:
        if config is not None:
            raise UserError(f"{command}: --exp {exp} and --config both name the model; give one")
        model = overrides.pop("model.name", None)
        if model is not None and model != EXPERIMENTS.get(exp, (model,))[0]:
            raise UserError(f"{command}: --exp {exp} is the {EXPERIMENTS[exp][0]} model; drop --exp to search "
                            f"--model {model}")
        return experiment_base(exp, preset, defaults, overrides)
    if config is not None:
        from ..spec.file import load_spec

        spec = load_spec(config)
        cfg = apply_overrides(preset_config(preset or spec.preset, "moe"), defaults)
        return validate(apply_overrides(apply_overrides(cfg, spec.base_overrides), overrides))
    cfg = apply_overrides(preset_config(preset or "tiny", "moe"), defaults)
    return validate(apply_overrides(cfg, overrides))


def search_name(prefix: str, exp: int | None, cfg) -> str:
    """``lr_search_exp9`` for a named experiment, else ``lr_search_<model>`` (the folder's stem)."""
    return f"{prefix}_exp{exp}" if exp is not None else f"{prefix}_{cfg.model.name}"


def long_run_settings(steps: int = 10000, hellaswag: str | None = None) -> dict:
    """The seeds' long training: evaluate every 100 steps, checkpoint every 3000, HellaSwag every
    1000 when a source is given, no early stopping."""
    return {"train.steps": steps, "train.eval_every": 100, "train.checkpoint_every": 3000,
            "train.hellaswag_every": 1000 if hellaswag else 0, "train.hellaswag_source": hellaswag or "",
            "train.patience": 0}


def auto_lr(output_dir: str | Path, exp: int | None, model: str | None = None) -> tuple[float, str]:
    """``--lr auto``: the newest lr-search recommendation under ``output_dir`` for experiment ``exp`` (or, without
    one, for ``model``): (LR, its path)."""
    damaged: list[Path] = []
    found = find_recommendation(output_dir, "lr_recommendation.json", exp, model, damaged)
    if found is None:
        what, flags = (f"exp {exp}", f"--exp {exp}") if exp is not None else (f"model {model}", f"--model {model}")
        passed = (f" ({len(damaged)} damaged one(s) passed over, e.g. {damaged[0]})" if damaged else "")
        raise UserError(f"--lr auto: no lr_recommendation.json for {what} under {output_dir}{passed}; "
                        f"run `moe-ablate lr-search {flags} --output-dir {output_dir}` first")
    rec, path = found
    return rec["best_learning_rate"], str(path)


def find_recommendation(output_dir: str | Path, filename: str, exp: int | None, model: str | None = None,
                        damaged: list[Path] | None = None) -> tuple[dict, Path] | None:
    """The newest ``filename`` under ``output_dir`` made for experiment ``exp`` (or, for ``exp`` None, by a search
    without one of ``model``)."""
    found = []
    for p in Path(output_dir).glob(f"**/{filename}"):
        try:
            rec = read_json(p)
        except UserError:
            rec = None
        if not isinstance(rec, dict):
            (damaged if damaged is not None else []).append(p)
            continue
        if rec.get("exp", exp) != exp or (exp is None and rec.get("model") != model):
            continue
        lr, experts = rec.get("best_learning_rate"), rec.get("num_experts")
        if _number(lr) and lr > 0 or _number(experts) and experts > 0:
            found.append((p.stat().st_mtime, p, rec))
        elif lr is not None or experts is not None:  # a hand-edited or damaged value (an every-run-failed one is None)
            (damaged if damaged is not None else []).append(p)
    if not found:
        return None
    _, path, rec = max(found, key=lambda t: t[0])
    return rec, path


def _number(v) -> bool:
    """A usable number in a recommendation file (a damaged or hand-edited one is passed over)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
