"""Long training of Experiment 9 or 3 with the recommended settings (``moe-ablate train --exp``).

Evaluates every ``eval_every`` steps, checkpoints the full training state every
``checkpoint_every`` steps and at the end (resume continues exactly), runs HellaSwag every
``hellaswag_every`` steps when a source is given, and writes ``long_term_results.json`` and
``training_curves.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import ExperimentConfig
from ..data import TokenData
from ..checkpoint import save_model
from ..utils import atomic_write_json


def long_train(cfg: ExperimentConfig, data: TokenData, out_dir: Path, *, provenance: dict,
               resume_from: str | None = None, hellaswag_source: str | None = None,
               log: Callable[[str], None] = print, progress: bool = True) -> dict:
    from ..train import train
    from ..utils import resolve_device

    evaluator = None
    if hellaswag_source:
        from ..hellaswag import HellaSwagEvaluator

        evaluator = HellaSwagEvaluator(hellaswag_source, data.tokenizer, cfg.model.max_seq_len, limit=None,
                                       device=resolve_device(cfg.train.device))
    elif cfg.train.hellaswag_every:
        log("HellaSwag: no source given (--hellaswag FILE|hf:Rowan/hellaswag); skipping it during training")
    result, model = train(cfg, data, log=log, progress=progress, desc=f"{cfg.model.name}",
                          checkpoint_dir=out_dir / "checkpoints", resume_from=resume_from, hellaswag=evaluator)
    summary = {"config": cfg.to_dict(), "settings_from": provenance, **result}
    atomic_write_json(out_dir / "long_term_results.json", summary)
    save_model(out_dir / "final_model.pt", cfg, model, data.tokenizer)
    plot_curves(out_dir, result)
    return summary


def plot_curves(out_dir: Path, result: dict) -> None:
    from ..analysis.plots import save_figure, plt

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
    save_figure(fig, out_dir / "training_curves.png")
