"""The declared shape of a study TOML file, checked before anything runs or is written.

``pydantic`` models the sections (unknown sections and keys refused, types and ranges checked); the
rules pydantic cannot express are below them: axis values finite and distinct, ``seed`` never an axis
(seeds are repeats of a configuration: ``--seeds K``), a known metric with its direction, and every
dotted setting a field of ``config.py`` (``apply_overrides`` checks those, with the nearest name).
Every problem is one ``UserError`` line naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from ...errors import UserError
from . import limits

# Every metric a study may rank by, with its direction. The analysis minimises, so only lower-is-better
# metrics can be a study's metric today; the others are reported, never silently minimised.
METRICS: dict[str, Literal["lower", "higher"]] = {
    "val_loss": "lower", "best_val_loss": "lower", "val_perplexity": "lower", "val_loss_own_length": "lower",
    "final_train_loss": "lower", "val_accuracy": "higher", "final_train_accuracy": "higher",
}
SECTIONS = ("model", "train", "data")
MAX_CONFIGURATIONS = limits.MAX_CONFIGURATIONS

Value = Union[StrictBool, StrictInt, StrictFloat, StrictStr]  # noqa: UP007  (pydantic types)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudySection(_Strict):
    name: StrictStr | None = None
    kind: StrictStr | None = None
    preset: StrictStr = "seed"
    metric: StrictStr = "val_loss"
    description: StrictStr = ""
    seeds: int = Field(default=1, gt=0, le=limits.MAX_SEEDS)
    confirm: int | None = Field(default=None, ge=0, le=limits.MAX_CONFIRM)
    # batch-seqlen: the Muon LRs every strategy runs with
    lrs: list[Annotated[float, Field(gt=0, le=limits.MAX_LR)]] | None = Field(default=None, max_length=limits.MAX_LRS)


class Strategy(_Strict):
    name: StrictStr
    batch_size: int = Field(ge=1, le=limits.MAX_BATCH)
    seq_len: int = Field(ge=1, le=limits.MAX_SEQ)
    grad_accum: int = Field(default=1, ge=1, le=limits.MAX_ACCUM)


class Scale(_Strict):
    batch: int = Field(default=1, ge=1, le=limits.MAX_SCALE)
    seq: int = Field(default=1, ge=1, le=limits.MAX_SCALE)


class ScalingSection(_Strict):
    """[scaling]: the target run a scaling study predicts for (default: the ``train --exp 3`` long run)."""

    target_exp: Literal[3, 9] = 3
    target_preset: StrictStr | None = None  # size the target model with this preset instead of the exp's
    target_steps: int | None = Field(default=None, ge=1, le=limits.MAX_STEPS)  # default: the long run's 10,000
    # bootstrap replicates per scale: 100,000 is already ~100x what a 95% interval needs; 10^8 hung after the ladder
    bootstrap: int = Field(default=1000, ge=100, le=100_000)
    # one scale the ladder never saw, e.g. {"model.d_model" = 256}: after the ladder, an LR grid there centred
    # on the law's prediction measures whether the law beat reusing the largest rung's optimum
    validate_scale: dict[str, Union[Value, dict[str, Value]]] | None = Field(  # noqa: UP007
        default=None, alias="validate")
    validate_lrs: int = Field(default=5, ge=4, le=12)  # LRs tried at the validation scale (widened to hold reuse's)
    # a grid axis that is not a scale, e.g. "train.muon_adjust_lr": one ladder and one law per value (does the LR
    # transfer across the ladder in each mode?)
    compare: StrictStr | None = None
    # a designed ladder: after each pass, an LR beyond the edge of every scale whose best LR is an edge of its
    # grid, until every optimum is bracketed or ``budget`` more runs are spent
    budget: int | None = Field(default=None, ge=1, le=limits.MAX_RUNS)
    # ... and narrow every bracketed optimum's 95% CI to this factor (hi/lo) with LRs between the tried ones
    # around its vertex (the budget defaults to the ladder's own run count)
    optimum_ci: float | None = Field(default=None, gt=1, le=limits.MAX_CI_FACTOR)


class StudyFile(_Strict):
    study: StudySection = StudySection()
    base: dict[Literal["model", "train", "data"], dict[str, Value]] = {}
    grid: dict[Literal["model", "train", "data"], dict[str, list[Value]]] = {}
    quick: dict[Literal["model", "train", "data"], dict[str, list[Value]]] = {}
    # batch-seqlen files
    strategy: list[Strategy] = []
    scale: dict[str, Scale] = {}
    # scaling files
    scaling: ScalingSection | None = None


STAGES = ("grid", "confirm", "validate", "design")  # an experiment's stage (``file.ExperimentSpec``)


class StoredExperiment(BaseModel):
    """One experiment as ``config.json`` stores it (``ExperimentSpec.to_dict``)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: str
    overrides: dict[str, Any]
    config_id: str = ""
    labels: dict[str, Any] | None = None
    stage: Literal[STAGES] = "grid"


class StoredStudy(BaseModel):
    """The ``study`` table of ``config.json`` (``Study.to_dict``): checked on every read, as its TOML was, so a
    hand-edited or damaged file is one line before anything runs. Extra keys from later versions are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)
    kind: str
    name: str
    base: dict[str, dict[str, Any]]
    experiments: list[StoredExperiment]
    params: dict[str, Any] = {}
    metric: str = "val_loss"
    description: str = ""
    confirm: int | None = Field(default=None, ge=0, le=limits.MAX_CONFIRM)
    confirm_max: int = Field(default=3, ge=0, le=limits.MAX_CONFIRM_CONFIGS)
    halving: int = Field(default=0, ge=0, le=limits.MAX_HALVING)
    min_steps: int = Field(default=0, ge=0, le=limits.MAX_STEPS)
    halving_restart: bool = False
    flags: dict[str, Any] | None = None


def check_stored_study(d: Any, where: str) -> None:
    """``d`` is a ``config.json`` study table this tool could have written; else one line naming the first field
    that is not (``study.confirm = 'two': ...``)."""
    try:
        StoredStudy.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{where}: study.{loc} = {shown}: {err['msg'].lower()} (not what this tool wrote; "
                        "the file was edited by hand or damaged)") from None


def nearest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def parse(raw: dict[str, Any], path: Path) -> StudyFile:
    """The file's sections as declared, or one line saying what is wrong and where."""
    try:
        f = StudyFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"]
        if err["type"] == "extra_forbidden":
            parent = StudyFile if len(loc) == 1 else {"study": StudySection, "strategy": Strategy,
                                                      "scale": Scale, "scaling": ScalingSection}.get(str(loc[0]))
            fields = parent.model_fields if isinstance(parent, type) else {}
            kind = "section" if len(loc) == 1 else "key"
            raise UserError(f"{path}: unknown {kind} {_where(loc)!r}{nearest(str(loc[-1]), fields)}") from None
        if err["type"] == "literal_error" and len(loc) >= 2 and loc[0] in ("base", "grid", "quick"):
            raise UserError(f"{path}: unknown section [{loc[0]}.{loc[1]}]{nearest(str(loc[1]), SECTIONS)}; "
                            f"settings live in [{loc[0]}.model], [{loc[0]}.train] or [{loc[0]}.data]") from None
        got = err.get("input")
        shown = f", got {got!r}" if not isinstance(got, (dict, list)) or len(repr(got)) < 60 else ""
        raise UserError(f"{path}: {_where(loc) or 'the file'}: {err['msg'].lower()}{shown}") from None
    check_metric(f.study.metric, str(path))
    if f.study.lrs is not None:
        check_axis("study.lrs", f.study.lrs, str(path))
    names = [st.name for st in f.strategy]
    if len(set(names)) < len(names):
        raise UserError(f"{path}: two [[strategy]] sections are named {next(n for n in names if names.count(n) > 1)!r}")
    for section in ("grid", "quick"):
        for group, axes in getattr(f, section).items():
            for key, values in axes.items():
                check_axis(f"{section}.{group}.{key}", values, str(path))
    return f


def check_metric(metric: str, where: str) -> None:
    if metric not in METRICS:
        raise UserError(f"{where}: unknown metric {metric!r}{nearest(metric, METRICS)}; known: {', '.join(METRICS)}")
    if METRICS[metric] == "higher":
        lower = [m for m, d in METRICS.items() if d == "lower"]
        raise UserError(f"{where}: metric {metric!r} is higher-is-better, and studies rank by a lower-is-better "
                        f"metric ({', '.join(lower)}); it is reported for every run all the same")


def check_axis(name: str, values: list, where: str) -> None:
    """An axis: at least one value, every number finite, no value twice, never the seed."""
    if name.endswith("train.seed"):
        raise UserError(f"{where}: {name} cannot be an axis: seeds are repeats of a configuration; use --seeds K "
                        "or [study] seeds = K")
    if not values:
        raise UserError(f"{where}: {name} must list at least one value")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{where}: {name} has the non-finite value {v}")
    keys = [(type(v) is bool, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for v in values]
    dup = next((values[i] for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None or len(set(keys)) < len(keys):
        raise UserError(f"{where}: {name} lists {dup!r} twice: each value of an axis is one configuration")


def grid_size(axes: dict[str, list]) -> int:
    return math.prod(len(v) for v in axes.values())
