"""What a study will do before it does it: configurations, seeds, runs (confirmation included), steps, tokens,
FLOPs and an ETA from a measured step. ``--dry-run`` prints it and writes nothing; the study's header and its
progress bar count the same runs, so the announced job is the job.

Confirmation adds runs only after the grid (it confirms the best configurations and those within noise, or within
``CONFIRM_MARGIN`` of the best when the noise is unknown), so the plan states its upper bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...config import ExperimentConfig
from ..kinds import get_kind
from ..spec.stored import Study

# noise unknown (one seed per configuration): confirm only configurations whose single run is within this fraction
# of the best one's metric (2% of a val_loss of 1.3 is 0.026 nats, several seed-to-seed spreads of a tiny model)
CONFIRM_MARGIN = 0.02


@dataclass
class Plan:
    kind: str
    folder: Path
    configurations: int
    seeds: list[int]  # runs per configuration (distinct counts)
    axes: dict[str, list]  # what varies between configurations, and its values
    grid_runs: int
    finished: int  # already recorded (a resume)
    confirm_runs_max: int
    confirm_seeds: int
    confirm_configs_max: int
    halving: list[int] = field(default_factory=list)  # rung step counts, when successive halving
    steps: list[int] = field(default_factory=list)  # distinct step counts of the runs
    tokens: int = 0  # training tokens of the grid runs
    flops: float = 0.0  # training FLOPs of the grid runs
    seconds_per_step: dict[str, float] = field(default_factory=dict)  # measured, per model size
    follow_on: list[tuple[str, int]] = field(default_factory=list)  # runs the kind may add after the grid, at most
    eta_s: float | None = None  # the grid's pending runs plus the most confirmation and follow-on, measured speed
    notes: list[str] = field(default_factory=list)

    @property
    def runs_max(self) -> int:
        return self.grid_runs + self.confirm_runs_max + sum(n for _, n in self.follow_on)

    def text(self) -> str:
        axes = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in self.axes.items()) or "none (one configuration)"
        lines = [f"plan for {self.kind} study {self.folder} (nothing written: --dry-run)",
                 f"  configurations  {self.configurations} (axes: {axes})",
                 f"  seeds           {'/'.join(map(str, self.seeds))} per configuration",
                 f"  runs            {self.grid_runs} in the grid"
                 + (f", {self.finished} of them already finished" if self.finished else "")]
        if self.confirm_runs_max:
            lines.append(f"                  + up to {self.confirm_runs_max} confirmation runs ({self.confirm_seeds} "
                         f"fresh seed(s) for at most {self.confirm_configs_max} top configurations)")
        for what, n in self.follow_on:
            lines.append(f"                  + up to {n} runs of the {what}")
        if self.confirm_runs_max or self.follow_on:
            lines.append(f"                  = at most {self.runs_max} runs"
                         + (" (--confirm 0: no confirmation)" if self.confirm_runs_max else ""))
        if self.halving:
            lines.append(f"  halving         rungs at {', '.join(map(str, self.halving))} steps: most configurations "
                         "stop early, so the grid costs less than its full runs")
        lines.append(f"  steps           {', '.join(map(str, self.steps))} per run")
        lines.append(f"  compute         {self.tokens:,} training tokens, {self.flops:.3g} training FLOPs (the grid)")
        for size, s in self.seconds_per_step.items():
            lines.append(f"  measured        {s * 1000:.0f} ms per step ({size})")
        if self.eta_s is not None:
            lines.append(f"  ETA             about {_duration(self.eta_s)} of training (at most; evaluation adds a "
                         "little)")
        lines += [f"  note            {n}" for n in self.notes]
        return "\n".join(lines)


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def max_confirmation_runs(study: Study) -> tuple[int, int, int]:
    """(runs, seeds per configuration, configurations) confirmation may add after the grid: 0 when it is off or
    has already been added."""
    k = study.resolved_confirm()
    later = configurations_after_confirmation(study)
    n = min(study.confirm_max, len(study.configurations()) if later is None else len(later))
    return (k * n, k, n) if k else (0, k, 0)


def configurations_after_confirmation(study: Study) -> list[str] | None:
    """None when the study has no confirmation stage yet; else the configurations whose experiments were all
    added after it (a study grown in place), which have no confirmation runs."""
    stages = [i for i, e in enumerate(study.experiments) if e.stage == "confirm"]
    if not stages:
        return None
    before = {e.config_id for e in study.experiments[: stages[-1] + 1]}
    return list(dict.fromkeys(e.config_id for e in study.experiments[stages[-1] + 1:] if e.config_id not in before))


def make_plan(study: Study, folder: Path, measure: bool = True) -> Plan:
    from .runner import resolve_configs

    configs = resolve_configs(study)
    by_config = study.configurations()
    axes: dict[str, list] = {}
    for specs in by_config.values():
        for k, v in specs[0].overrides.items():
            if k != "train.seed" and v not in axes.setdefault(k, []):
                axes[k].append(v)
    confirm, k, n = max_confirmation_runs(study)
    done = _finished_ids(folder, study) & {e.id for e in study.experiments}  # read once: count and ETA
    plan = Plan(study.kind, folder, len(by_config), sorted({len(s) for s in by_config.values()}),
                {a: v for a, v in axes.items() if len(v) > 1 or len(by_config) == 1}, len(study.experiments),
                len(done), confirm, k, n, steps=sorted({c.train.steps for c in configs.values()}))
    if study.halving:
        from .halving import rung_steps

        plan.halving = rung_steps(study)
    vocab = _vocab(study.base)
    extra = get_kind(study.kind).planned_follow_on(study)  # a designed ladder, a validation scale
    plan.follow_on = [(what, n) for what, n, _ in extra]
    shapes: dict[str, tuple[ExperimentConfig, float]] = {}
    for cfg in [*configs.values(), *(c for _, _, cs in extra for c in cs)]:
        cfg.model.vocab_size = vocab
        key = _size_key(cfg)
        if key not in shapes:
            from ...resources import check_fits
            from ...utils import resolve_device
            from ..kinds.scaling import run_compute

            # a study that cannot fit says so here, as the real run would before training (and before a model
            # too large to index is built for its FLOPs)
            check_fits(cfg, resolve_device(cfg.train.device), "an experiment of this study")
            shapes[key] = (cfg, run_compute(cfg)[0] / max(1, cfg.train.steps))
    for cfg in configs.values():
        t = cfg.train
        plan.tokens += t.steps * t.batch_size * t.seq_len * t.grad_accum
        plan.flops += shapes[_size_key(cfg)][1] * t.steps
    if measure:
        _measure(plan, study, configs, shapes, done, [(n, c) for _, n, c in extra])
    return plan


def _measure(plan: Plan, study: Study, configs: dict[str, ExperimentConfig], shapes, done: set[str],
             extra: list[tuple[int, list[ExperimentConfig]]]) -> None:
    """A few real optimizer steps per distinct model size on random tokens (no data needed): the ETA's speed.
    Skipped for sizes too slow to step here in a few seconds (a 384-wide model on CPU). ``extra``: (runs, config)
    the kind may add after the grid."""
    from ...training.speed import seconds_per_step
    from ...utils import resolve_device

    pending = {e.id for e in study.experiments} - done
    per_step: dict[str, float] = {}
    for key, (cfg, flops_per_step) in shapes.items():
        if resolve_device(cfg.train.device) == "cpu" and flops_per_step > 2e11:
            plan.notes.append(f"no ETA: a step of {_label(cfg)} is {flops_per_step:.2g} FLOPs, too slow to measure "
                              "on this CPU in seconds")
            return
        per_step[key] = seconds_per_step(cfg)
        plan.seconds_per_step[_label(cfg)] = per_step[key]
    grid = sum(per_step[_size_key(configs[e.id])] * configs[e.id].train.steps for e in study.experiments
               if e.id in pending)
    slowest = max((per_step[_size_key(c)] * c.train.steps for c in configs.values()), default=0.0)
    later = sum(n * max(per_step[_size_key(c)] * c.train.steps for c in cs) for n, cs in extra if cs)
    plan.eta_s = grid + plan.confirm_runs_max * slowest + later


def _size_key(cfg: ExperimentConfig) -> str:
    t = cfg.train
    return json.dumps([cfg.model.__dict__, t.batch_size, t.seq_len, t.grad_accum, t.device, t.amp], sort_keys=True,
                      default=str)


def _label(cfg: ExperimentConfig) -> str:
    m, t = cfg.model, cfg.train
    return f"{m.name} d_model {m.d_model} x {m.n_layers} layers, batch {t.batch_size} x seq {t.seq_len}"


def _vocab(base: ExperimentConfig) -> int:
    """The vocabulary the runs will have: the prepared tokenizer's when cached, else the size asked."""
    from ...data.tokens import cached_vocab_size

    if base.data.tokenizer != "bpe":
        return base.model.vocab_size
    return cached_vocab_size(base.data) or base.data.vocab_size


def _finished_ids(folder: Path, study: Study) -> set[str]:
    if not folder.is_dir():
        return set()
    from .runner import load_finished

    return set(load_finished(folder, lambda m: None, study=study))


