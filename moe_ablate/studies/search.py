"""LR search and expert search for Experiments 9 and 3 (the seeds' lr_search / expert_search).

Both are ordinary studies run by the shared runner (same folder conventions, resume, failure
isolation); this module only expands them, recommends, and plots. Recommendations rank by
*best* validation loss among ``ok`` runs, say by how much the winner wins, and say when the
winner sits at the edge of the range (the original searches always picked the largest LR tried).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..utils import atomic_write_json, edge_of, read_json
from .spec import ExperimentSpec

EXPERIMENTS = {  # --exp N -> (model, preset)
    9: ("deepseek_mlp", "exp9"),
    3: ("deepseek_glm4_moe", "exp3"),
}
QUICK = {"lrs": [1e-4, 3e-4, 1e-3, 3e-3], "steps": 1000, "eval_every": 50, "patience": 3}
FULL = {"lrs": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "steps": 2000, "eval_every": 100, "patience": 5}
LR_BOUNDS = (1e-6, 1.0)


def long_run_settings(steps: int = 10000, hellaswag: bool = False) -> dict:
    """The seeds' long training (``train --exp``, ``lr-search --then-train``): evaluate every 100
    steps, checkpoint every 3000, HellaSwag every 1000 when a source is given, no early stopping."""
    return {"train.steps": steps, "train.eval_every": 100, "train.checkpoint_every": 3000,
            "train.hellaswag_every": 1000 if hellaswag else 0, "train.patience": 0}
EXPERT_GRID = [(e, k) for e in (4, 8, 16) for k in (1, 2)]


def lr_id(lr: float) -> str:
    return f"lr_{lr:.2e}"


def lr_experiments(lrs: list[float]) -> list[ExperimentSpec]:
    return [ExperimentSpec(lr_id(lr), {"train.muon_lr": lr}) for lr in sorted(lrs)]


def _best_loss(r: dict) -> float:
    v = r.get("best_val_loss")
    return v if (r.get("status") == "ok" and v is not None and math.isfinite(v)) else math.inf


def recommend_lr(records: list[dict], exp: int | None) -> dict[str, Any]:
    lrs = sorted(r["config"]["train"]["muon_lr"] for r in records)
    ok = sorted((r for r in records if _best_loss(r) < math.inf), key=_best_loss)
    if not ok:
        return {"exp": exp, "best_learning_rate": None, "bracketed": False, "tried": lrs,
                "recommendation": "every run failed; no learning rate to recommend"}
    best = ok[0]
    lr = best["config"]["train"]["muon_lr"]
    edge = edge_of(lr, lrs)
    rec = {"exp": exp, "model": best["config"]["model"]["name"], "best_learning_rate": lr,
           "best_val_loss": _best_loss(best), "best_step": best.get("best_step"), "tried": lrs,
           "failed": [r["config"]["train"]["muon_lr"] for r in records if r.get("status") != "ok"],
           "bracketed": edge is None and len(lrs) >= 3}
    if len(ok) > 1:
        rec["runner_up_learning_rate"] = ok[1]["config"]["train"]["muon_lr"]
        rec["margin"] = _best_loss(ok[1]) - _best_loss(best)
    text = f"best LR {lr:.2e} (best val loss {rec['best_val_loss']:.4f}"
    text += f", {rec['margin']:.4f} below LR {rec['runner_up_learning_rate']:.2e})" if "margin" in rec else ")"
    if edge:
        rec["warning"] = (f"the best LR {lr:.2e} is the {edge} tried: the optimum is not bracketed; "
                          f"rerun with --extend or add LRs {'above' if edge == 'largest' else 'below'} it")
    rec["recommendation"] = text
    return rec


def extension(records: list[dict]) -> float | None:
    """The next LR to try (x3 beyond the edge) when the best is at an edge, within 1e-6 .. 1."""
    rec = recommend_lr(records, None)
    lr, tried = rec.get("best_learning_rate"), rec["tried"]
    if lr is None or rec["bracketed"] or len(tried) < 2:
        return None
    nxt = lr * 3 if lr == tried[-1] else lr / 3
    if not LR_BOUNDS[0] <= nxt <= LR_BOUNDS[1]:
        return None
    return float(f"{nxt:.3g}")


def write_lr_outputs(study_dir: Path, records: list[dict], exp: int | None) -> dict:
    rec = recommend_lr(records, exp)
    atomic_write_json(study_dir / "lr_search_results.json", {"exp": exp, "results": records})
    atomic_write_json(study_dir / "lr_recommendation.json", rec)
    plot_lr_search(study_dir, records)
    return rec


def plot_lr_search(study_dir: Path, records: list[dict]) -> None:
    from ..analysis.plots import save_figure, plt

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    pts = []
    for r in sorted(records, key=lambda r: r["config"]["train"]["muon_lr"]):
        lr = r["config"]["train"]["muon_lr"]
        h = r.get("history", {})
        ev, tr = h.get("eval", []), h.get("train", [])
        label = f"lr {lr:.0e}" + ("" if r["status"] == "ok" else f" ({r['status']})")
        axs[0, 0].plot([e["step"] for e in ev], [e["loss"] for e in ev], marker=".", label=label)
        axs[1, 0].plot([t["step"] for t in tr], [t["loss"] for t in tr], label=label)
        axs[1, 1].plot([t["step"] for t in tr], [t["lr"] for t in tr], label=label)
        if _best_loss(r) < math.inf:
            pts.append((lr, r.get("val_loss"), _best_loss(r)))
    if pts:
        axs[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="final")
        axs[0, 1].plot([p[0] for p in pts], [p[2] for p in pts], "s--", label="best")
        axs[0, 1].set_xscale("log")
    axs[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    axs[0, 1].set(xlabel="learning rate", ylabel="validation loss", title="final validation loss vs LR")
    axs[1, 0].set(xlabel="step", ylabel="training loss", title="training loss")
    axs[1, 1].set(xlabel="step", ylabel="learning rate", title="LR schedule (warmup + cosine)")
    for ax in axs.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    save_figure(fig, study_dir / "lr_search_comparison.png")


# ---------------------------------------------------------------- expert search
def expert_experiments() -> list[ExperimentSpec]:
    return [ExperimentSpec(f"experts_{e}_top_{k}", {"model.num_experts": e, "model.top_k": k}) for e, k in EXPERT_GRID]


def recommend_experts(records: list[dict]) -> dict[str, Any]:
    ok = sorted((r for r in records if _best_loss(r) < math.inf), key=_best_loss)
    if not ok:
        return {"best": None, "recommendation": "every configuration failed; nothing to recommend",
                "failed": [r["experiment_id"] for r in records]}
    b = ok[0]
    rec = {"num_experts": b["config"]["model"]["num_experts"], "top_k": b["config"]["model"]["top_k"],
           "best_val_loss": _best_loss(b), "learning_rate": b["config"]["train"]["muon_lr"],
           "params": b.get("params"), "routing_cv": (b.get("routing") or {}).get("cv"),
           "failed": [r["experiment_id"] for r in records if r.get("status") != "ok"]}
    if len(ok) > 1:
        rec["runner_up"] = ok[1]["experiment_id"]
        rec["margin"] = _best_loss(ok[1]) - _best_loss(b)
    rec["recommendation"] = (f"{rec['num_experts']} experts, top-{rec['top_k']} (best val loss "
                             f"{rec['best_val_loss']:.4f}" + (f", {rec['margin']:.4f} below {rec['runner_up']})"
                                                              if "margin" in rec else ")"))
    return rec


def write_expert_outputs(study_dir: Path, records: list[dict], exp: int = 3) -> dict:
    rec = {"exp": exp, **recommend_experts(records)}
    summary = [{"experiment_id": r["experiment_id"], "status": r["status"],
                "num_experts": r["config"]["model"]["num_experts"], "top_k": r["config"]["model"]["top_k"],
                "best_val_loss": r.get("best_val_loss"), "val_loss": r.get("val_loss"),
                "params": r.get("params"), "tokens_per_s": r.get("tokens_per_s"),
                "routing": r.get("routing")} for r in records]
    atomic_write_json(study_dir / "expert_search_results.json", {"configurations": summary, "results": records})
    atomic_write_json(study_dir / "expert_recommendation.json", rec)
    plot_expert_search(study_dir, records)
    return rec


def plot_expert_search(study_dir: Path, records: list[dict]) -> None:
    from ..analysis.plots import save_figure, plt

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    ok = [r for r in records if _best_loss(r) < math.inf]
    for r in records:
        ev = r.get("history", {}).get("eval", [])
        axs[0, 0].plot([e["step"] for e in ev], [e["loss"] for e in ev], marker=".", label=r["experiment_id"])
    for k in (1, 2):
        pts = sorted((r["config"]["model"]["num_experts"], r["val_loss"]) for r in ok
                     if r["config"]["model"]["top_k"] == k)
        if pts:
            axs[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"top-{k}")
    axs[1, 0].scatter([r["params"]["active"] for r in ok], [r["val_loss"] for r in ok])
    for r in ok:
        axs[1, 0].annotate(r["experiment_id"].replace("experts_", "E").replace("_top_", "k"),
                           (r["params"]["active"], r["val_loss"]), fontsize=8)
    axs[1, 1].bar([r["experiment_id"].replace("experts_", "E").replace("_top_", "k") for r in ok],
                  [r.get("tokens_per_s") or 0 for r in ok], color="tab:green")
    axs[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    axs[0, 1].set(xlabel="experts", ylabel="final validation loss", title="loss vs experts", xscale="log")
    axs[1, 0].set(xlabel="active parameters", ylabel="final validation loss", title="loss vs active parameters")
    axs[1, 1].set(ylabel="tokens/s", title="throughput")
    for ax in (axs[0, 0], axs[0, 1]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    save_figure(fig, study_dir / "expert_search_comparison.png")


# ---------------------------------------------------------------- finding earlier recommendations
def find_recommendation(output_dir: str | Path, filename: str, exp: int) -> tuple[dict, Path] | None:
    """The newest ``filename`` under ``output_dir`` made for experiment ``exp``."""
    found = []
    for p in Path(output_dir).glob(f"**/{filename}"):
        try:
            rec = read_json(p)
        except UserError:
            continue
        if rec.get("exp", exp) == exp and (rec.get("best_learning_rate") or rec.get("num_experts")):
            found.append((p.stat().st_mtime, p, rec))
    if not found:
        return None
    _, path, rec = max(found, key=lambda t: t[0])
    return rec, path
