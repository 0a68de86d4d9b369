"""A scaling study's ladder and target, checked when the study is made (before anything runs).

Kept apart from ``scaling.py`` so that ``grid.make_study`` (which makes every TOML study, scaling ones
included) needs nothing of the kind itself."""

from __future__ import annotations

from ..analysis.scaling import N_BOOT
from ..config import PRESETS
from ..errors import UserError

MIN_SCALES = 3


def attach_target(study, section: dict, flags: dict | None = None) -> None:
    """The target run ([scaling] section < command-line flags) and the ladder's soundness, before anything runs."""
    flags = flags or {}
    if flags.get("preset") is not None and flags["preset"] not in PRESETS:
        raise UserError(f"--target-model must be a preset ({' | '.join(PRESETS)}), got {flags['preset']!r}")
    if section.get("target_preset") is not None and section["target_preset"] not in PRESETS:
        raise UserError(f"[scaling] target_preset must be a preset ({' | '.join(PRESETS)}), got "
                        f"{section['target_preset']!r}")
    study.params["target"] = {"exp": section.get("target_exp", 3),
                              "preset": flags.get("preset") or section.get("target_preset"),
                              "steps": flags.get("steps") or section.get("target_steps"),
                              "bootstrap": section.get("bootstrap", N_BOOT)}
    check_ladder(study)


def check_ladder(study) -> None:
    """A scaling study needs an LR axis and at least ``MIN_SCALES`` scales (say so before anything runs)."""
    axes: dict[str, set] = {}
    for e in study.experiments:
        for k, v in e.overrides.items():
            if k != "train.seed":
                axes.setdefault(k, set()).add(repr(v))
    if len(axes.get("train.muon_lr", ())) < 3:
        raise UserError("a scaling study needs at least 3 values of train.muon_lr at every scale ([grid.train] "
                        "muon_lr = [...]) to locate an optimum")
    scale_keys = [k for k in axes if k not in ("train.muon_lr", "train.batch_size") and len(axes[k]) > 1]
    scales = {tuple(repr(e.overrides.get(k)) for k in scale_keys) for e in study.experiments}
    if len(scales) < MIN_SCALES:
        raise UserError(f"a scaling study needs at least {MIN_SCALES} scales (a grid axis such as model.d_model or "
                        f"train.steps with {MIN_SCALES}+ values), got {len(scales)}")
