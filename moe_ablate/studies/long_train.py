"""Long training of Experiment 9 or 3 with the recommended settings (``train --exp``).

A study of one experiment: it evaluates every ``eval_every`` steps, checkpoints the full training
state every ``checkpoint_every`` steps under ``checkpoints/long_run/`` (a resume continues exactly
from the newest readable one), runs HellaSwag every ``hellaswag_every`` steps when a source is
given, keeps ``final_model.pt``, and writes ``long_term_results.json`` and ``training_curves.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ExperimentConfig
from ..utils import atomic_write_json
from .kind import StudyKind
from .spec import ExperimentSpec
from .study import Study

RUN_ID = "long_run"


def long_run_settings(steps: int = 10000, hellaswag: str | None = None) -> dict:
    """The seeds' long training: evaluate every 100 steps, checkpoint every 3000, HellaSwag every
    1000 when a source is given, no early stopping."""
    return {"train.steps": steps, "train.eval_every": 100, "train.checkpoint_every": 3000,
            "train.hellaswag_every": 1000 if hellaswag else 0, "train.hellaswag_source": hellaswag or "",
            "train.patience": 0}


def make_study(exp: int, cfg: ExperimentConfig, settings_from: dict[str, Any] | None = None) -> Study:
    return Study(kind=KIND.name, name=f"exp{exp}_long_term", base=cfg, experiments=[ExperimentSpec(RUN_ID, {})],
                 params={"exp": exp, "settings_from": settings_from or {}}, metric="val_loss",
                 description=f"Long training of Experiment {exp} ({cfg.model.name})", confirm=0)


class LongTrainKind(StudyKind):
    name = "long_train"
    title = "Long training run"
    keeps_final_model = True

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
        hs = r.get("history", {}).get("hellaswag", [])
        if hs:
            text += f" HellaSwag at step {hs[-1]['step']}: acc_norm {hs[-1]['acc_norm']:.4f} (n {hs[-1]['n']})."
        return text


KIND = LongTrainKind()


def plot_curves(out_dir: Path, result: dict) -> Path:
    from ..analysis.plots import plt, save_figure

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
