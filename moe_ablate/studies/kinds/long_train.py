"""Long training of Experiment 9 or 3 with the recommended settings (``train --exp``).

A study of one experiment: it evaluates every ``eval_every`` steps, checkpoints the full training
state every ``checkpoint_every`` steps under ``checkpoints/long_run/`` (a resume continues exactly
from the newest readable one), runs HellaSwag every ``hellaswag_every`` steps when a source is
given, keeps ``final_model.pt``, and writes ``long_term_results.json`` and ``training_curves.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import ExperimentConfig
from ...utils import atomic_write_json
from ..spec.file import ExperimentSpec
from ..spec.stored import Study
from .base import StudyKind, register
from .experiments import (
    auto_lr,
    experiment_base,
    find_recommendation,
    long_run_settings,
)
from .scaling import lr_from_law

RUN_ID = "long_run"


def make_study(exp: int, cfg: ExperimentConfig, settings_from: dict[str, Any] | None = None) -> Study:
    return Study(kind=KIND.name, name=f"exp{exp}_long_term", base=cfg, experiments=[ExperimentSpec(RUN_ID, {})],
                 params={"exp": exp, "settings_from": settings_from or {}}, metric="val_loss",
                 description=f"Long training of Experiment {exp} ({cfg.model.name})", confirm=0)


@dataclass
class LongRunRequest:
    """What ``train --exp N`` asks for; ``compose`` turns it into the long run's study."""

    exp: int
    output_dir: str
    preset: str | None = None
    lr: float | str | None = None  # a number, "auto" (the lr-search recommendation) or "scaling:DIR" (the law's)
    hellaswag: str | None = None
    checkpoint_every: int | None = None
    hellaswag_every: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # explicit experiment flags: they win over everything


def compose(req: LongRunRequest, log: Callable[[str], None]) -> Study:
    """The long run's settings: long-run defaults < recommendations found under ``output_dir`` (``--lr auto``:
    the lr-search LR, and for exp 3 the expert-search experts) or the scaling law's LR at this run's own compute
    < explicit flags. Where each setting came from is kept in the study (``settings_from``)."""
    exp, settings_from = req.exp, {}
    overrides = long_run_settings(hellaswag=req.hellaswag)
    for name in ("checkpoint_every", "hellaswag_every"):
        if getattr(req, name) is not None:
            overrides[f"train.{name}"] = getattr(req, name)
    if req.lr == "auto":
        overrides["train.muon_lr"], settings_from["lr_recommendation"] = auto_lr(req.output_dir, exp)
        if exp == 3:
            found = find_recommendation(req.output_dir, "expert_recommendation.json", 3)
            if found:
                rec, path = found
                overrides.update({"model.num_experts": rec["num_experts"], "model.top_k": rec["top_k"]})
                settings_from["expert_recommendation"] = str(path)
            else:
                log("no expert_recommendation.json found: using the preset's experts/top-k")
    elif req.lr is not None and not str(req.lr).startswith("scaling:"):
        overrides["train.muon_lr"] = req.lr
    cfg = experiment_base(exp, req.preset, overrides, req.overrides)
    if str(req.lr).startswith("scaling:"):  # the law's LR at this run's own compute (its model and steps)
        lr, law = lr_from_law(req.lr[len("scaling:"):], cfg)
        settings_from["lr_scaling_law"] = law
        iv = law.get("interval80") or (float("nan"),) * 2
        log(f"--lr {req.lr}: Muon LR {lr:.4g} (80% interval {iv[0]:.4g}-{iv[1]:.4g}) at {law['compute']:.3g} FLOPs")
        cfg = experiment_base(exp, req.preset, {**overrides, "train.muon_lr": lr}, req.overrides)
    return make_study(exp, cfg, settings_from)


class LongTrainKind(StudyKind):
    name = "long_train"
    title = "Long training run"
    keeps_final_model = True
    resumed_by = ("train",)  # `train --exp N` starts it (cli/train_cmds.py: the train command has two modes)

    def write_files(self, study_dir, study, records, analysis):
        for r in records:
            atomic_write_json(study_dir / "long_term_results.json",
                              {**r, "settings_from": study.params.get("settings_from", {})})

    def figures(self, study_dir, study, records, analysis):
        return [plot_curves(study_dir, r) for r in records if r.get("history")]

    def answer(self, study, records, analysis):
        r = records[0] if records else {}
        if r.get("status") != "ok":
            return f"The long run ended with status {r.get('status', 'unknown')}: {r.get('error') or ''}".strip()
        text = (f"{r['config']['model']['name']} trained {r['steps']} steps: validation loss {r['val_loss']:.4f} "
                f"(best {r['best_val_loss']:.4f} at step {r['best_step']}).")
        law = (study.params.get("settings_from") or {}).get("lr_scaling_law") or {}
        pred = law.get("predicted_loss")
        if pred and pred.get("interval"):  # the scaling study's loss law, judged on the run it predicted
            lo, hi = pred["interval"]
            inside = "inside" if lo <= r["val_loss"] <= hi else "outside"
            text += (f" The scaling law predicted {pred['value']:.4f} ({pred['level']:.0%} interval {lo:.4f}-{hi:.4f}):"
                     f" measured minus predicted {r['val_loss'] - pred['value']:+.4f}, {inside} the interval.")
        hs = r.get("history", {}).get("hellaswag", [])
        if hs:
            text += f" HellaSwag at step {hs[-1]['step']}: acc_norm {hs[-1]['acc_norm']:.4f} (n {hs[-1]['n']})."
        return text


KIND = register(LongTrainKind())


def plot_curves(out_dir: Path, result: dict) -> Path:
    from ...analysis.plots import plt, save_figure

    h = result["history"]
    hs = h.get("hellaswag", [])
    fig, axs = plt.subplots(1, 4 if hs else 3, figsize=(16 if hs else 13, 3.8))
    axs[0].plot([t["step"] for t in h["train"]], [t["loss"] for t in h["train"]], label="train")
    axs[0].plot([e["step"] for e in h["eval"]], [e["loss"] for e in h["eval"]], "o-", label="validation")
    axs[0].set(xlabel="step", ylabel="loss", title="loss")
    axs[0].legend()
    axs[1].plot([e["step"] for e in h["eval"]], [e["accuracy"] for e in h["eval"]], "o-")
    axs[1].set(xlabel="step", ylabel="accuracy", title="validation accuracy")
    axs[2].plot([t["step"] for t in h["train"]], [t["lr"] for t in h["train"]])
    axs[2].set(xlabel="step", ylabel="learning rate", title="learning rate")
    if hs:
        axs[3].plot([x["step"] for x in hs], [x["acc"] for x in hs], "o-", label="acc")
        axs[3].plot([x["step"] for x in hs], [x["acc_norm"] for x in hs], "s--", label="acc_norm")
        axs[3].axhline(0.25, color="gray", lw=1, ls=":", label="chance")
        axs[3].set(xlabel="step", title="HellaSwag")
        axs[3].legend()
    return save_figure(fig, out_dir / "training_curves.png")
