"""Run a study's unfinished experiments into its folder: resumable, failure-isolated, one writer.

The study folder's layout is ``folder.py``'s. A study killed at any moment resumes: every experiment with a readable
JSON is kept, the rest run
(from their newest checkpoint when they have one). An experiment that diverges, runs out of
memory or raises is recorded with its status and the study goes on. Whatever the executor, this
process alone writes the records, so no shared filesystem is needed.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ... import failpoints, interrupt, tracking
from ...config import DataConfig, ExperimentConfig, validate
from ...data import TokenData, prepare_data
from ...errors import UserError
from ...log import to_stderr
from ...tracking import TrackingSpec
from ...utils import atomic_write_json, read_json
from ..spec.file import ExperimentSpec
from ..spec.stored import Study
from .folder import checkpoint_dir, checkpoint_step, experiments_dir, latest_checkpoint

Log = Callable[[str], None]


default_log = to_stderr


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


def resolve_configs(study: Study, specs: list[ExperimentSpec] | None = None) -> dict[str, ExperimentConfig]:
    """Every experiment's config (or ``specs``'), validated up front: an impossible combination is one clear
    line before anything runs, not a study of error records."""
    out = {}
    for e in study.experiments if specs is None else specs:
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
    from .records import read_records, stored_data_keys

    exp_dir = exp_dir or experiments_dir(study_dir)
    specs = {e.id: e for e in study.experiments} if study is not None else None
    if specs is None:  # no stored study to check against: readable records by their own ids
        specs = {}
        for f in sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []:
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
                specs[f.stem] = ExperimentSpec(f.stem, {}, rec.get("config_id") or f.stem, stage=rec.get("stage",
                                                                                                         "grid"))
            except (ValueError, UnicodeDecodeError, OSError, AttributeError, TypeError):
                pass
    done, _ = read_records(exp_dir, specs, configs, log, set_aside=study is not None,
                           data_keys=stored_data_keys(study_dir) if study is not None else None)
    return {k: r for k, r in done.items() if r.get("status") != "interrupted"}


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
    from ...checkpoint import save_model
    from ...training import train

    spec, cfg = job.spec, result_config(job.cfg, job.data)
    t0 = time.perf_counter()
    key = json.dumps(cfg.model.__dict__, sort_keys=True)
    try:
        resume = job.resume_from or latest_checkpoint(job.checkpoint_dir, log)
        if resume is not None:
            log(f"{spec.id}: resuming from {resume}")
        start = checkpoint_step(resume) if resume is not None else 0
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
    from ...hellaswag import HellaSwagEvaluator
    from ...utils import resolve_device

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


@dataclass
class StudyRun:
    """What every run of one study shares, built once by the pipeline: its folder, the study, the resolved
    configs (validated once; experiments added while it runs are validated when first run), the prepared
    data, the executor, the log, progress bars and live tracking."""

    folder: Path
    study: Study
    datasets: DataSets
    executor: Executor | None = None  # None: LocalExecutor
    log: Log = default_log
    progress: bool = True
    tracking: TrackingSpec | None = None
    configs: dict[str, ExperimentConfig] = field(default_factory=dict)

    def config(self, spec: ExperimentSpec) -> ExperimentConfig:
        if spec.id not in self.configs:
            self.configs.update(resolve_configs(self.study, [spec]))
        return self.configs[spec.id]


@dataclass
class Batch:
    """Which experiments one call runs, and how: the whole study, a halving rung, a WSD branch or trunk."""

    subset: list[ExperimentSpec] | None = None  # None: every experiment of the study
    stop_at: int | None = None  # stop (and checkpoint) there: a rung, a branch point
    out_dir: Path | None = None  # records elsewhere than experiments/ (a rung's)
    checkpoints: bool = False  # checkpoint every run (to be continued), not only those whose config asks
    final_model: Path | None = None  # save the trained model there (long runs)
    rerun_from: dict[str, Path] = field(default_factory=dict)  # continue these from that checkpoint, even if done
    origins: dict[str, dict] = field(default_factory=dict)  # WSD branches: the trunk and step (in their records)
    on_record: Callable[[dict], None] | None = None  # called with each new record
    expected_more: int = 0  # runs that may be added after this batch (confirmation): the bar and its ETA count them


def run_experiments(ctx: StudyRun, batch: Batch | None = None, executor: Executor | None = None) -> list[dict]:
    """Run every unfinished experiment of ``batch`` (default: the whole study); return all records (earlier + now)
    in study order. ``executor`` overrides the study's for this call (WSD families run here, in this process)."""
    batch, study = batch or Batch(), ctx.study
    configs = {e.id: ctx.config(e) for e in study.experiments}
    wanted = batch.subset if batch.subset is not None else study.experiments
    exp_dir = batch.out_dir or experiments_dir(ctx.folder)
    exp_dir.mkdir(parents=True, exist_ok=True)
    done = load_finished(ctx.folder, ctx.log, exp_dir, study, configs)
    pending = [e for e in wanted if e.id not in done or e.id in batch.rerun_from]
    if len(pending) < len(wanted):
        ctx.log(f"{len(wanted) - len(pending)} of {len(wanted)} experiments already finished; running {len(pending)}")
    jobs = [_job(ctx, e, configs[e.id], batch) for e in pending]
    more = f" (incl. up to {batch.expected_more} confirmation)" if batch.expected_more else ""
    bar = tqdm(total=len(wanted) + batch.expected_more, initial=len(wanted) - len(pending), desc="experiments" + more,
               unit="exp", disable=None if ctx.progress else True, dynamic_ncols=True, file=sys.stderr)
    try:
        for job, record in (executor or ctx.executor or LocalExecutor()).run(jobs, ctx.log, ctx.progress):
            path = exp_dir / f"{job.spec.id}.json"
            atomic_write_json(path, record)
            done[job.spec.id] = read_json(path)
            failpoints.reached("runner:recorded")
            bar.update(1)
            ctx.log(one_line(record))
            if batch.on_record is not None:
                batch.on_record(done[job.spec.id])
            if interrupt.requested() is not None:
                break
    finally:
        bar.close()
    order = wanted if batch.out_dir is not None else study.experiments
    return [done[e.id] for e in order if e.id in done]


def _job(ctx: StudyRun, e: ExperimentSpec, cfg: ExperimentConfig, batch: Batch) -> Job:
    keeps = cfg.train.checkpoint_every or batch.checkpoints
    return Job(e, cfg, ctx.datasets.get(cfg.data), checkpoint_dir(ctx.folder, e.id) if keeps else None,
               batch.final_model, batch.rerun_from.get(e.id), ctx.tracking, batch.stop_at, batch.origins.get(e.id))


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
