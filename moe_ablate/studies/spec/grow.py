"""Grow a stored study in place: ``--resume DIR`` with a config (or flags) whose study is a superset of the stored
one (more values on an axis, more seeds, more configurations) extends it. Finished experiments keep their ids and
records byte for byte; only the new ones run; the analysis covers all. Anything else that differs (a base setting,
the metric, halving, confirmation, a value or seed taken away) would mix runs of two studies, and is refused with
the field named.

Experiments are matched by what they run (their overrides, seed included), not by id: adding a value to an axis
renumbers a grid's ``exp_NNN`` ids, so a new experiment that reuses an old id under other settings gets a fresh one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from ...errors import UserError
from .file import ExperimentSpec
from .stored import Study

# what must be equal for two studies to be one (``Study.identity`` less the name, the kind's params and the
# experiments, which growing may change)
SAME = ("kind", "metric", "confirm", "confirm_max", "halving", "min_steps", "halving_restart")


def _key(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


def _config_key(overrides: dict) -> str:
    return _key({k: v for k, v in overrides.items() if k != "train.seed"})


def _base_diff(old: dict, new: dict) -> list[str]:
    return [f"{section}.{k} ({old[section][k]!r} in the study, {new[section].get(k)!r} now)"
            for section in old for k in old[section] if new.get(section, {}).get(k) != old[section][k]]


def grow(stored: Study, new: Study, folder: str = "the study",
         params_grow: Callable[[dict, dict], bool] | None = None) -> tuple[Study, int]:
    """(the study to run, how many experiments were added). ``stored`` itself when ``new`` defines the same
    study; raises ``UserError`` naming what differs when ``new`` is not a superset of it. ``params_grow``: the
    kind's ``params_grow`` (its params may change in ways that only add runs later)."""
    if new.identity() == stored.identity() and [e.to_dict() for e in new.experiments] == \
            [e.to_dict() for e in stored.experiments if e.stage == "grid"]:
        return stored, 0
    why = f"cannot grow {folder} into this study"
    hint = "only more axis values, seeds or configurations can be added; start a new study for anything else"
    a, b = stored.identity(), new.identity()
    differs = [k for k in SAME if a[k] != b[k]]
    if differs:
        k = differs[0]
        raise UserError(f"{why}: {k} is {a[k]!r} in the study, {b[k]!r} now ({hint})")
    base = _base_diff(a["base"], b["base"])
    if base:
        if base[0].startswith("train.steps "):  # the one base change people expect to grow: say why it cannot
            hint = ("runs of another length are another study: the LR schedule's shape depends on the length, so "
                    "the finished runs cannot be continued to it; start a new study, or compare lengths from one "
                    "trunk with a [grid.train] steps axis and schedule = \"wsd\"")
        raise UserError(f"{why}: a base setting differs: {'; '.join(base[:3])} ({hint})")
    if stored.halving:
        raise UserError(f"{why}: a study run with successive halving cannot grow (its rungs were decided on the "
                        "configurations it had); start a new study")
    new_by_key = {_key(e.overrides): e for e in new.experiments}
    grid = [e for e in stored.experiments if e.stage == "grid"]
    missing = [e for e in grid if _key(e.overrides) not in new_by_key]
    if missing:
        e = missing[0]
        shown = ", ".join(f"{k}={v}" for k, v in e.overrides.items())
        raise UserError(f"{why}: its experiment {e.id} ({shown}) is not in the new one ({len(missing)} of "
                        f"{len(grid)} are missing; {hint})")
    have = {_key(e.overrides) for e in stored.experiments}
    ids = {e.id for e in stored.experiments}
    config_of = {_config_key(e.overrides): e.config_id for e in stored.experiments}
    renamed: dict[str, str] = {}  # a new configuration's config_id, when its own is taken in the stored study
    added = []
    for e in new.experiments:
        if _key(e.overrides) in have:
            continue
        ck = _config_key(e.overrides)
        config_id = config_of.get(ck)
        if config_id is None:
            config_id = renamed.get(e.config_id) or _fresh(e.config_id, {x.config_id for x in stored.experiments}
                                                           | set(renamed.values()))
            renamed[e.config_id] = config_id
            config_of[ck] = config_id
        exp_id = e.id if e.id not in ids and e.config_id == config_id else _fresh_id(e, config_id, ids)
        ids.add(exp_id)
        added.append(ExperimentSpec(exp_id, e.overrides, config_id, e.labels, e.stage))
    if not added:  # the same experiments: another kind setting (a target, a mode) would change the study silently
        keys = sorted(k for k in set(a["params"]) | set(b["params"]) if a["params"].get(k) != b["params"].get(k))
        if keys and a["name"] == b["name"] and params_grow is not None and params_grow(a["params"], b["params"]):
            return replace(stored, params=new.params, flags=new.flags if new.flags is not None else stored.flags), 0
        if keys or a["name"] != b["name"]:
            what = f"params {', '.join(keys)}" if keys else f"name ({a['name']!r} in the study, {b['name']!r} now)"
            raise UserError(f"cannot resume {folder}: it was started with a different config ({what} differ); resume "
                            "with the same flags or none, or start a new study")
        return stored, 0
    grown = replace(stored, params=new.params, description=new.description or stored.description,
                    experiments=_old_then_added(stored.experiments, added),
                    flags=new.flags if new.flags is not None else stored.flags)
    return grown, len(added)


def _old_then_added(old: list[ExperimentSpec], added: list[ExperimentSpec]) -> list[ExperimentSpec]:
    """The old experiments in their order, then the added ones: what comes after the confirmation stage is what
    the study grew by (``pipeline.configurations_after_confirmation`` confirms those that need it)."""
    return old + added


def _fresh(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 1
    while f"{name}_g{n}" in taken:
        n += 1
    return f"{name}_g{n}"


def _fresh_id(e: ExperimentSpec, config_id: str, taken: set[str]) -> str:
    """An id for a new run of ``config_id``: the configuration's next seed slot (``<config>_s<k>``) when it is a
    seed repeat, else the configuration's own name made unique."""
    seed_suffix = e.id[len(e.config_id):] if e.id.startswith(e.config_id) else ""
    return _fresh(config_id + seed_suffix, taken)
