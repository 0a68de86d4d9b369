"""LR search: one run per learning rate, for any model and preset (``--exp 9`` / ``--exp 3`` are the seeds'
named experiments, with the seeds' LR lists).

Ranks by the *best* validation loss of each run (the runs stop early; the answer says so), and says when
the winner's run ended far above its best (it became unstable after its best step). Says when the winner
sits at the edge of the range (the original searches always picked the largest LR tried): the optimum is
bracketed only by LRs *tested* worse or diverged, so with one seed per LR (no noise estimate) it cannot
tell. With ``extend`` it keeps adding LRs x3 beyond the open edge (judged by the estimates when nothing
could be tested).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...config import apply_overrides
from ...errors import UserError
from ...record import config_id
from ...utils import atomic_write_json
from ..spec import limits, schema
from ..spec.file import ExperimentSpec
from ..spec.stored import Study
from .base import FollowUp, StudyKind, register
from .experiments import EXPERIMENTS, long_run_settings, search_base, search_name
from .long_train import make_study as make_long_study

QUICK = {"lrs": [1e-4, 3e-4, 1e-3, 3e-3], "steps": 1000, "eval_every": 50, "patience": 3}
FULL = {"lrs": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "steps": 2000, "eval_every": 100, "patience": 5}
# without --exp: Muon's usual range (its update is orthogonalised, so its LRs sit ~10x above AdamW's), quick
# enough for the tiny preset on a CPU; --extend walks past an open edge
GENERIC_LRS = {"quick": [0.003, 0.01, 0.03, 0.1], "full": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]}
GENERIC_STEPS = {"quick": (200, 20, 3), "full": (1000, 50, 5)}  # steps, eval_every, patience
LR_BOUNDS = (1e-6, 1.0)
METRIC = "best_val_loss"


def lr_id(lr: float) -> str:
    """The experiment id of an LR, at full precision: two LRs never share an id (0.001 vs 0.0010001)."""
    return f"lr_{float(lr)!r}"


def lr_experiments(lrs: list[float]) -> list[ExperimentSpec]:
    return [ExperimentSpec(lr_id(lr), {"train.muon_lr": lr}) for lr in sorted(lrs)]


def make_study(exp: int | None, *, lrs: list[float] | None = None, full: bool = False, preset: str | None = None,
               overrides: dict[str, Any] | None = None, confirm: int | None = None, config: str | None = None) -> Study:
    mode = "full" if full else "quick"
    if exp is not None:
        settings = FULL if full else QUICK
        steps, eval_every, patience, default_lrs = (settings["steps"], settings["eval_every"], settings["patience"],
                                                    settings["lrs"])
    else:
        (steps, eval_every, patience), default_lrs = GENERIC_STEPS[mode], GENERIC_LRS[mode]
    base = search_base(exp, preset, {"train.steps": steps, "train.eval_every": eval_every,
                                     "train.patience": patience, "train.log_every": 10}, overrides, "lr-search",
                       config)
    if lrs:
        schema.check_axis("--lrs", list(lrs), "lr-search")
        if len(lrs) > limits.MAX_LRS:
            raise UserError(f"lr-search: --lrs lists {len(lrs)} learning rates; at most {limits.MAX_LRS}")
    lrs = sorted(lrs or default_lrs)
    what = f"Experiment {exp} ({base.model.name})" if exp is not None else base.model.name
    return Study(kind=KIND.name, name=search_name("lr_search", exp, base), base=base, experiments=lr_experiments(lrs),
                 params={"exp": exp, "lrs": lrs, "mode": mode, "preset": preset,
                         **({"config": config} if config else {})}, metric=METRIC,
                 description=f"Learning-rate search for {what}", confirm=confirm)


def _lr(r: dict) -> float:
    return r["config"]["train"]["muon_lr"]


def _tried(records: list[dict]) -> list[float]:
    return sorted({_lr(r) for r in records})


def _ended_worse(records: list[dict], rec: dict) -> dict | None:
    """When the best LR's runs ended (their final validation loss) above where the runner-up's ended, by more
    than the tolerance: its best point was a moment before it got worse (instability), which a ranking by the
    best validation loss does not see."""
    runner = rec.get("runner_up")
    if not runner or rec.get("tolerance") is None:
        return None
    ok = [r for r in records if r.get("status") == "ok" and r.get("val_loss") is not None]

    def final(c: str) -> float | None:
        v = [r["val_loss"] for r in ok if config_id(r) == c]
        return sum(v) / len(v) if v else None

    best_end, runner_end = final(rec["best"]), final(runner)
    if best_end is None or runner_end is None or best_end - runner_end <= rec["tolerance"]:
        return None
    return {"final_val_loss": best_end, "runner_up_final_val_loss": runner_end,
            "text": f"Its run(s) ended at a validation loss of {best_end:.4g}, {best_end - runner_end:.3g} above where "
                    f"the runner-up's ended ({runner_end:.4g}): its best was reached before training became worse "
                    "(likely unstable at this LR); prefer the runner-up for a run longer than these."}


def lr_bracket(analysis: dict) -> dict:
    """Whether the best muon_lr is bracketed, and which side is open (``ranking.bracket``)."""
    if "muon_lr" not in analysis["axes"]:  # one LR tried: nothing brackets it (ranking.bracket's fields)
        return {"bracketed": False, "tested": False, "open": None, "by_estimate": False}
    import pandas as pd  # the statistics stack loads when a study is analysed, not when the CLI starts

    from ...analysis import ranking

    return ranking.bracket(pd.DataFrame(analysis["configurations"]), "muon_lr", analysis["recommendation"])


def next_lr(records: list[dict], analysis: dict) -> float | None:
    """``--extend``: the next LR (x3) beyond the side where the optimum is open (the best LR at an edge, a
    near-optimal LR at an edge, or an edge whose run crashed), or None when it is bracketed or at the bounds."""
    lr, tried = _best_lr(records, analysis), _tried(records)
    if lr is None or len(tried) < 2:
        return None
    side = lr_bracket(analysis)
    if side["bracketed"] or side["open"] is None:
        return None
    nxt = float(f"{tried[-1] * 3 if side['open'] == 'largest' else tried[0] / 3:.3g}")
    return nxt if LR_BOUNDS[0] <= nxt <= LR_BOUNDS[1] and nxt not in tried else None


def _best_lr(records: list[dict], analysis: dict) -> float | None:
    best = analysis["recommendation"].get("best")
    return next((_lr(r) for r in records if config_id(r) == best), None)


class LRSearchKind(StudyKind):
    name = "lr_search"
    title = "Learning-rate search"
    command = "lr-search"
    help = "find the Muon learning rate for a model: one run per LR, early stopping, a recommendation"
    description = ("Train the model once per LR (warmup 5% + cosine to 10%, early stopping on validation loss) and "
                   "recommend the LR with the lowest best validation loss, saying when it sits at an edge of the "
                   "range. "
                   "Any --model at any --preset (default moe, tiny: LRs 0.003-0.1, 200 steps; --full: 0.001-0.3, "
                   "1000 steps); --exp 9 or 3 is a shortcut for those experiments' model, preset and LR lists "
                   "(4 LRs x 1000 steps; --full 7 x 2000).")
    folder_name = "lr_search_<model> (lr_search_exp<N> with --exp)"
    skip_flags = ("--muon-lr",)
    result_files = ("lr_recommendation.json",)

    def add_flags(self, defining, other):
        d = defining
        d.add("--exp", type=int, choices=sorted(EXPERIMENTS), default=None,
              help="a named experiment: 9 = deepseek_mlp at preset exp9, 3 = deepseek_glm4_moe at preset exp3 "
                   "(default: --model at --preset)")
        d.add("--full", action="store_true", help="more LRs and steps (see above)")
        d.add("--config", default=None, help="a study TOML whose [study] preset and [base] settings define the model "
                                             "and run (its grid is not used)")
        d.add("--lrs", type="lr_float", nargs="+", default=None, help="the LRs to try (Muon LR)")
        other.add("--extend", action="store_true",
                            help="while the best LR is at an edge, add LRs x3 beyond it (bounds 1e-6..1); works "
                                 "with --resume")
        other.add("--then-train", action="store_true",
                            help="then train long (train --exp) with the best LR")
        other.add("--long-steps", type="steps_int", default=10000, help="with --then-train: steps of the long run")
        other.add("--hellaswag", default=None, help="with --then-train: HellaSwag source for the long run")

    def build(self, args, overrides):
        if getattr(args, "then_train", False) and args.exp is None:
            raise UserError("--then-train trains Experiment 9 or 3 long: give --exp 9 or --exp 3 (for another model, "
                            "`moe-ablate train --muon-lr` with the recommended LR)")
        return make_study(args.exp, lrs=args.lrs, full=args.full, preset=args.preset, overrides=overrides,
                          confirm=args.confirm, config=args.config)

    def follow_up(self, study_dir, study, records, analysis, args):
        """--then-train: the long run (``train --exp``) with the best LR, in ``long_term/``."""
        if not getattr(args, "then_train", False):
            return None
        rec = self.recommendation(study, records, analysis)
        if rec.get("best_learning_rate") is None:
            raise UserError("no successful LR to train with")
        # the search's --steps/--eval-every/--patience were for the search; the long run has its own
        cfg = apply_overrides(study.base, {**long_run_settings(args.long_steps, args.hellaswag),
                                           "train.muon_lr": rec["best_learning_rate"]})
        exp = study.params.get("exp")
        if exp is None:
            raise UserError("--then-train trains Experiment 9 or 3 long; this search was of another model")
        long = make_long_study(exp, cfg, {"lr_recommendation": str(study_dir / "lr_recommendation.json")})
        return FollowUp(long, study_dir / "long_term")

    def extension(self, study, records, analysis):
        """One more LR beyond the side where the optimum is open: the best LR at an edge, a near-optimal LR
        at an edge, or an edge whose run crashed (no information)."""
        nxt = next_lr(records, analysis)
        return lr_experiments([nxt]) if nxt is not None else []

    def recommendation(self, study: Study, records: list[dict], analysis: dict) -> dict[str, Any]:
        """lr_recommendation.json: the seeds' fields plus the noise-aware verdict."""
        rec = analysis["recommendation"]
        lr, tried = _best_lr(records, analysis), _tried(records)
        exp = study.params.get("exp")
        if lr is None:
            return {"exp": exp, "best_learning_rate": None, "bracketed": False, "tried": tried,
                    "recommendation": "every run failed; no learning rate to recommend"}
        side = lr_bracket(analysis)
        from ...analysis.ranking import FAILED

        by_id = {config_id(r): r for r in records}
        best_run = by_id[rec["best"]]
        out = {"exp": exp, "model": study.base.model.name, "best_learning_rate": lr, "best_val_loss": rec[METRIC],
               "best_step": best_run.get("best_step"), "tried": tried,
               "failed": sorted({_lr(r) for r in records if r.get("status") in FAILED}),
               "bracketed": side["bracketed"] if side["tested"] else None,
               "bracketed_by_estimate": side["by_estimate"],
               "ranked_by": f"{METRIC}: each run's lowest validation loss over its evaluations (runs stop early)",
               "near_optimal_learning_rates": sorted(_lr(by_id[c]) for c in rec["near_optimal"]),
               "verdict": rec["verdict"],
               "recommendation": f"best LR {lr:.2e} (ranked by each run's best validation loss): {rec['text']}"}
        if "runner_up" in rec:
            out["runner_up_learning_rate"], out["margin"] = _lr(by_id[rec["runner_up"]]), rec["margin"]
        ended = _ended_worse(records, rec)
        if ended:
            out["ended_worse"] = ended
            out["recommendation"] += " " + ended["text"]
        if len(tried) == 2:
            out["warning"] = ("only two LRs were tried: the optimum cannot be bracketed; add LRs on both sides or "
                              "rerun with --extend")
        elif not side["tested"] and lr not in (tried[0], tried[-1]):
            out["warning"] = ("one run per LR gives no noise estimate, so no LR was tested worse than the best: "
                              "cannot tell whether the optimum is bracketed"
                              + (" (the estimates rise on both sides)" if side["by_estimate"] else "")
                              + "; add seeds (--confirm 2) to test it")
        elif not out["bracketed"] and side["open"]:
            edge = side["open"]
            out["warning"] = (f"the optimum is not bracketed on the {'high' if edge == 'largest' else 'low'} side "
                              "(no LR there that is worse by the test or diverged; a crashed run says nothing): "
                              f"rerun with --extend or add LRs {'above' if edge == 'largest' else 'below'} "
                              f"{tried[-1] if edge == 'largest' else tried[0]:.2e}")
        return out

    def write_files(self, study_dir, study, records, analysis):
        atomic_write_json(study_dir / "lr_search_results.json", {"exp": study.params.get("exp"), "results": records})
        atomic_write_json(study_dir / "lr_recommendation.json", self.recommendation(study, records, analysis))

    def answer(self, study, records, analysis):
        rec = self.recommendation(study, records, analysis)
        text = rec["recommendation"]
        return text + (f" Warning: {rec['warning']}." if rec.get("warning") else "")

    def figures(self, study_dir, study, records, analysis):
        return [plot_lr_search(study_dir, records)]


KIND = register(LRSearchKind())


def plot_lr_search(study_dir: Path, records: list[dict]) -> Path:
    from ...analysis.plots import plt, save_figure

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    pts = []
    for r in sorted(records, key=_lr):
        h = r.get("history", {})
        ev, tr = h.get("eval", []), h.get("train", [])
        label = f"lr {_lr(r):.0e}" + (f" s{r['hyperparameters'].get('seed')}" if r.get("stage") == "confirm" else "")
        label += "" if r["status"] == "ok" else f" ({r['status']})"
        axs[0, 0].plot([e["step"] for e in ev], [e["loss"] for e in ev], marker=".", label=label)
        axs[1, 0].plot([t["step"] for t in tr], [t["loss"] for t in tr], label=label)
        axs[1, 1].plot([t["step"] for t in tr], [t["lr"] for t in tr], label=label)
        best = r.get("best_val_loss")
        if r["status"] == "ok" and best is not None and math.isfinite(best):
            pts.append((_lr(r), r.get("val_loss"), best))
    if pts:
        axs[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], "o", label="final")
        axs[0, 1].plot([p[0] for p in pts], [p[2] for p in pts], "s", label="best")
        axs[0, 1].set_xscale("log")
    axs[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    axs[0, 1].set(xlabel="learning rate", ylabel="validation loss", title="validation loss vs LR (every run)")
    axs[1, 0].set(xlabel="step", ylabel="training loss", title="training loss")
    axs[1, 1].set(xlabel="step", ylabel="learning rate", title="LR schedule (warmup + cosine)")
    for ax in axs.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, study_dir / "lr_search_comparison.png")
