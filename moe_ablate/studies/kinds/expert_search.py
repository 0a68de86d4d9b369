"""Expert search: experts {4, 8, 16} x top-k {1, 2} for a Mixture-of-Experts model (by default Experiment 3's
GLM4-MoE model, the seeds' expert_search; any MoE ``--model`` at any ``--preset`` otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UserError
from ...record import config_id
from ...utils import atomic_write_json
from ..spec.file import ExperimentSpec
from ..spec.stored import Study
from .base import StudyKind, register
from .experiments import auto_lr, search_base, search_name
from .lr_search import METRIC

EXPERT_GRID = [(e, k) for e in (4, 8, 16) for k in (1, 2)]
DEFAULTS = {"train.steps": 800, "train.eval_every": 100, "train.log_every": 10}


def expert_experiments() -> list[ExperimentSpec]:
    return [ExperimentSpec(f"experts_{e}_top_{k}", {"model.num_experts": e, "model.top_k": k}) for e, k in EXPERT_GRID]


def make_study(*, lr: float = 1e-3, lr_source: str = "the default 1e-3", preset: str | None = None,
               overrides: dict[str, Any] | None = None, confirm: int | None = None, exp: int | None = 3,
               config: str | None = None) -> Study:
    base = search_base(exp, preset, {**DEFAULTS, "train.muon_lr": lr}, overrides, "expert-search", config)
    if base.model.name == "deepseek_mlp":
        raise UserError("expert-search: deepseek_mlp has no experts (a dense MLP); choose moe or deepseek_glm4_moe")
    what = f"Experiment {exp}" if exp is not None else base.model.name
    return Study(kind=KIND.name, name=search_name("expert_search", exp, base), base=base,
                 experiments=expert_experiments(), params={"exp": exp, "lr": lr, "lr_source": lr_source,
                                                           "preset": preset, **({"config": config} if config else {})},
                 metric=METRIC,
                 description=f"Experts x top-k for {what} at Muon LR {lr:.2e} ({lr_source})", confirm=confirm)


class ExpertSearchKind(StudyKind):
    name = "expert_search"
    title = "Expert search"
    command = "expert-search"
    help = "how many experts and which top-k: {4,8,16} x {1,2} for a MoE model, with a recommendation"
    description = ("Train the model with each expert configuration (800 steps) and recommend one; default: Experiment "
                   "3's GLM4-MoE model at preset exp3, or --model moe|deepseek_glm4_moe at --preset (default tiny); "
                   "records routing balance and total/active parameters.")
    folder_name = "expert_search_exp3 (expert_search_<model> with --model)"
    skip_flags = ("--muon-lr", "--num-experts", "--top-k")

    def add_flags(self, defining, other):
        defining.add("--exp", type=int, choices=[3], default=None,
                     help="3: Experiment 3's model and preset (the default unless --model or --config is given)")
        defining.add("--config", default=None, help="a study TOML whose [study] preset and [base] settings define "
                                                    "the model and run (its grid is not used)")
        defining.add("--lr", type="lr_or_auto", default=None,
                     help="Muon LR, or 'auto' = the lr-search --exp 3 recommendation found under --output-dir "
                          "(default 1e-3)")

    def build(self, args, overrides):
        exp = 3 if args.exp is not None or ("model.name" not in overrides and not args.config) else None
        if args.lr == "auto":
            lr, source = auto_lr(args.output_dir, exp, overrides.get("model.name", "moe"))
        else:
            lr, source = (args.lr, "--lr") if args.lr is not None else (1e-3, "the default 1e-3")
        return make_study(lr=lr, lr_source=source, preset=args.preset, overrides=overrides, confirm=args.confirm,
                          exp=exp, config=args.config)

    def recommendation(self, study: Study, records: list[dict], analysis: dict) -> dict[str, Any]:
        rec = analysis["recommendation"]
        failed = [r["experiment_id"] for r in records if r.get("status") != "ok"]
        if rec.get("best") is None:
            return {"exp": study.params.get("exp"), "best": None, "failed": failed,
                    "recommendation": "every configuration failed; nothing to recommend"}
        b = next(r for r in records if config_id(r) == rec["best"] and r.get("status") == "ok")
        m = b["config"]["model"]
        out = {"exp": study.params.get("exp"), "num_experts": m["num_experts"], "top_k": m["top_k"],
               "best_val_loss": rec[METRIC],
               "learning_rate": b["config"]["train"]["muon_lr"], "params": b.get("params"),
               "routing_cv": (b.get("routing") or {}).get("cv"), "failed": failed, "verdict": rec["verdict"],
               "near_optimal": rec["near_optimal"],
               "recommendation": f"{m['num_experts']} experts, top-{m['top_k']}: {rec['text']}"}
        if "runner_up" in rec:
            out["runner_up"], out["margin"] = rec["runner_up"], rec["margin"]
        return out

    def write_files(self, study_dir, study, records, analysis):
        summary = []  # one entry per configuration, its seeds folded in (means over successful runs)
        for c in analysis["configurations"]:
            runs = [r for r in records if config_id(r) == c["config_id"]]
            ok = [r for r in runs if r["status"] == "ok"]
            first = (ok or runs)[0]

            def mean(key, ok=ok):
                vals = [r[key] for r in ok if r.get(key) is not None]
                return sum(vals) / len(vals) if vals else None

            summary.append({"experiment_id": c["config_id"], "status": "ok" if ok else first["status"],
                            "num_experts": first["config"]["model"]["num_experts"],
                            "top_k": first["config"]["model"]["top_k"], "n": c["n"], "best_val_loss": c["mean"],
                            "best_val_loss_ci95": c["ci95"], "val_loss": mean("val_loss"),
                            "params": first.get("params"), "tokens_per_s": mean("tokens_per_s"),
                            "routing": first.get("routing"), "runs": [r["experiment_id"] for r in runs]})
        atomic_write_json(study_dir / "expert_search_results.json", {"configurations": summary, "results": records})
        atomic_write_json(study_dir / "expert_recommendation.json", self.recommendation(study, records, analysis))

    def answer(self, study, records, analysis):
        return self.recommendation(study, records, analysis)["recommendation"] + compute_note(analysis)

    def figures(self, study_dir, study, records, analysis):
        return [plot_expert_search(study_dir, records)]


KIND = register(ExpertSearchKind())


def compute_note(analysis: dict) -> str:
    """Whether the configurations compared were matched in active compute, and if not, the best at equal FLOPs."""
    r = analysis.get("routing") or {}
    if r.get("matched") is None:
        return ""
    lo, hi = r["flops_per_token_range"]
    if r["matched"]:
        return f" The configurations were matched in active compute ({lo:,.0f} training FLOPs per token)."
    eq = r.get("equal_compute") or []
    best = f"; at equal training FLOPs ({r['budget_flops']:.3g}) the lowest validation loss is {eq[0]['config_id']} " \
           f"({eq[0]['val_loss_at_budget']:.4f})" if eq else ""
    return (f" The configurations were not matched in active compute ({lo:,.0f} to {hi:,.0f} training FLOPs per "
            f"token): more active experts also spent more compute{best}.")


def plot_expert_search(study_dir: Path, records: list[dict]) -> Path:
    from ...analysis.plots import plt, save_figure

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    ok = [r for r in records if r["status"] == "ok" and r.get("val_loss") is not None]
    short = {r["experiment_id"]: r["experiment_id"].replace("experts_", "E").replace("_top_", "k") for r in records}
    for r in records:
        ev = r.get("history", {}).get("eval", [])
        axs[0, 0].plot([e["step"] for e in ev], [e["loss"] for e in ev], marker=".", label=short[r["experiment_id"]])
    for k in (1, 2):
        pts = sorted((r["config"]["model"]["num_experts"], r["val_loss"]) for r in ok
                     if r["config"]["model"]["top_k"] == k)
        if pts:
            axs[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], "o", label=f"top-{k}")
    axs[1, 0].scatter([r["params"]["active"] for r in ok], [r["val_loss"] for r in ok])
    for r in ok:
        axs[1, 0].annotate(short[r["experiment_id"]], (r["params"]["active"], r["val_loss"]), fontsize=8)
    axs[1, 1].bar([short[r["experiment_id"]] for r in ok], [r.get("tokens_per_s") or 0 for r in ok], color="tab:green")
    axs[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    axs[0, 1].set(xlabel="experts", ylabel="final validation loss", title="loss vs experts", xscale="log")
    axs[1, 0].set(xlabel="active parameters", ylabel="final validation loss", title="loss vs active parameters")
    axs[1, 1].set(ylabel="tokens/s", title="throughput")
    for ax in (axs[0, 0], axs[0, 1]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, study_dir / "expert_search_comparison.png")
