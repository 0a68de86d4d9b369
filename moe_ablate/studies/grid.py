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
        # comparing a 100-step run with a 300-step one answers nothing: each horizon's own best is the answer
        rows = "; ".join(f"{r['steps']} steps: {r['best_lr']:g} (near-optimal "
                         f"{', '.join(f'{x:g}' for x in r['near_optimal_lrs']) or 'n/a'}; {analysis['metric']} "
                         f"{r['mean']:.4f})" for r in tr["rows"] if r.get("best_lr") is not None)
        return f"{tr['text'][0].upper()}{tr['text'][1:]}. Best {tr['lr_axis']} per horizon: {rows}."


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
               confirm: int | None = None, kind: str | None = None, target: dict | None = None) -> Study:
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
    kind = kind or spec.extra.get("kind", KIND.name)
    if kind not in (KIND.name, TRANSFER.name, "scaling"):
        raise UserError(f"{config}: [study] kind must be {KIND.name}, {TRANSFER.name} or scaling, got {kind!r}")
    if confirm is None:  # a scaling study's best configuration is its largest scale: nothing to confirm
        confirm = spec.extra.get("confirm", 0 if kind == "scaling" else None)
    study = Study(kind=kind, name=spec.name, base=base, experiments=with_seeds(configs, seeds, base.train.seed),
                  params=params, metric=spec.metric, description=spec.description, confirm=confirm)
    if kind == "scaling":
        from .ladder import attach_target

        attach_target(study, spec.extra.get("scaling") or {}, target)
    return study
