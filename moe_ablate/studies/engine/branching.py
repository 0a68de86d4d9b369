"""Many token horizons from one run: WSD branches off a shared trunk.

With the warmup-stable-decay schedule (``train.schedule = "wsd"``) a run of T steps is constant at the
peak LR until ``decay_start(T)`` and decays only over its last ``decay_frac``. Runs that differ only in
``train.steps`` therefore share everything up to the shorter one's decay start (MiniCPM 2024; Hägele et
al. 2024). A *family* is such a set of experiments (same configuration otherwise, same seed): its
longest horizon is the *trunk*; it is trained once, checkpointed at each shorter horizon's decay start,
and each shorter horizon is a *branch* that continues from there under its own schedule. Continuation
is exact (batches are a function of (seed, step); a checkpoint holds the whole training state, the
partial training-loss average included), so a branch's record is the dedicated run's, metric for metric
(``tests/test_wsd.py``).

State lives in files only, so a study killed anywhere resumes: a branch is done when its record is in
``experiments/``; the trunk's checkpoint at a branch point is kept until that branch is done and the trunk
has moved on. When the trunk cannot reach a branch point (it diverged, ran out of memory or stopped
early), the remaining horizons of its family run as dedicated runs, which is what they would have been.
Families run in this process (their checkpoints are on this machine's disk); every other experiment goes
to the study's executor as usual.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import ExperimentConfig
from ...optim import decay_start, schedule_fn
from ...utils import atomic_write_json
from ..spec.file import ExperimentSpec
from .folder import (
    checkpoint_dir,
    checkpoint_name,
    checkpoint_step,
    checkpoints_in,
    drop_checkpoints,
    keep_newest,
)

BRANCHING_FILE = "branching.json"


@dataclass
class Family:
    """Horizons of one configuration and seed: ``trunk`` is the longest; ``branches`` are (spec, step where
    its decay starts), shortest first."""

    trunk: ExperimentSpec
    branches: list[tuple[ExperimentSpec, int]]

    @property
    def members(self) -> list[ExperimentSpec]:
        return [s for s, _ in self.branches] + [self.trunk]


def _without_steps(cfg: ExperimentConfig) -> str:
    d = cfg.to_dict()
    del d["train"]["steps"]
    return json.dumps(d, sort_keys=True, default=str)


def shares_prefix(trunk: ExperimentConfig, branch: ExperimentConfig, point: int) -> bool:
    """Whether the two schedules agree at every step up to ``point`` (the warmup must be the same length)."""
    a, b = schedule_fn(trunk.train), schedule_fn(branch.train)
    return all(a(s) == b(s) for s in range(point + 1))


def families(specs: list[ExperimentSpec], configs: dict[str, ExperimentConfig],
             log: Callable[[str], None] | None = None) -> list[Family]:
    """The WSD families among ``specs``: experiments whose configs differ only in ``train.steps``."""
    groups: dict[str, dict[int, ExperimentSpec]] = {}
    for e in specs:
        cfg = configs[e.id]
        if cfg.train.schedule == "wsd":
            groups.setdefault(_without_steps(cfg), {}).setdefault(cfg.train.steps, e)
    out, unshared = [], 0
    for by_steps in groups.values():
        if len(by_steps) < 2:
            continue
        horizons = sorted(by_steps)
        trunk = by_steps[horizons[-1]]
        branches = []
        for T in horizons[:-1]:
            spec, point = by_steps[T], decay_start(T, configs[by_steps[T].id].train.decay_frac)
            if point > 0 and shares_prefix(configs[trunk.id], configs[spec.id], point):
                branches.append((spec, point))
            else:
                unshared += 1
        if branches:
            out.append(Family(trunk, branches))
    if unshared and log is not None:
        log(f"note: {unshared} WSD horizon(s) cannot branch off a longer run (their warmup differs: "
            "set train.warmup_steps so that every horizon warms up alike); they run on their own")
    return out


def run_families(study_dir: Path, fams: list[Family], done: Callable[[str], bool],
                 segment: Callable[[ExperimentSpec, int], dict], branch: Callable[[ExperimentSpec, Path, dict], Any],
                 finish: Callable[[ExperimentSpec], Any], stop: Callable[[], bool], log) -> None:
    """Train each family: trunk to a branch point, the branch, ..., then the trunk to its end.

    ``segment(trunk, step)`` trains the trunk (from its newest checkpoint) to ``step`` and checkpoints there,
    returning the run's record; ``branch(spec, checkpoint, origin)`` and ``finish(trunk)`` train and record
    an experiment; ``done(id)`` says whether its record exists; ``stop()`` whether a signal asked to stop."""
    for fam in fams:
        trunk_dir = checkpoint_dir(study_dir, fam.trunk.id)
        broken = False
        for spec, point in fam.branches:
            if stop():
                return
            if done(spec.id) or broken:
                continue
            ckpt = trunk_dir / checkpoint_name(point)
            if not ckpt.exists():
                for later in checkpoints_in(trunk_dir):  # never continue from beyond the point
                    if checkpoint_step(later) > point:
                        later.unlink()
                rec = segment(fam.trunk, point)
                if stop():
                    return
                if rec.get("status") != "ok" or rec.get("steps") != point or not ckpt.exists():
                    log(f"{fam.trunk.id}: the trunk ended at step {rec.get('steps')} ({rec.get('status')}"
                        f"{', early stop' if rec.get('early_stopped') else ''}) before the branch point {point}; "
                        "the remaining horizons of this family run on their own")
                    broken = True
                    continue
                keep_newest(trunk_dir)
            log(f"{spec.id}: branching off {fam.trunk.id} at step {point}")
            branch(spec, ckpt, {"experiment_id": fam.trunk.id, "step": point})
            if stop():
                return
        if not done(fam.trunk.id) and not stop():
            finish(fam.trunk)
        if done(fam.trunk.id) and all(done(s.id) for s, _ in fam.branches):
            drop_checkpoints(study_dir, fam.trunk.id)
    drop_checkpoints(study_dir)


def summary(fams: list[Family], records: dict[str, dict]) -> dict[str, Any]:
    """Steps trained against separate runs, from the records (a branch trains its steps past the point)."""
    rows, separate, trained = [], 0, 0
    for fam in fams:
        recs = [records[s.id] for s in fam.members if s.id in records]
        sep = sum(r.get("steps") or 0 for r in recs)
        got = sep - sum(r["branched_from"]["step"] for r in recs if r.get("branched_from"))
        separate, trained = separate + sep, trained + got
        rows.append({"trunk": fam.trunk.id, "horizons": [s.id for s in fam.members],
                     "branch_points": {s.id: p for s, p in fam.branches},
                     "branched": [r["experiment_id"] for r in recs if r.get("branched_from")],
                     "separate_steps": sep, "trained_steps": got})
    return {"families": rows, "separate_steps": separate, "trained_steps": trained,
            "saved_share": 1 - trained / separate if separate else 0.0}


def write_summary(study_dir: Path, fams: list[Family], records: dict[str, dict]) -> dict[str, Any]:
    s = summary(fams, records)
    atomic_write_json(study_dir / BRANCHING_FILE, s)
    return s
