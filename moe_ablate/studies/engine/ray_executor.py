"""Run a study's experiments as Ray tasks: one task per experiment, on one machine or a cluster.

- Each distinct dataset goes into Ray's object store once (token arrays + tokenizer); every task
  reads it from there (zero-copy on the same node, shipped once per node otherwise), so no task
  re-tokenises and no shared filesystem is needed.
- Each task returns its record; the driver writes the JSON (``runner.run_experiments``).
- An experiment that raises is an ``error`` record (as locally). A worker process that dies is
  retried once by Ray (``max_retries=1``); if it dies again the experiment is recorded as ``error``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...config import ExperimentConfig
from ...data import TokenData
from ...data.tokenizer import LoadedTokenizer
from ...errors import UserError
from ..spec.file import ExperimentSpec
from .runner import Job, Log, jobs_need_local, make_record, result_config, run_one

INSTALL_HINT = "--executor ray needs Ray: pip install 'moe-ablate[ray]'"
CRASH_ENV = "MOE_ABLATE_TEST_CRASH"  # fault injection for the tests: "<experiment id>[:<marker file>]"


def _maybe_crash(experiment_id: str) -> None:
    """Kill this worker process (as an OOM-killer or a lost node would) when the tests ask for it.
    With a marker file it happens once (the retry succeeds); without, on every attempt."""
    spec = os.environ.get(CRASH_ENV, "")
    target, _, marker = spec.partition(":")
    if target != experiment_id:
        return
    if marker:
        if os.path.exists(marker):
            return
        open(marker, "w").close()
    os._exit(137)


def _remote_run(spec: dict, cfg: dict, packed: dict, threads: int, tracking=None) -> dict:
    import torch

    _maybe_crash(spec["id"])
    torch.set_num_threads(max(1, threads))
    data = TokenData(train=packed["train"], val=packed["val"], provenance=packed["provenance"],
                     tokenizer=LoadedTokenizer.from_dict(packed["tokenizer"]))
    job = Job(ExperimentSpec.from_dict(spec), ExperimentConfig.from_dict(cfg), data, tracking=tracking)
    record = run_one(job, log=lambda m: None, progress=False)
    record["executor"] = {"kind": "ray", "node": os.uname().nodename, "pid": os.getpid()}
    return record


def check_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None


@dataclass
class RayExecutor:
    """One Ray task per experiment. ``address``: an existing cluster (default: a local one sized to
    this machine); ``gpus_per_experiment`` None = 1 on CUDA machines, else 0 (fractions share a GPU)."""

    address: str | None = None
    gpus_per_experiment: float | None = None
    cpus_per_experiment: float = 1.0

    def __post_init__(self):
        check_ray()  # before anything is written

    def run(self, jobs: list[Job], log: Log, progress: bool) -> Iterator[tuple[Job, dict]]:
        import ray
        import torch

        if jobs_need_local(jobs):
            raise UserError("experiments that checkpoint or save their model run with the local executor")
        if not jobs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, private cluster
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=os.cpu_count(), **kwargs)
        try:
            gpus = self.gpus_per_experiment
            if gpus is None:
                gpus = 1 if torch.cuda.is_available() else 0
            resources = ray.cluster_resources()
            log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
                f"{self.cpus_per_experiment:g} CPU(s) and {gpus:g} GPU(s) per experiment")
            packed: dict[int, object] = {}  # one object-store copy per distinct dataset
            for job in jobs:
                if id(job.data) not in packed:
                    d = job.data
                    packed[id(d)] = ray.put({"train": np.asarray(d.train), "val": np.asarray(d.val),
                                             "provenance": d.provenance, "tokenizer": d.tokenizer.to_dict()})
            task = ray.remote(_remote_run).options(num_cpus=self.cpus_per_experiment, num_gpus=gpus,
                                                   max_retries=1, retry_exceptions=False)
            threads = int(self.cpus_per_experiment) or 1
            refs = {task.remote(j.spec.to_dict(), j.cfg.to_dict(), packed[id(j.data)], threads, j.tracking): j
                    for j in jobs}
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                job = refs.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # the worker died twice (or the task was lost)
                    first = (str(e).strip().splitlines() or [""])[0][:300]
                    record = make_record(job.spec, result_config(job.cfg, job.data), {"status": "error",
                                                                                      "error": f"worker failed after a "
                                                             f"retry: {type(e).__name__}: {first}"}, wall=0.0)
                yield job, record
        finally:
            if started_here:
                ray.shutdown()
