"""Run a study's unfinished experiments into its folder: resumable, failure-isolated, one writer.

Study folder::

    config.json              the stored study (studies/study.py), data provenance, versions, commit
    experiments/<id>.json    one per finished experiment, written atomically the moment it ends
    checkpoints/<id>/        full training state, for experiments that checkpoint (long runs)

A study killed at any moment resumes: every experiment with a readable JSON is kept, the rest run
(from their newest checkpoint when they have one). An experiment that diverges, runs out of
memory or raises is recorded with its status and the study goes on. Whatever the executor, this
process alone writes the records, so no shared filesystem is needed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import torch
from tqdm.auto import tqdm

from .. import failpoints, interrupt, tracking
from ..config import DataConfig, ExperimentConfig, validate
from ..data import TokenData, prepare_data
from ..errors import UserError
from ..tracking import TrackingSpec
from ..utils import atomic_write_json, read_json
from .spec import ExperimentSpec
from .study import Study

Log = Callable[[str], None]
EXPERIMENTS_DIR = "experiments"


def default_log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


@dataclass
class Job:
    """One experiment, resolved: what the executor needs to train it and where its files go."""

    spec: ExperimentSpec
    cfg: ExperimentConfig
    data: TokenData
    checkpoint_dir: Path | None = None  # full-state checkpoints (train.checkpoint_every); resume point
    final_model: Path | None = None  # where to save the trained model (long runs)
    resume_from: Path | None = None  # an explicit checkpoint to continue from (else the newest in checkpoint_dir)
    tracking: TrackingSpec | None = None  # live tracking (TensorBoard, W&B, MLflow)
    stop_at: int | None = None  # stop (and checkpoint) at this step: a successive-halving rung, a WSD branch point
    origin: dict | None = None  # a WSD branch: the trunk and step it continues from (kept in the record)


class Executor(Protocol):
    """Turns jobs into (job, record) pairs, in any order; never raises for a failed experiment."""

    def run(self, jobs: list[Job], log: Log, progress: bool) -> Iterator[tuple[Job, dict]]: ...


def data_key(cfg: DataConfig) -> str:
    return json.dumps(cfg.__dict__, sort_keys=True)


class DataSets:
    """Each distinct data config of a study prepared once (the token cache makes a rerun cheap)."""

    def __init__(self, log: Log = default_log):
        self.log, self.by_key = log, {}

    def get(self, cfg: DataConfig) -> TokenData:
        key = data_key(cfg)
        if key not in self.by_key:
            self.by_key[key] = prepare_data(cfg, log=self.log)
        return self.by_key[key]

    def provenance(self) -> dict[str, dict]:
        return {d.provenance["cache_key"]: d.provenance for d in self.by_key.values()}


def resolve_configs(study: Study) -> dict[str, ExperimentConfig]:
    """Every experiment's config, validated up front: an impossible combination is one clear line
    before anything runs, not a study of error records."""
    out = {}
    for e in study.experiments:
        cfg = e.config(study.base)
        try:
            validate(cfg)
        except UserError as err:
            raise UserError(f"experiment {e.id} ({_settings(e)}): {err}") from None
        out[e.id] = cfg
    return out


def _settings(e: ExperimentSpec) -> str:
    return ", ".join(f"{k}={v}" for k, v in e.overrides.items() if k != "train.seed") or "base settings"


def load_finished(study_dir: Path, log: Log = default_log, exp_dir: Path | None = None,
                  study: Study | None = None, configs: dict[str, ExperimentConfig] | None = None) -> dict[str, dict]:
    """Finished experiment records by id (``records.read_records``: only what this study would have written;
    the rest is said and treated as unfinished). Interrupted runs (stopped by a signal) run again."""
    from .records import read_records

    exp_dir = exp_dir or study_dir / EXPERIMENTS_DIR
    specs = {e.id: e for e in study.experiments} if study is not None else None
    if specs is None:  # no stored study to check against: readable records by their own ids
        specs = {}
        for f in sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []:
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
                specs[f.stem] = ExperimentSpec(f.stem, {}, rec.get("config_id") or f.stem, stage=rec.get("stage", "grid"))
            except (ValueError, UnicodeDecodeError, OSError, AttributeError, TypeError):
                pass
    done, _ = read_records(exp_dir, specs, configs, log, set_aside=study is not None)
    return {k: r for k, r in done.items() if r.get("status") != "interrupted"}


def set_aside_crashes(study_dir: Path, log: Log = default_log) -> list[str]:
    """On --resume: records of crashed runs (``error``: no evidence about their settings) move to
    ``experiments/crashed/`` (kept, never deleted), so those experiments run again."""
    exp_dir = study_dir / EXPERIMENTS_DIR
    moved = []
    for f in sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []:
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if isinstance(rec, dict) and rec.get("status") == "error":
            (exp_dir / "crashed").mkdir(exist_ok=True)
            os.replace(f, exp_dir / "crashed" / f"{f.stem}.{int(time.time())}.json")
            moved.append(f.stem)
    if moved:
        log(f"{len(moved)} crashed experiment(s) run again (their records kept in experiments/crashed/): "
            f"{', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}")
    return moved


def latest_checkpoint(folder: Path | None, log: Log = default_log) -> Path | None:
    """The newest readable training checkpoint in ``folder`` (unreadable ones are skipped, said once)."""
    from ..checkpoint import read_checkpoint

    if folder is None or not folder.is_dir():
        return None
    found = sorted(folder.glob("checkpoint_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]), reverse=True)
    for path in found:
        try:
            if "optimizers" in read_checkpoint(path):
                return path
        except UserError as e:
            log(f"skipping {path.name}: {e}")
    return None


class ModelCache:
    """Reuse the model of the previous experiment when the architecture is the same: ``train``
    re-initialises it, which saves rebuilding (and on CUDA recompiling) it."""

    def __init__(self):
        self.key, self.model = None, None

    def get(self, key: str):
        return self.model if key == self.key else None

    def put(self, key: str | None, model) -> None:
        self.key, self.model = key, model


def run_one(job: Job, *, log: Log = default_log, progress: bool = True, cache: ModelCache | None = None) -> dict:
    """Train one experiment and return its record; any failure becomes a record, never an exception.

    A crash (an exception that is neither a bad setting nor out of memory: a CUDA error, a broken worker) says
    nothing about the hyperparameters, so it is retried once at once; the record keeps the first error."""
    record = _attempt(job, log=log, progress=progress, cache=cache)
    if record["status"] == "error" and record.get("crash"):
        first = record.get("error")
        log(f"{job.spec.id}: crashed ({first}); retrying once")
        record = _attempt(job, log=log, progress=progress, cache=cache)
        record.update(retried=1, first_error=first)
    return record


def _attempt(job: Job, *, log: Log, progress: bool, cache: ModelCache | None) -> dict:
    from ..checkpoint import save_model
    from ..training import train

    spec, cfg = job.spec, result_config(job.cfg, job.data)
    t0 = time.perf_counter()
    key = json.dumps(cfg.model.__dict__, sort_keys=True)
    try:
        resume = job.resume_from or latest_checkpoint(job.checkpoint_dir, log)
        if resume is not None:
            log(f"{spec.id}: resuming from {resume}")
        start = int(Path(resume).stem.rsplit("_", 1)[1]) if resume is not None else 0
        tracker = tracking.open_run(job.tracking, spec.id, spec.hyperparameters, start, log)
        result, model = train(cfg, job.data, model=cache.get(key) if cache else None, log=log, progress=progress,
                              desc=spec.id, checkpoint_dir=job.checkpoint_dir, resume_from=resume,
                              hellaswag=_hellaswag(cfg, job.data), tracker=tracker, stop_at=job.stop_at)
        if tracker is not None:
            tracker.finish(tracking.summary_metrics(result))
        if cache:
            cache.put(key, model)
        if job.final_model is not None and result["status"] == "ok":
            save_model(job.final_model, cfg, model, job.data.tokenizer)
        if job.origin is not None:
            result["branched_from"] = job.origin
    except UserError as e:
        result = {"status": "error", "error": str(e)}
    except OSError:  # the disk, not the model: stop the study (the CLI says which path and why)
        raise
    except torch.OutOfMemoryError as e:  # while building or moving the model (train() handles the steps)
        result = {"status": "oom", "error": str(e).splitlines()[0]}
        if cache:
            cache.put(None, None)
    except Exception as e:  # one broken experiment must not end the study
        result = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5),
                  "crash": True}
        if cache:
            cache.put(None, None)
    return make_record(spec, cfg, result, wall=time.perf_counter() - t0)


def result_config(cfg: ExperimentConfig, data: TokenData) -> ExperimentConfig:
    """The config as trained: the model's vocabulary is the tokenizer's."""
    cfg = ExperimentConfig.from_dict(cfg.to_dict())
    cfg.model.vocab_size = data.vocab_size
    return cfg


def make_record(spec: ExperimentSpec, cfg: ExperimentConfig, result: dict[str, Any], wall: float) -> dict:
    """The one shape of an experiment record (whatever the executor, whatever the outcome)."""
    return {"experiment_id": spec.id, "config_id": spec.config_id, "stage": spec.stage,
            "hyperparameters": spec.hyperparameters, "config": cfg.to_dict(), **result,
            "experiment_wall_time_s": wall}


def _hellaswag(cfg: ExperimentConfig, data: TokenData):
    if not (cfg.train.hellaswag_every and cfg.train.hellaswag_source):
        return None
    from ..hellaswag import HellaSwagEvaluator
    from ..utils import resolve_device

    return HellaSwagEvaluator(cfg.train.hellaswag_source, data.tokenizer, cfg.model.max_seq_len, limit=None,
                              device=resolve_device(cfg.train.device))


class LocalExecutor:
    """One experiment after another in this process, reusing the model between them (and between calls when
    given a ``cache``: the WSD families' many short calls then build and compile their model once)."""

    def __init__(self, cache: ModelCache | None = None):
        self.cache = cache

    def run(self, jobs: list[Job], log: Log, progress: bool) -> Iterator[tuple[Job, dict]]:
        cache = self.cache or ModelCache()
        for job in jobs:
            yield job, run_one(job, log=log, progress=progress, cache=cache)


def run_experiments(study_dir: Path, study: Study, executor: Executor | None = None, *,
                    datasets: DataSets | None = None, log: Log = default_log, progress: bool = True,
                    final_model: Path | None = None, rerun_from: dict[str, Path] | None = None,
                    tracking_spec: TrackingSpec | None = None, subset: list[ExperimentSpec] | None = None,
                    stop_at: int | None = None, out_dir: Path | None = None,
                    checkpoints: bool = False, on_record: Callable[[dict], None] | None = None,
                    origins: dict[str, dict] | None = None) -> list[dict]:
    """Run every unfinished experiment of ``study``; return all records (earlier + now) in study order.
    ``rerun_from`` {id: checkpoint}: continue those experiments from that checkpoint even if finished
    (their record is replaced when the continued run ends); ``origins`` {id: {experiment_id, step}}: they
    are WSD branches of that trunk (``branching.py``), said in their records."""
    rerun_from = rerun_from or {}
    executor = executor or LocalExecutor()
    datasets = datasets or DataSets(log)
    configs = resolve_configs(study)
    wanted = subset if subset is not None else study.experiments
    exp_dir = out_dir or study_dir / EXPERIMENTS_DIR
    exp_dir.mkdir(parents=True, exist_ok=True)
    done = load_finished(study_dir, log, exp_dir, study, configs)
    pending = [e for e in wanted if e.id not in done or e.id in rerun_from]
    if len(pending) < len(wanted):
        log(f"{len(wanted) - len(pending)} of {len(wanted)} experiments already finished; running {len(pending)}")
    jobs = [Job(e, configs[e.id], datasets.get(configs[e.id].data), study_dir / "checkpoints" / e.id
                if configs[e.id].train.checkpoint_every or checkpoints else None, final_model, rerun_from.get(e.id),
                tracking_spec, stop_at, (origins or {}).get(e.id)) for e in pending]
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(pending), desc="experiments",
               unit="exp", disable=None if progress else True, dynamic_ncols=True, file=sys.stderr)
    try:
        for job, record in executor.run(jobs, log, progress):
            path = exp_dir / f"{job.spec.id}.json"
            atomic_write_json(path, record)
            done[job.spec.id] = read_json(path)
            failpoints.reached("runner:recorded")
            bar.update(1)
            log(one_line(record))
            if on_record is not None:
                on_record(done[job.spec.id])
            if interrupt.requested() is not None:
                break
    finally:
        bar.close()
    if out_dir is not None:
        return [done[e.id] for e in wanted if e.id in done]
    return [done[e.id] for e in study.experiments if e.id in done]


def own_seconds(r: dict) -> float:
    """Training + evaluation seconds a record cost this study: a WSD branch's record carries its trunk's time
    up to the branch point (it is the dedicated run's record), which the trunk's record counts already."""
    total = (r.get("train_time_s") or 0) + (r.get("eval_time_s") or 0)
    return total - (r.get("resumed_seconds") or 0) if r.get("branched_from") else total


def one_line(r: dict) -> str:
    hp = " ".join(f"{k}={v}" for k, v in r["hyperparameters"].items() if k != "seed")
    if r["status"] != "ok":
        return f"{r['experiment_id']} [{hp}] {r['status'].upper()}: {r.get('error') or ''}".rstrip(": ")
    return (f"{r['experiment_id']} [{hp}] ok | val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.3f} | "
            f"{r['wall_time_s']:.1f}s")


def jobs_need_local(jobs: Iterable[Job]) -> bool:
    """Jobs that write files of their own (checkpoints, a final model) must run where the folder is."""
    return any(j.checkpoint_dir is not None or j.final_model is not None for j in jobs)
