"""Run a study's experiments as Ray tasks: one task per experiment, on one machine or a cluster.

- The driver tokenises once and puts the token arrays and tokenizer into Ray's object store; every
  task reads them from there (zero-copy on the same node, shipped once per node otherwise), so no
  task re-tokenises and no shared filesystem is needed.
- Each task returns its record; the driver writes the JSON (see ``runner.run_experiments``).
- An experiment that raises is an ``error`` record (as locally). A worker process that dies is
  retried once by Ray (``max_retries=1``); if it dies again the experiment is recorded as ``error``.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np

from ..config import ExperimentConfig
from ..data import TokenData
from ..data.tokenizer import LoadedTokenizer
from ..errors import UserError
from .spec import ExperimentSpec

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


def _remote_run(exp_id: str, overrides: dict, base: dict, packed: dict, threads: int) -> dict:
    import torch

    from .runner import run_one

    _maybe_crash(exp_id)
    torch.set_num_threads(max(1, threads))
    data = TokenData(train=packed["train"], val=packed["val"], provenance=packed["provenance"],
                     tokenizer=LoadedTokenizer.from_dict(packed["tokenizer"]))
    record = run_one(ExperimentSpec(exp_id, overrides), ExperimentConfig.from_dict(base), data,
                     log=lambda m: None, progress=False)
    record["executor"] = {"kind": "ray", "node": os.uname().nodename, "pid": os.getpid()}
    return record


def run_with_ray(pending: list[ExperimentSpec], base: ExperimentConfig, data: TokenData, options,
                 log: Callable[[str], None]) -> Iterator[tuple[ExperimentSpec, dict]]:
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    import torch

    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, private cluster
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if options.ray_address:
            ray.init(address=options.ray_address, **kwargs)
        else:  # a local cluster sized to this machine
            ray.init(num_cpus=os.cpu_count(), **kwargs)
    try:
        gpus = options.gpus_per_experiment
        if gpus is None:
            gpus = 1 if torch.cuda.is_available() else 0
        resources = ray.cluster_resources()
        log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
            f"{options.cpus_per_experiment:g} CPU(s) and {gpus:g} GPU(s) per experiment")
        packed = ray.put({"train": np.asarray(data.train), "val": np.asarray(data.val),
                          "provenance": data.provenance, "tokenizer": data.tokenizer.to_dict()})
        task = ray.remote(_remote_run).options(num_cpus=options.cpus_per_experiment, num_gpus=gpus,
                                               max_retries=1, retry_exceptions=False)
        threads = int(options.cpus_per_experiment) or 1
        refs = {task.remote(s.id, s.overrides, base.to_dict(), packed, threads): s for s in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            spec = refs.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died twice (or the task was lost)
                first = (str(e).strip().splitlines() or [""])[0][:300]
                cfg = spec.config(base)
                record = {"experiment_id": spec.id, "hyperparameters": spec.hyperparameters,
                          "config": cfg.to_dict(), "status": "error",
                          "error": f"worker failed after a retry: {type(e).__name__}: {first}"}
            yield spec, record
    finally:
        if started_here:
            ray.shutdown()
