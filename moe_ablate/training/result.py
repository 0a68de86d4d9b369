"""The result record of one training run (the runner adds the experiment's identity to it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data import TokenData
from ..utils import git_commit
from .measure import memory_gb
from .setup import Run
from .state import History, TrainState


@dataclass
class Outcome:
    """How the run ended: "ok", "diverged", "oom" or "interrupted", and what came before this call."""

    status: str = "ok"
    error: str | None = None
    resumed_seconds: float = 0.0  # spent before this call (a WSD branch's trunk, a resumed run)


def make_result(run: Run, data: TokenData, state: TrainState, history: History, metrics, outcome: Outcome,
                checkpoints: list[str], wall: float) -> dict[str, Any]:
    model, device, t = run.model, run.device, run.cfg.train
    last_eval = history["eval"][-1] if history["eval"] else {}
    counts = model.param_counts()
    return {
        "status": outcome.status,
        "error": outcome.error,
        "early_stopped": state.early_stopped,
        "steps": state.step,
        "final_train_loss": metrics.loss,
        "final_train_accuracy": metrics.accuracy,
        "val_loss": last_eval.get("loss"),
        "val_accuracy": last_eval.get("accuracy"),
        "val_perplexity": last_eval.get("perplexity"),
        "best_val_loss": state.best_val_loss if state.best_step is not None else None,
        "best_step": state.best_step,
        "final_lr": run.lr,
        "tokens_seen": state.tokens,
        "train_time_s": state.train_time,
        "eval_time_s": state.eval_time,
        "wall_time_s": wall,
        "tokens_per_s": state.tokens / state.train_time if state.train_time > 0 else None,
        "params": counts,
        "routing": model.routing_stats(),
        **routing_summary(history.get("routing", [])),
        "device": device,
        "amp": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "fp32",
        "compiled": getattr(model, "_compiled_call_impl", None) is not None,
        "peak_memory_gb": max(metrics.peak_memory, memory_gb(device)),
        "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process RSS (sampled)",
        "seed": t.seed,
        "git_commit": git_commit(),
        "data": data.provenance,
        "checkpoints": checkpoints,
        "history": history,
        "epochs": state.tokens / len(data.train),  # > 1: the run repeated its training data
        "resumed_seconds": outcome.resumed_seconds,
        # compute accounting (one formula: TransformerLM.flops_per_token), flat so that tables can use it
        "params_total": counts["total"],
        "params_active": counts["active"],
        "flops_per_token": model.flops_per_token(t.seq_len),
        "tokens": state.tokens,
        "flops": model.flops_per_token(t.seq_len) * state.tokens,
    }


def routing_summary(windows: list[dict], prefix: str = "routing_") -> dict[str, float]:
    """Routing health for the record (and trackers): the last window's MaxVio (mean over layers), dead
    experts (summed over layers), router entropy (mean), bias norm (mean, aux-loss-free router), and the
    largest MaxVio seen at any evaluation."""
    if not windows or not windows[-1]["layers"] or windows[-1]["layers"][0].get("maxvio") is None:
        return {}
    last = windows[-1]["layers"]

    def mean(key: str, layers: list[dict]) -> float | None:
        return sum(v[key] for v in layers) / len(layers) if all(v.get(key) is not None for v in layers) else None

    out = {f"{prefix}maxvio": mean("maxvio", last), f"{prefix}dead_experts": sum(v["dead"] for v in last),
           f"{prefix}entropy": mean("entropy", last),
           f"{prefix}maxvio_peak": max((mean("maxvio", w["layers"]) or 0.0) for w in windows)}
    if "bias_norm" in last[0]:
        out[f"{prefix}bias_norm"] = mean("bias_norm", last)
    return {k: v for k, v in out.items() if v is not None}
