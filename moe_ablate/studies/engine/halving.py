"""Successive halving with exact continuation (``--halving ETA``).

Every experiment keeps its full-horizon schedule (warmup + cosine over all its steps), so rung r
is exactly the first ``s_r`` steps of the run it would have been: batches are a pure function of
(seed, step) and a checkpoint holds the whole training state. After each rung the best 1/ETA of
the configurations (by their mean over seeds, as the recommendation ranks) continue **from their
checkpoint**; the rest are recorded as ``pruned`` with the rung and their metrics there. The last
rung's survivors finish exactly as in the full grid. Only the current rung's survivors hold a
checkpoint (deleted when they finish or are pruned). ``--halving-restart`` keeps no checkpoints
and reruns survivors from step 0 instead (more compute, stated in the report).

Rung records are ``rungs/r<k>/<id>.json``; the state of the halving is recomputed from them on
resume, so a study killed anywhere continues to the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...analysis import ranking
from ...analysis.stats import to_frame
from ...errors import UserError
from ...utils import atomic_write_json, read_json
from ..kinds.base import get_kind
from ..spec.stored import Study
from .folder import (
    checkpoint_bytes,
    checkpoint_dir,
    drop_checkpoints,
    keep_newest,
    record_path,
)

RUNGS_DIR = "rungs"


def rung_steps(study: Study) -> list[int]:
    """s_0 = min_steps (default steps / ETA^2), times ETA per rung, each a multiple of eval_every (so
    the rung's metric is an evaluation the full run also makes), ending at the full step count."""
    t, eta = study.base.train, study.halving
    if any("train.steps" in e.overrides or "train.eval_every" in e.overrides for e in study.experiments):
        raise UserError("--halving needs one step count and eval interval for every experiment (not a grid axis)")

    def up(s: float) -> int:
        return min(t.steps, max(t.eval_every, math.ceil(s / t.eval_every) * t.eval_every))

    s = up(study.min_steps or t.steps / eta ** 2)
    out = []
    while s < t.steps:
        out.append(s)
        s = up(s * eta)
    return out + [t.steps]


def _rung_records(study_dir: Path, r: int) -> dict[str, dict]:
    d = study_dir / RUNGS_DIR / f"r{r}"
    out = {}
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = read_json(f)
            out[rec["experiment_id"]] = rec
        except (UserError, KeyError, TypeError):
            continue
    return out


def _table(records: list[dict], metric: str):
    """Configurations best first by mean over successful seeds (as the recommendation ranks)."""
    return ranking.configuration_table(*to_frame(records), metric)


def _rank(records: list[dict], metric: str) -> list[str]:
    """Configuration ids best first; ones with no successful run are left out."""
    table = _table(records, metric)
    return list(table.config_id[table.n > 0])


def group_of(study: Study, spec) -> str:
    """Configurations compete within their group, as the study's kind groups them (``StudyKind.halving_group``)."""
    return get_kind(study.kind).halving_group(study, spec)


def keep_per_group(ranked: list[str], alive: list[str], groups: dict[str, str], eta: int) -> list[str]:
    """The best ceil(n / eta) of each group's alive configurations, in ``ranked`` order."""
    out = []
    for g in dict.fromkeys(groups[c] for c in alive):
        members = [c for c in alive if groups[c] == g]
        out += [c for c in ranked if groups[c] == g][: max(1, math.ceil(len(members) / eta))]
    return [c for c in ranked if c in set(out)]


def run_halving(study_dir: Path, study: Study, run_rung: Callable[..., list[dict]], log) -> list[dict]:
    """Run the rungs; returns the final records (survivors' full runs, pruned and failed records)."""
    steps = rung_steps(study)
    # the grid alone is halved; a stage added after the last rung (confirmation, validation) is run as it stands
    configs = {c: [e for e in runs if e.stage == "grid"] for c, runs in study.configurations().items()}
    configs = {c: runs for c, runs in configs.items() if runs}
    added = [e for e in study.experiments if e.stage != "grid"]
    alive = list(configs)
    groups = {c: group_of(study, runs[0]) for c, runs in configs.items()}
    summary: dict[str, Any] = {"eta": study.halving, "rungs": [], "restart": study.halving_restart,
                               "full_grid_steps": sum(map(len, configs.values())) * study.base.train.steps}
    trained = 0
    peak_disk = 0
    prev = 0
    for r, s in enumerate(steps):
        last = r == len(steps) - 1
        specs = [e for c in alive for e in configs[c]]
        trained += len(specs) * (s if study.halving_restart else s - prev)
        if last:
            ids = {e.id for e in specs}
            records = [r for r in run_rung(specs, None, None) if r["experiment_id"] in ids]
        else:
            done = _rung_records(study_dir, r)
            todo = [e for e in specs if e.id not in done]
            watch = _EarlyRelease(study_dir, study, configs, alive, groups, done)
            if todo:
                log(f"halving rung {r}: {len(alive)} configuration(s) to step {s}")
                run_rung(todo, s, study_dir / RUNGS_DIR / f"r{r}", watch)
            peak_disk = max(peak_disk, watch.peak)
            done = _rung_records(study_dir, r)
            peak_disk = max(peak_disk, checkpoint_bytes(study_dir))
            records = [done[e.id] for e in specs if e.id in done]
            if len(records) < len(specs):  # interrupted mid-rung: the study's records so far
                return run_rung([], None, None)
        table = _table(records, study.metric)
        ranked = list(table.config_id[table.n > 0])
        means = dict(zip(table.config_id, table["mean"]))
        keep = ranked if last else keep_per_group(ranked, alive, groups, study.halving)
        rung_info = {"rung": r, "steps": s, "configurations": len(alive), "kept": keep,
                     "metric": {c: means.get(c) for c in alive}}
        if not last:
            by_id = {rec["experiment_id"]: rec for rec in records}
            for c in alive:
                if c in keep:
                    continue
                for e in configs[c]:
                    rec = by_id[e.id]
                    final = record_path(study_dir, e.id)
                    if not final.exists():
                        status = "pruned" if rec["status"] == "ok" else rec["status"]
                        atomic_write_json(final, {**rec, "status": status, "pruned_at_rung": r, "pruned_at_step": s})
                    drop_checkpoints(study_dir, e.id)
            alive = keep
        summary["rungs"].append(rung_info)
        prev = s
    for e in study.experiments:  # finished or pruned: no checkpoint is kept
        drop_checkpoints(study_dir, e.id)
    drop_checkpoints(study_dir)
    if (study_dir / "halving.json").exists():  # resumed: the peak of the earlier runs stands
        peak_disk = max(peak_disk, read_json(study_dir / "halving.json").get("peak_checkpoint_bytes", 0))
    summary.update(trained_steps=trained, share_of_full_grid=trained / max(1, summary["full_grid_steps"]),
                   peak_checkpoint_bytes=peak_disk)
    atomic_write_json(study_dir / "halving.json", summary)
    return run_rung(added, None, None)  # the study's records: pruned, finished, confirmation and validation runs


class _EarlyRelease:
    """During a rung: as soon as a configuration has all its seeds and falls outside the best
    ``keep_n`` of its group's configurations complete so far, it can never be kept, so its checkpoints go
    at once. Checkpoints on disk stay near the kept set plus the one being trained, not the whole rung."""

    def __init__(self, study_dir: Path, study: Study, configs: dict, alive: list[str], groups: dict[str, str],
                 done: dict):
        self.study_dir, self.study, self.configs, self.groups = study_dir, study, configs, groups
        self.alive_list = list(alive)
        self.alive, self.records = set(alive), dict(done)
        self.released: set[str] = set()
        self.peak = checkpoint_bytes(study_dir)

    def __call__(self, record: dict) -> None:
        self.peak = max(self.peak, checkpoint_bytes(self.study_dir))
        self.records[record["experiment_id"]] = record
        keep_newest(checkpoint_dir(self.study_dir, record["experiment_id"]))  # the last rung's is not needed
        complete = [c for c in self.alive if all(e.id in self.records for e in self.configs[c])]
        recs = [self.records[e.id] for c in complete for e in self.configs[c]]
        ranked = _rank(recs, self.study.metric)
        top = set(keep_per_group(ranked, self.alive_list, self.groups, self.study.halving))
        for c in set(complete) - top - self.released:
            for e in self.configs[c]:
                drop_checkpoints(self.study_dir, e.id)
            self.released.add(c)


def halving_analysis(study_dir: Path, records: list[dict], analysis: dict) -> dict[str, Any] | None:
    """What the report says about a halving study: rungs, compute, prediction quality, risky cuts."""
    path = study_dir / "halving.json"
    if not path.exists():
        return None
    h = read_json(path)
    from scipy import stats

    final = {c["config_id"]: c["mean"] for c in analysis["configurations"] if c["n"] > 0}
    rungs = h["rungs"]
    for info in rungs[:-1]:
        common = [c for c in info["metric"] if c in final and info["metric"][c] is not None]
        if len(common) >= 3:
            rho = stats.spearmanr([info["metric"][c] for c in common], [final[c] for c in common])
            info["rank_correlation_with_final"] = float(rho.statistic)
        info["n_compared"] = len(common)
    noise = analysis["recommendation"].get("noise_std")
    warnings = []
    for info in rungs[:-1]:
        kept = [info["metric"][c] for c in info["kept"] if info["metric"].get(c) is not None]
        if not kept:
            continue
        cut = max(kept)
        margin = 2 * noise if noise else 0.02 * abs(cut)
        close = [c for c, m in info["metric"].items() if c not in info["kept"] and m is not None and m - cut <= margin]
        if close:
            warnings.append(f"rung {info['rung']} (step {info['steps']}) pruned {', '.join(close)} within "
                            f"{margin:.4f} of the cut ({cut:.4f}): it may have been a contender; rerun it in full "
                            "to be sure")
    h["warnings"] = warnings
    return h
