"""``run``: a grid from a TOML preset (the 270-experiment LR ablation, or any file of your own)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .kind import StudyKind
from . import schema
from .spec import configurations, load_study, sampled_subset, spanning_subset, with_seeds
from .study import Study


class GridKind(StudyKind):
    name = "grid"
    title = "Study report"

    def answer(self, study, records, analysis):
        """With a ``steps`` (token horizon) axis and an LR axis the question is whether the optimum moves."""
        tr = analysis.get("lr_by_horizon")
        if not tr:
            return None
        return f"{tr['text'][0].upper()}{tr['text'][1:]}. Overall: {analysis['recommendation']['text']}"


class LRTransferKind(GridKind):
    """A grid over model width x LR whose question is whether the optimal LR moves with width."""

    name = "lr_transfer"
    title = "LR transfer across width"

    def answer(self, study, records, analysis):
        tr = analysis.get("lr_transfer")
        if not tr:
            return None
        return f"{tr['text'][0].upper()}{tr['text'][1:]}. Overall: {analysis['recommendation']['text']}"


KIND = GridKind()
TRANSFER = LRTransferKind()


def make_study(config: str = "lr_ablation", *, preset: str | None = None, overrides: dict[str, Any] | None = None,
               quick: bool = False, max_experiments: int | None = None, seeds: int | None = None,
               confirm: int | None = None) -> Study:
    """The study a TOML file defines: its [grid] (or [quick]) axes, ``max_experiments`` configurations
    spanning every axis value (seeded), each run with ``seeds`` seeds."""
    spec = load_study(config)
    base = spec.base_config(preset, None, overrides or {})
    if quick and not spec.quick:
        raise UserError(f"study {spec.name} defines no [quick] grid")
    axes = spec.quick if quick else spec.grid
    if not axes:
        raise UserError(f"{config}: the study defines no axes: add a [grid.train] (or [grid.model], [grid.data]) "
                        "section with at least one list of values")
    size = schema.grid_size(axes)
    if size > schema.MAX_CONFIGURATIONS and not max_experiments:
        raise UserError(f"{config}: the grid has {size:,} configurations; run a subset with --max-experiments N")
    if max_experiments and size > schema.MAX_CONFIGURATIONS:
        configs = sampled_subset(axes, max_experiments, seed=base.train.seed)  # never enumerated whole
    else:
        configs = configurations(axes)
        if max_experiments:
            configs = spanning_subset(configs, axes, max_experiments, seed=base.train.seed)
    params = {"spec": spec.to_dict(), "quick": quick, "max_experiments": max_experiments, "seeds": seeds,
              "preset": preset or spec.preset}  # as given; the file's default seeds are in its spec
    seeds = seeds or int(spec.extra.get("seeds", 1))
    kind = spec.extra.get("kind", KIND.name)
    if kind not in (KIND.name, TRANSFER.name):
        raise UserError(f"{config}: [study] kind must be {KIND.name} or {TRANSFER.name}, got {kind!r}")
    return Study(kind=kind, name=spec.name, base=base, experiments=with_seeds(configs, seeds, base.train.seed),
                 params=params, metric=spec.metric, description=spec.description,
                 confirm=confirm if confirm is not None else spec.extra.get("confirm"))
