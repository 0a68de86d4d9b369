"""Study specs: a TOML file → a base config + grid axes → a list of self-contained experiments.

A study preset file looks like::

    [study]
    name = "learning_rate_ablation"   # folder prefix and kind
    preset = "seed"                   # model/run size (``--preset`` overrides)
    metric = "val_loss"               # what "best" means (lower is better)

    [base.train]                      # overrides on top of the preset
    steps = 50

    [grid.train]                      # axes: every combination is one experiment
    muon_lr = [0.001, 0.01, 0.1]

    [quick.train]                     # the --quick subset (optional)
    muon_lr = [0.01]
"""

from __future__ import annotations

import itertools
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import ExperimentConfig, apply_overrides, preset_config, validate
from ...errors import UserError
from . import schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STAGES = schema.STAGES
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


@dataclass
class ExperimentSpec:
    """One experiment: its id, the dotted settings that differ from the study's base, and the
    configuration it belongs to (``config_id``; seeds of one configuration are its repeats).

    ``labels`` are the hyperparameters a report shows for it (default: the overrides' last parts);
    a study kind sets them when its settings are better named otherwise (batch-seqlen's strategy).
    ``stage`` is one of ``STAGES``: "grid", or a stage the tool adds after the grid ("confirm": the extra seeds
    of a confirmation stage; "validate": a scaling study's runs at a scale beyond its ladder; "design": the LRs
    a designed scaling ladder added beyond an edge, part of the ladder but never halved or compared on --resume)."""

    id: str
    overrides: dict[str, Any]
    config_id: str = ""
    labels: dict[str, Any] | None = None
    stage: str = "grid"

    def __post_init__(self):
        self.config_id = self.config_id or self.id

    def config(self, base: ExperimentConfig) -> ExperimentConfig:
        return apply_overrides(base, self.overrides)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        labels = self.labels if self.labels is not None else {
            k.split(".")[-1]: v for k, v in self.overrides.items() if k != "train.seed"}
        return {**labels, **({"seed": self.overrides["train.seed"]} if "train.seed" in self.overrides else {})}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "overrides": self.overrides, "config_id": self.config_id, "labels": self.labels,
                "stage": self.stage}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        return cls(d["id"], d["overrides"], d.get("config_id", ""), d.get("labels"), d.get("stage", "grid"))

    def with_seed(self, index: int, seed: int, stage: str | None = None) -> ExperimentSpec:
        """Seed repeat ``index`` of this configuration, id ``<config>_s<index>`` (``with_seeds`` drops the suffix
        when a study runs one seed)."""
        return ExperimentSpec(f"{self.config_id}_s{index}", {**self.overrides, "train.seed": seed}, self.config_id,
                              self.labels, stage or self.stage)


@dataclass
class StudySpec:
    name: str
    preset: str
    base_overrides: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    quick: dict[str, list] = field(default_factory=dict)
    metric: str = "val_loss"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # study-kind specific sections of the file

    def base_config(self, preset: str | None = None, model: str | None = None,
                    cli_overrides: dict[str, Any] | None = None) -> ExperimentConfig:
        """preset → the file's [base] settings → command-line overrides (later wins)."""
        cfg = preset_config(preset or self.preset, None)
        cfg = apply_overrides(cfg, self.base_overrides)
        if model:
            cfg.model.name = model
        cfg = apply_overrides(cfg, cli_overrides or {})
        return validate(cfg)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "base": self.base_overrides, "grid": self.grid,
                "quick": self.quick, "metric": self.metric, "description": self.description, "extra": self.extra}


def _flatten(section: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in section.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def load_spec(path_or_name: str | Path) -> StudySpec:
    """Load a study file by path, or by preset name from ``configs/`` (e.g. ``lr_ablation``)."""
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = CONFIG_DIR / f"{path_or_name}.toml"
    if not path.exists():
        raise UserError(f"study config not found: {path_or_name}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise UserError(f"study config {path} is not a regular file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"invalid TOML in {path}: {e}") from None
    f = schema.parse(raw, path)
    study = f.study
    given = study.model_dump(exclude_unset=True)
    spec = StudySpec(
        name=safe_name(study.name or path.stem, f"{path}: [study] name"), preset=study.preset,
        base_overrides=_flatten(f.base), grid=_flatten(f.grid), quick=_flatten(f.quick), metric=study.metric,
        description=study.description,
        extra={**{k: v for k, v in given.items() if k not in ("name", "preset", "metric", "description")},
               **{k: v for k, v in raw.items() if k not in ("study", "base", "grid", "quick")}},
    )
    try:
        apply_overrides(ExperimentConfig(), {**spec.base_overrides, **{k: v[0] for k, v in spec.grid.items()},
                                             **{k: v[0] for k, v in spec.quick.items()}})
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return spec


def safe_name(name: str, what: str) -> str:
    """The one gate for every name that becomes a file or folder name (a study folder, a strategy, an experiment
    id): one path component that is not hidden, printable and encodable, so that nothing is written outside
    --output-dir and no later step fails on the name after the work is done."""
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") or len(name) > 200 \
            or any(c in name for c in "/\\\0") or not name.isprintable():
        raise UserError(f"{what} must be a plain folder name (one path component: no '/', not '..', not hidden, "
                        f"printable), got {name!r}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise UserError(f"{what} must be valid text, got {name!r}") from None
    if size > 200:  # a file name holds 255 bytes; the tool adds a kind prefix, a time stamp or an LR to it
        raise UserError(f"{what} is {size} bytes in UTF-8; at most 200 fit in a file name with what the tool adds")
    return name


def configurations(axes: dict[str, list]) -> list[ExperimentSpec]:
    """Every combination of the axes (itertools.product order), one configuration each."""
    keys = list(axes)
    return [ExperimentSpec(f"exp_{i:03d}", dict(zip(keys, values)))
            for i, values in enumerate(itertools.product(*(axes[k] for k in keys)))]


def with_seeds(configs: list[ExperimentSpec], seeds: int = 1, base_seed: int = 42) -> list[ExperimentSpec]:
    """Each configuration run with ``seeds`` seeds (ids ``<config>_s<k>``; no suffix with one seed)."""
    out = []
    for c in configs:
        for k in range(seeds):
            e = c.with_seed(k, base_seed + k)
            out.append(e if seeds > 1 else ExperimentSpec(c.id, e.overrides, c.config_id, c.labels, c.stage))
    return out


def expand(axes: dict[str, list], seeds: int = 1, base_seed: int = 42) -> list[ExperimentSpec]:
    """Every combination of the axes, times ``seeds`` repeats."""
    return with_seeds(configurations(axes), seeds, base_seed)


def sampled_subset(axes: dict[str, list], n: int, seed: int = 0) -> list[ExperimentSpec]:
    """``n`` distinct configurations of a grid too large to enumerate: each axis cycles through its values in
    a seeded random order, so every value appears as evenly as ``n`` allows, and the ids are the
    configurations' indices in the full grid's ``itertools.product`` order (the same ids enumeration gives)."""
    rng = random.Random(seed)
    keys = list(axes)
    total = schema.grid_size(axes)
    columns = []
    for k in keys:
        order = list(range(len(axes[k])))
        rng.shuffle(order)
        columns.append([order[i % len(order)] for i in range(n)])
        rng.shuffle(columns[-1])
    chosen: dict[int, tuple] = {}
    for i in range(n):
        combo = [c[i] for c in columns]
        while (index := _index(combo, keys, axes)) in chosen:  # a repeat: move one axis on, until new
            j = rng.randrange(len(keys))
            combo[j] = (combo[j] + 1) % len(axes[keys[j]])
        chosen[index] = tuple(combo)
    width = len(str(total - 1))
    return [ExperimentSpec(f"exp_{index:0{max(3, width)}d}", {k: axes[k][v] for k, v in zip(keys, combo)})
            for index, combo in sorted(chosen.items())]


def _index(combo: list[int], keys: list[str], axes: dict[str, list]) -> int:
    index = 0
    for k, v in zip(keys, combo):
        index = index * len(axes[k]) + v
    return index


def spanning_subset(experiments: list[ExperimentSpec], axes: dict[str, list], n: int,
                    seed: int = 0) -> list[ExperimentSpec]:
    """Pick ``n`` configurations so every value of every axis appears as evenly as ``n`` allows.

    Greedy: repeatedly take the candidate whose values have been used least so far (summed over
    axes), ties broken by a seeded shuffle. Deterministic for a given seed; in a full grid the
    per-axis counts never differ by more than one while unused combinations remain.
    """
    if n >= len(experiments):
        return list(experiments)
    rng = random.Random(seed)
    pool = list(experiments)
    rng.shuffle(pool)
    used = {k: {repr(v): 0 for v in vals} for k, vals in axes.items()}
    chosen: list[ExperimentSpec] = []
    for _ in range(n):
        def score(e: ExperimentSpec) -> tuple:
            counts = [used[k][repr(e.overrides[k])] for k in axes]
            return (max(counts), sum(counts))
        best = min(pool, key=score)
        pool.remove(best)
        chosen.append(best)
        for k in axes:
            used[k][repr(best.overrides[k])] += 1
    order = {e.id: i for i, e in enumerate(experiments)}
    return sorted(chosen, key=lambda e: order[e.id])
