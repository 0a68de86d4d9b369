"""A study from a TOML file: its [grid] (or [quick]) axes, seeds, confirmation, and the kind it names
(``[study] kind``: grid by default; lr_transfer and scaling read their own sections through the kind)."""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ..spec import limits, schema
from ..spec.file import (
    configurations,
    load_spec,
    sampled_subset,
    spanning_subset,
    with_seeds,
)
from ..spec.stored import Study
from .base import REGISTRY, StudyKind


def make_study(config: str = "lr_ablation", *, preset: str | None = None, overrides: dict[str, Any] | None = None,
               quick: bool = False, max_experiments: int | None = None, seeds: int | None = None,
               confirm: int | None = None, kind: str | None = None, target: dict | None = None) -> Study:
    """The study a TOML file defines: its [grid] (or [quick]) axes, ``max_experiments`` configurations
    spanning every axis value (seeded), each run with ``seeds`` seeds."""
    spec = load_spec(config)
    kind_obj = _toml_kind(config, kind or spec.extra.get("kind", "grid"))
    _no_foreign_sections(config, spec, kind_obj)
    base = spec.base_config(preset, None, overrides or {})
    if quick and not spec.quick:
        raise UserError(f"study {spec.name} defines no [quick] grid")
    axes = spec.quick if quick else spec.grid
    if not axes:
        raise UserError(f"{config}: the study defines no axes: add a [grid.train] (or [grid.model], [grid.data]) "
                        "section with at least one list of values")
    size = schema.grid_size(axes)
    if max_experiments and max_experiments > schema.MAX_CONFIGURATIONS:
        raise UserError(f"--max-experiments {max_experiments:,} is above {schema.MAX_CONFIGURATIONS:,} configurations")
    if size > schema.MAX_CONFIGURATIONS and not max_experiments:
        raise UserError(f"{config}: the grid has {size:,} configurations; run a subset with --max-experiments N")
    if max_experiments and size > schema.MAX_CONFIGURATIONS:
        configs = sampled_subset(axes, max_experiments, seed=base.train.seed)  # never enumerated whole
    else:
        configs = configurations(axes)
        if max_experiments:
            configs = spanning_subset(configs, axes, max_experiments, seed=base.train.seed)
    params = {"spec": spec.to_dict(), "quick": bool(quick), "max_experiments": max_experiments, "seeds": seeds,
              "preset": preset or spec.preset}  # as given; the file's default seeds are in its spec
    seeds = seeds or int(spec.extra.get("seeds", 1))
    if len(configs) * seeds > limits.MAX_RUNS:
        raise UserError(f"{config}: {len(configs):,} configurations x {seeds:,} seeds is {len(configs) * seeds:,} "
                        f"runs, above {limits.MAX_RUNS:,}: use fewer seeds or --max-experiments N")
    if confirm is None:
        confirm = spec.extra.get("confirm", kind_obj.default_confirm)
    study = Study(kind=kind_obj.name, name=spec.name, base=base, experiments=with_seeds(configs, seeds,
                                                                                        base.train.seed),
                  params=params, metric=spec.metric, description=spec.description, confirm=confirm)
    section = (spec.extra.get(kind_obj.toml_section) or {}) if kind_obj.toml_section else {}
    kind_obj.from_toml(study, section, target or {})
    return study


# sections and keys of a study TOML that only another kind reads: in this kind's file they would be ignored
FOREIGN = {"strategy": ("[[strategy]]", "batch-seqlen"), "scale": ("[scale.*]", "batch-seqlen"),
           "lrs": ("[study] lrs", "batch-seqlen"), "scaling": ("[scaling]", "scaling")}


def _no_foreign_sections(config: str, spec, kind_obj: StudyKind) -> None:
    for key, (where, owner) in FOREIGN.items():
        if key in spec.extra and key != kind_obj.toml_section:
            hint = ('set [study] kind = "scaling" (or run `moe-ablate scaling --config FILE`)' if owner == "scaling"
                    else f"run it with `moe-ablate {owner} --config FILE`")
            raise UserError(f"{config}: {where} belongs to a {owner} study, and this {kind_obj.name} study would "
                            f"ignore it: {hint}, or remove it")


def _toml_kind(config: str, name: str) -> StudyKind:
    """The kind a TOML study names: one whose study a TOML grid defines (run by `run`, or by its own command)."""
    allowed = [k for k in REGISTRY.values() if k.command == "run" or "run" in k.resumed_by]
    if name not in {k.name for k in allowed}:
        raise UserError(f"{config}: [study] kind must be {', '.join(k.name for k in allowed)}, got {name!r}")
    return REGISTRY[name]
