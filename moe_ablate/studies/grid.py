"""``run``: a grid from a TOML preset (the 270-experiment LR ablation, or any file of your own)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .kind import StudyKind
from .spec import configurations, load_study, spanning_subset, with_seeds
from .study import Study


class GridKind(StudyKind):
    name = "grid"
    title = "Study report"


KIND = GridKind()


def make_study(config: str = "lr_ablation", *, preset: str | None = None, overrides: dict[str, Any] | None = None,
               quick: bool = False, max_experiments: int | None = None, seeds: int = 1,
               confirm: int | None = None) -> Study:
    """The study a TOML file defines: its [grid] (or [quick]) axes, ``max_experiments`` configurations
    spanning every axis value (seeded), each run with ``seeds`` seeds."""
    spec = load_study(config)
    base = spec.base_config(preset, None, overrides or {})
    if quick and not spec.quick:
        raise UserError(f"study {spec.name} defines no [quick] grid")
    axes = spec.quick if quick else spec.grid
    configs = configurations(axes)
    if max_experiments:
        configs = spanning_subset(configs, axes, max_experiments, seed=base.train.seed)
    params = {"spec": spec.to_dict(), "quick": quick, "max_experiments": max_experiments, "seeds": seeds,
              "preset": preset or spec.preset}
    return Study(kind=KIND.name, name=spec.name, base=base, experiments=with_seeds(configs, seeds, base.train.seed),
                 params=params, metric=spec.metric, description=spec.description,
                 confirm=confirm if confirm is not None else spec.extra.get("confirm"))
