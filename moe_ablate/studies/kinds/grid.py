"""``run``: a grid from a TOML preset (the 270-experiment LR ablation, or any file of your own), and the LR
transfer kind (a grid over width x LR). ``make_study`` (``toml_study.py``) builds any TOML study."""

from __future__ import annotations

from ..spec.file import ExperimentSpec
from .base import StudyKind, register
from .scaling import KIND as _SCALING  # noqa: F401  (a TOML may name the scaling kind: importing it registers it)
from .toml_study import make_study


class GridKind(StudyKind):
    name = "grid"
    title = "Study report"
    command = "run"
    help = "run an ablation study (default: the 270-experiment learning-rate grid)"
    description = ("Run every experiment of a study grid (configs/lr_ablation.toml unless --config), one after "
                   "another, each writing experiments/<id>.json, then analyse the results.")

    def add_flags(self, defining, other):
        d = defining
        d.add("--config", default=None, help="study TOML file or preset name in configs/ (default lr_ablation)")
        d.add("--quick", action="store_true",
              help="run the file's [quick] grid (4 configurations for lr_ablation, then up to 6 confirmation runs; "
                   "--dry-run shows the plan)")
        d.add("--max-experiments", type="pos_int", default=None,
              help="run N configurations chosen to span every value of every axis (seeded, not the first N)")
        d.add("--seeds", type="seeds_int", default=None, help="run each configuration with K seeds (N x K runs)")
        other.add("--extend", action="store_true",
                  help="while the best muon_lr is at an edge of its axis, add muon_lr x3 beyond it (with every value "
                       "of the other axes and every seed; bounds 1e-6..1), as lr-search --extend does; works with "
                       "--resume")

    def extension(self, study, records, analysis):
        """``--extend``: the next muon_lr beyond the open edge, crossed with the grid's other settings and seeds, so
        the grid stays complete (the heatmap and the per-axis effects need every combination)."""
        from .lr_search import next_lr

        if not any("train.muon_lr" in e.overrides for e in study.experiments):
            return []
        nxt = next_lr(records, analysis)
        if nxt is None:
            return []
        grid = [e for e in study.experiments if e.stage == "grid"]
        others = {}
        for e in grid:
            rest = {k: v for k, v in e.overrides.items() if k not in ("train.muon_lr", "train.seed")}
            others.setdefault(repr(sorted(rest.items())), rest)
        seeds = sorted({e.overrides.get("train.seed", study.base.train.seed) for e in grid})
        taken, more = {e.id for e in study.experiments}, []
        for rest in others.values():
            n = len(taken)
            while f"exp_{n:03d}" in taken:
                n += 1
            config_id = f"exp_{n:03d}"
            taken.add(config_id)
            for k, seed in enumerate(seeds):
                exp_id = config_id if len(seeds) == 1 else f"{config_id}_s{k}"
                taken.add(exp_id)
                more.append(ExperimentSpec(exp_id, {**rest, "train.muon_lr": nxt, "train.seed": seed}, config_id))
        return more

    def build(self, args, overrides):
        return make_study(args.config or "lr_ablation", preset=args.preset, overrides=overrides, quick=args.quick,
                          max_experiments=args.max_experiments, seeds=args.seeds, confirm=args.confirm)

    def answer(self, study, records, analysis):
        """With a ``steps`` (token horizon) axis and an LR axis the question is whether the optimum moves."""
        tr = analysis.get("lr_by_horizon")
        if not tr:
            return None
        # comparing a 100-step run with a 300-step one answers nothing: each horizon's own best is the answer
        rows = "; ".join(f"{r['steps']} steps: {r['best_lr']:g} (near-optimal "
                         f"{', '.join(f'{x:g}' for x in r['near_optimal_lrs']) or 'n/a'}; {analysis['metric']} "
                         f"{r['mean']:.4f})" for r in tr["rows"] if r.get("best_lr") is not None)
        return f"{tr['text'][0].upper()}{tr['text'][1:]}. Best {tr['lr_axis']} per horizon: {rows}."


class LRTransferKind(GridKind):
    """A grid over model width x LR whose question is whether the optimal LR moves with width."""

    name = "lr_transfer"
    title = "LR transfer across width"
    command = None  # a TOML with [study] kind = "lr_transfer", run by `run`
    resumed_by = ("run",)

    def answer(self, study, records, analysis):
        tr = analysis.get("lr_transfer")
        if not tr:
            return None
        return f"{tr['text'][0].upper()}{tr['text'][1:]}. Overall: {analysis['recommendation']['text']}"


KIND = register(GridKind())
TRANSFER = register(LRTransferKind())


__all__ = ["KIND", "TRANSFER", "GridKind", "LRTransferKind", "make_study"]
