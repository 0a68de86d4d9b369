"""Watch runs live in TensorBoard, Weights & Biases or MLflow, each through its own library.

Each experiment is one tracked run named ``<study>/<experiment id>`` with its hyperparameters as
the run's config/params. The training loop calls ``log`` only at its existing log and eval points,
with values it already has on the host, so tracking adds no per-step sync. A tracker that fails is
reported once and switched off; the experiment never fails because of it. Each library is an
optional extra, imported only when asked for.

Resume without duplicates: a run continued from a checkpoint at step N continues its tracked run
(TensorBoard purges events after N, W&B resumes the same run id, MLflow reuses the run); a run
restarted from step 0 replaces it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import choices
from .errors import UserError

TrackerName = Literal["tensorboard", "wandb", "mlflow"]
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # import name per tracker


@dataclass
class TrackingSpec:
    """Which trackers, and where: ``root`` holds TensorBoard logs, W&B's offline files and MLflow's
    local store (``mlruns/``) unless ``MLFLOW_TRACKING_URI`` names a server."""

    names: tuple[str, ...] = ()
    root: str = ""
    study: str = ""

    def __post_init__(self):
        for n in self.names:
            if n not in choices(TrackerName):
                raise UserError(f"unknown tracker {n!r} (choose from: {', '.join(choices(TrackerName))})")

    def check_installed(self) -> None:
        import importlib.util

        for n in self.names:
            if importlib.util.find_spec(PACKAGES[n]) is None:
                raise UserError(f"--tracker {n} needs the {n} package: pip install 'moe-ablate[{n}]'")


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool)) and v == v}


class _TensorBoard:
    def __init__(self, spec: TrackingSpec, run: str, hparams: dict, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(spec.root) / "tensorboard" / run
        if start_step == 0 and self.dir.exists():
            shutil.rmtree(self.dir)  # a rerun from scratch replaces the old run
        self.writer = SummaryWriter(str(self.dir), purge_step=start_step or None)
        self.hparams = _scalars(hparams)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def finish(self, summary: dict[str, float]) -> None:
        if self.hparams:  # the HParams dashboard: one row per run, its final metrics as columns
            self.writer.add_hparams(self.hparams, {f"hparams/{k}": v for k, v in summary.items()}, run_name=".")
        self.writer.close()


class _Wandb:
    def __init__(self, spec: TrackingSpec, run: str, hparams: dict, start_step: int):
        import wandb

        run_id = hashlib.sha256(run.encode()).hexdigest()[:16]  # stable: a resume continues the same run
        os.makedirs(spec.root, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "moe-ablate"), name=run, id=run_id,
                              group=spec.study, config=hparams, dir=spec.root, reinit="create_new",
                              resume="allow" if start_step else None)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, float]) -> None:
        self.run.summary.update(summary)
        self.run.finish()


def _mlflow_client(spec: TrackingSpec):
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:  # a local store that needs no server; MLflow 3 wants an explicit opt-in for it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (Path(spec.root) / "mlruns").resolve().as_uri()
    return mlflow.MlflowClient(tracking_uri=uri)


def _mlflow_run(client, study: str, name: str, replace: bool):
    exp = client.get_experiment_by_name(study) or client.get_experiment(client.create_experiment(study))
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.runName` = '{name}'")
    if found and not replace:
        return found[0].info.run_id
    for r in found:
        client.delete_run(r.info.run_id)
    return client.create_run(exp.experiment_id, run_name=name).info.run_id


class _MLflow:
    def __init__(self, spec: TrackingSpec, run: str, hparams: dict, start_step: int):
        self.client = _mlflow_client(spec)
        self.run_id = _mlflow_run(self.client, spec.study, run, replace=start_step == 0)
        if start_step == 0:
            for k, v in _scalars(hparams).items():
                self.client.log_param(self.run_id, k, v)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, k.replace("/", "_"), v, step=step)

    def finish(self, summary: dict[str, float]) -> None:
        for k, v in summary.items():
            self.client.log_metric(self.run_id, f"final_{k}", v)
        self.client.set_terminated(self.run_id)


ADAPTERS = {"tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _MLflow}


@dataclass
class Trackers:
    """All trackers of one run. Every call is isolated: a failure is reported once, then that
    tracker is off."""

    active: dict[str, Any] = field(default_factory=dict)
    report: Callable[[str], None] = print

    def _call(self, name: str, method: str, *args) -> None:
        try:
            getattr(self.active[name], method)(*args)
        except Exception as e:  # a tracker must never fail the experiment
            self.report(f"tracker {name} failed and is off for this run: {type(e).__name__}: {str(e)[:200]}")
            del self.active[name]

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name in list(self.active):
            self._call(name, "log", metrics, step)

    def finish(self, summary: dict[str, float]) -> None:
        for name in list(self.active):
            self._call(name, "finish", summary)


def open_run(spec: TrackingSpec | None, experiment_id: str, hparams: dict, start_step: int,
             report: Callable[[str], None]) -> Trackers | None:
    if spec is None or not spec.names:
        return None
    trackers = Trackers(report=report)
    run = f"{spec.study}/{experiment_id}"
    for name in spec.names:
        try:
            trackers.active[name] = ADAPTERS[name](spec, run, hparams, start_step)
        except Exception as e:
            report(f"tracker {name} could not start ({type(e).__name__}: {str(e)[:200]}); the run goes on without it")
    return trackers


def summary_metrics(record: dict) -> dict[str, float]:
    keys = ("val_loss", "best_val_loss", "val_accuracy", "val_perplexity", "final_train_loss", "tokens_per_s",
            "train_time_s", "epochs")
    out = {k: float(record[k]) for k in keys if isinstance(record.get(k), (int, float)) and record[k] == record[k]}
    if (record.get("routing") or {}).get("cv") is not None:
        out["routing_cv"] = float(record["routing"]["cv"])
    return out


def attach_study_outputs(spec: TrackingSpec | None, study_dir: Path, report: Callable[[str], None]) -> None:
    """The study's report.md and figures on a study-level run (TensorBoard: text; W&B and MLflow:
    files of a run named ``<study>/study``)."""
    if spec is None or not spec.names:
        return
    files = [study_dir / "report.md", *sorted(study_dir.glob("*.png"))]
    for name in spec.names:
        try:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                w = SummaryWriter(str(Path(spec.root) / "tensorboard" / spec.study / "_study"))
                w.add_text("report", (study_dir / "report.md").read_text(encoding="utf-8"))
                w.close()
            elif name == "wandb":
                import wandb

                run = wandb.init(project=os.environ.get("WANDB_PROJECT", "moe-ablate"), name=f"{spec.study}/study",
                                 group=spec.study, dir=spec.root, reinit="create_new", job_type="study")
                for f in files:
                    run.save(str(f), base_path=str(study_dir), policy="now")
                run.finish()
            elif name == "mlflow":
                client = _mlflow_client(spec)
                run_id = _mlflow_run(client, spec.study, f"{spec.study}/study", replace=True)
                for f in files:
                    client.log_artifact(run_id, str(f))
                client.set_terminated(run_id)
        except Exception as e:
            report(f"tracker {name}: could not attach the study's report ({type(e).__name__}: {str(e)[:200]})")
