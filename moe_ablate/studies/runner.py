"""Run a list of experiments into a study folder: resumable, failure-isolated, tokenise-once.

Study folder::

    config.json              resolved study config, experiments, data provenance, versions, commit
    experiments/<id>.json    one per finished experiment, written atomically the moment it ends

A study killed at any moment (Ctrl-C, SIGKILL, power loss) resumes with ``resume=True``: every
experiment with a readable JSON is kept, the rest (including the interrupted one) run from
scratch. An experiment that diverges, runs out of memory or raises is recorded with its status
and the study goes on.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..config import ExperimentConfig, validate
from ..data import TokenData, prepare_data
from ..errors import UserError
from ..utils import atomic_write_json, git_commit, read_json, software_versions
from .spec import ExperimentSpec

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def study_identity(study: dict[str, Any], base: ExperimentConfig, experiments: list[ExperimentSpec]) -> dict:
    """What must match for a resume to be the same study."""
    return {"study": study, "base": base.to_dict(),
            "experiments": [{"id": e.id, "overrides": e.overrides} for e in experiments]}


def load_finished(study_dir: Path, log: Log = _default_log, subdir: str = "experiments") -> dict[str, dict]:
    """Finished experiment records by id; unreadable files are reported and treated as unfinished."""
    done: dict[str, dict] = {}
    exp_dir = study_dir / subdir
    if not exp_dir.is_dir():
        return done
    for f in sorted(exp_dir.glob("*.json")):
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
            done[rec["experiment_id"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            log(f"skipping unreadable experiment file {f.name}")
    return done


def prepare_study(study_dir: Path, identity: dict, base: ExperimentConfig, resume: bool,
                  log: Log = _default_log) -> TokenData:
    """Check the folder (fresh, or resumable with the same config), tokenise once, write config.json."""
    cfg_path = study_dir / "config.json"
    if resume:
        if not cfg_path.exists():
            raise UserError(f"cannot resume {study_dir}: no config.json there")
        stored = read_json(cfg_path)
        if stored.get("identity") != json.loads(json.dumps(identity)):
            raise UserError(f"cannot resume {study_dir}: it was started with a different config "
                            "(resume with the same flags, or start a new study)")
    elif study_dir.exists() and any(study_dir.iterdir()):
        raise UserError(f"study folder {study_dir} already exists; use --resume {study_dir} or another --name")
    data = prepare_data(base.data, log=log)
    if not resume:
        atomic_write_json(cfg_path, {
            "identity": identity, "data": data.provenance, "software": software_versions(),
            "git_commit": git_commit(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    return data


@dataclass
class ExecutorOptions:
    """How experiments are dispatched. ``local``: one after another in this process.
    ``ray``: one Ray task per experiment (see ``ray_executor.py``)."""

    kind: str = "local"
    ray_address: str | None = None
    gpus_per_experiment: float | None = None  # None: 1 when CUDA is available, else 0
    cpus_per_experiment: float = 1.0


class ModelCache:
    """Reuse the model of the previous experiment when the architecture is the same: ``train``
    re-initialises it, which saves rebuilding (and on CUDA recompiling) it."""

    def __init__(self):
        self.key, self.model = None, None

    def get(self, key: str):
        return self.model if key == self.key else None

    def put(self, key: str | None, model) -> None:
        self.key, self.model = key, model


def run_one(spec: ExperimentSpec, base: ExperimentConfig, data: TokenData, *, log: Log = _default_log,
            progress: bool = True, cache: ModelCache | None = None) -> dict:
    """Train one experiment and return its record; any failure becomes a record, never an exception."""
    from ..train import train

    cfg = spec.config(base)
    cfg.model.vocab_size = data.vocab_size
    t0 = time.perf_counter()
    key = json.dumps(cfg.model.__dict__, sort_keys=True)
    try:
        validate(cfg)
        result, model = train(cfg, data, model=cache.get(key) if cache else None, log=log, progress=progress,
                              desc=spec.id)
        if cache:
            cache.put(key, model)
    except UserError as e:
        result = {"status": "error", "error": str(e)}
    except torch.OutOfMemoryError as e:  # while building or moving the model (train() handles the steps)
        result = {"status": "oom", "error": str(e).splitlines()[0]}
        if cache:
            cache.put(None, None)
    except Exception as e:  # one broken experiment must not end the study
        result = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}
        if cache:
            cache.put(None, None)
    return {"experiment_id": spec.id, "hyperparameters": spec.hyperparameters, "config": cfg.to_dict(), **result,
            "experiment_wall_time_s": time.perf_counter() - t0}


def run_experiments(
    study_dir: Path,
    base: ExperimentConfig,
    experiments: list[ExperimentSpec],
    data: TokenData,
    *,
    log: Log = _default_log,
    progress: bool = True,
    record_extra: Callable[[ExperimentSpec, ExperimentConfig], dict] | None = None,
    executor: ExecutorOptions | None = None,
    subdir: str = "experiments",
    suffix: str = "",
) -> list[dict]:
    """Run every unfinished experiment; return all records (finished earlier + now) in order.

    Whatever the executor, this process alone writes ``<subdir>/<id><suffix>.json``, atomically, the
    moment an experiment's record arrives: one writer, no shared filesystem needed, and the same
    folder (so a study started with one executor resumes with the other).
    """
    executor = executor or ExecutorOptions()
    exp_dir = study_dir / subdir
    exp_dir.mkdir(parents=True, exist_ok=True)
    done = load_finished(study_dir, log, subdir)
    pending = [e for e in experiments if e.id not in done]
    if done:
        log(f"{len([e for e in experiments if e.id in done])} of {len(experiments)} experiments already finished; "
            f"running {len(pending)}")
    bar = tqdm(total=len(experiments), initial=len(experiments) - len(pending), desc="experiments",
               unit="exp", disable=None if progress else True, dynamic_ncols=True, file=sys.stderr)
    if executor.kind == "ray":
        from .ray_executor import run_with_ray

        results = run_with_ray(pending, base, data, executor, log)
    elif executor.kind == "local":
        cache = ModelCache()
        results = ((spec, run_one(spec, base, data, log=log, progress=progress, cache=cache)) for spec in pending)
    else:
        raise UserError(f"unknown executor {executor.kind!r} (use local or ray)")
    try:
        for spec, record in results:
            cfg = spec.config(base)
            if record_extra:
                record = {**record, **record_extra(spec, cfg)}
            path = exp_dir / f"{spec.id}{suffix}.json"
            atomic_write_json(path, record)
            done[spec.id] = read_json(path)
            bar.update(1)
            log(_one_line(record))
    finally:
        bar.close()
    return [done[e.id] for e in experiments if e.id in done]


def _one_line(r: dict) -> str:
    hp = " ".join(f"{k}={v}" for k, v in r["hyperparameters"].items() if k != "seed")
    if r["status"] != "ok":
        return f"{r['experiment_id']} [{hp}] {r['status'].upper()}: {r.get('error') or ''}".rstrip(": ")
    return (f"{r['experiment_id']} [{hp}] ok | val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.3f} | "
            f"{r['wall_time_s']:.1f}s")
