"""Reading a study's experiment records: the one gate every record passes before it counts.

A record is evidence only when it is what the study would have written for one of its experiments: the file
is ``experiments/<experiment_id>.json`` (a file manager's ``exp_002 copy.json`` is not a second seed), the id is
an experiment of the stored study, its ``config_id`` is that experiment's configuration, its status is one the
tool writes, and the settings it was trained with are the ones the experiment resolves to now (a base setting
edited in ``config.json``, or a record copied in from another study, would otherwise be ranked beside runs made
otherwise). Anything else is skipped with its reason, said once, and never ranked; on ``--resume`` such an
experiment runs again and the record it had is moved to ``experiments/set_aside/`` (kept, never deleted).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError

from ...config import ExperimentConfig

STATUSES = ("ok", "diverged", "oom", "error", "pruned", "interrupted")
Number = float | None  # strict: an int or a float, never a bool or a string; None: not measured (or not finite)


class StoredRecord(BaseModel):
    """The fields of an experiment record (``runner.make_record``) that the analysis reads, typed as the tool
    writes them; every other field passes as it is. ``problem`` checks the record's identity first (its file, its
    experiment, its configuration), then this schema, then its settings and data against the study's."""

    model_config = ConfigDict(extra="allow", strict=True)
    hyperparameters: dict[str, Any]
    config: dict[str, Any] = {}
    data: dict[str, Any] = {}
    steps: StrictInt | None = None
    val_loss: Number = None
    best_val_loss: Number = None
    final_train_loss: Number = None
    val_accuracy: Number = None
    val_perplexity: Number = None
    train_time_s: Number = None
    tokens_per_s: Number = None
    peak_memory_gb: Number = None
    flops: Number = None
    tokens: Number = None
    params_active: Number = None
    params_total: Number = None
    history: dict[str, list[dict[str, Any]]] = {}


def _schema_problem(rec: dict) -> str | None:
    try:
        StoredRecord.model_validate(rec)
    except ValidationError as e:
        err = e.errors()[0]
        shown = repr(err.get("input"))
        return (f"malformed: {'.'.join(str(p) for p in err['loc'])} = "
                f"{shown if len(shown) <= 40 else shown[:37] + '...'}: {err['msg'].lower()}")
    return None
SET_ASIDE_DIR = "set_aside"
# resolved when the run starts, so a record legitimately differs from its experiment's config here
RESOLVED_AT_RUN = {("model", "vocab_size")}


def _flat(d: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(d, dict):
        out: dict[tuple, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, prefix + (k,)))
        return out
    return {prefix: d}


def config_differences(recorded: Any, expected: ExperimentConfig) -> list[str]:
    """Settings where a record's ``config`` differs from what its experiment resolves to ("train.steps 2 != 4")."""
    if not isinstance(recorded, dict):
        return ["config is not a table"]
    want = _flat(json.loads(json.dumps(expected.to_dict())))
    got = _flat(recorded)
    return [f"{'.'.join(k)} {got.get(k)!r} != {want.get(k)!r}" for k in sorted(set(want) | set(got))
            if k not in RESOLVED_AT_RUN and got.get(k) != want.get(k)]


def stored_data_keys(study_dir: Path, stored: dict | None = None) -> set[str] | None:
    """The tokenisations (data cache keys) the study recorded in ``config.json`` (None: none recorded).
    ``stored``: that file as the caller already parsed it (read once, so the check and the study agree)."""
    try:
        if stored is None:
            stored = json.loads((study_dir / "config.json").read_text(encoding="utf-8"))
        data = stored.get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return set(data) if isinstance(data, dict) and data else None


def problem(rec: Any, stem: str, specs: dict, configs: dict[str, ExperimentConfig] | None,
            data_keys: set[str] | None = None) -> str | None:
    """Why ``rec`` (read from ``<stem>.json``) is not evidence for this study, or None when it is.
    ``data_keys``: the tokenisations the study trained on; a record made on another is not its evidence."""
    if not isinstance(rec, dict):
        return "not an experiment record"
    eid = rec.get("experiment_id")
    if not isinstance(eid, str):
        return "no experiment_id"
    if eid != stem:
        return f"holds experiment {eid!r} under another file name (a copy?)"
    if rec.get("status") not in STATUSES:
        return f"unknown status {rec.get('status')!r}"
    spec = specs.get(eid)
    if spec is None:
        return f"{eid!r} is not an experiment of this study"
    if rec.get("config_id", spec.config_id) != spec.config_id:
        return f"names configuration {rec.get('config_id')!r}; the study's {eid} belongs to {spec.config_id!r}"
    if not isinstance(rec.get("hyperparameters"), dict):
        return "hyperparameters is not a table"
    why = _schema_problem(rec)
    if why is not None:
        return why
    if json.loads(json.dumps(rec["hyperparameters"], default=str)) != json.loads(json.dumps(spec.hyperparameters)):
        return f"hyperparameters {rec['hyperparameters']} differ from the study's {eid}: {spec.hyperparameters}"
    if rec.get("stage", spec.stage) != spec.stage:
        return f"stage {rec.get('stage')!r}; the study's {eid} is a {spec.stage} run"
    made_on = rec.get("data", {}).get("cache_key") if isinstance(rec.get("data"), dict) else None
    if data_keys is not None and made_on is not None and made_on not in data_keys:
        ours = ", ".join(k[:12] for k in sorted(data_keys))
        return f"made on other data (tokenisation {str(made_on)[:12]}; the study's: {ours})"
    if configs is not None and "config" in rec:
        diff = config_differences(rec["config"], configs[eid])
        if diff:
            return f"made with other settings ({'; '.join(diff[:3])}{' ...' if len(diff) > 3 else ''})"
    return None


def read_records(exp_dir: Path, specs: dict, configs: dict[str, ExperimentConfig] | None,
                 log: Callable[[str], None], set_aside: bool = False,
                 data_keys: set[str] | None = None) -> tuple[dict[str, dict], list[dict[str, str]]]:
    """({experiment id: record} for the records that pass ``problem``, [{file, reason}] for the others).
    ``set_aside``: a record at its own experiment's path that fails (other settings, another configuration)
    moves to ``experiments/set_aside/`` so that the experiment can run again without overwriting it."""
    done: dict[str, dict] = {}
    skipped: list[dict[str, str]] = []
    if not exp_dir.is_dir():
        return done, skipped
    for f in sorted(exp_dir.glob("*.json")):
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
            why = problem(rec, f.stem, specs, configs, data_keys)
        except (ValueError, UnicodeDecodeError, OSError) as e:
            why = f"unreadable ({type(e).__name__})"
        if why is None:
            done[f.stem] = rec
            continue
        skipped.append({"file": f.name, "reason": why})
        log(f"skipped experiment file {f.name}: {why}")
        if set_aside and f.stem in specs and why.startswith(("made with", "made on", "names configuration", "stage",
                                                               "unknown status", "hyperparameters", "malformed")):
            (exp_dir / SET_ASIDE_DIR).mkdir(exist_ok=True)
            os.replace(f, exp_dir / SET_ASIDE_DIR / f"{f.stem}.{int(time.time())}.json")
            log(f"{f.stem} runs again; the record it had is kept in {exp_dir.name}/{SET_ASIDE_DIR}/")
    return done, skipped
