"""Batch size vs sequence length at equal tokens per optimizer step (the seeds' Experiment 5).

Strategies come from ``configs/batch_seqlen.toml``; each runs with every LR. The study writes one
JSON per run (the runner), a combined ``results.json``, ``batch_seqlen_comparison.png`` and a
``report.md`` that answers the question with the measured numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ExperimentConfig
from ..errors import UserError
from ..utils import atomic_write_json, atomic_write_text
from .spec import ExperimentSpec, StudySpec


def _divisors(spec: StudySpec, preset: str) -> tuple[int, int]:
    """(batch, seq) divisors of the file's [scale.<preset>] section (1, 1 when absent)."""
    scale = spec.extra.get("scale", {}).get(preset, {})
    return int(scale.get("batch", 1)), int(scale.get("seq", 1))


def scale_base(base: ExperimentConfig, spec: StudySpec, preset: str) -> ExperimentConfig:
    """The base config with the model's max_seq_len scaled like the strategies' seq_len."""
    base.model.max_seq_len = max(2, base.model.max_seq_len // _divisors(spec, preset)[1])
    return base


def strategy(name: str, batch_size: int, seq_len: int, grad_accum: int = 1) -> dict[str, Any]:
    return {"name": name, "batch_size": batch_size, "seq_len": seq_len, "grad_accum": grad_accum,
            "tokens_per_step": batch_size * seq_len * grad_accum}


def learning_rates(spec: StudySpec, default: float) -> list[float]:
    lrs = spec.extra.get("lrs", [default])
    if not isinstance(lrs, list) or not lrs or not all(isinstance(v, (int, float)) and v > 0 for v in lrs):
        raise UserError(f"lrs must be a non-empty list of positive numbers, got {lrs!r}")
    return [float(v) for v in lrs]


def strategies(spec: StudySpec, preset: str) -> list[dict[str, Any]]:
    """The file's strategies, scaled for the preset, with the equal-tokens rule checked."""
    raw = spec.extra.get("strategy", [])
    if not raw:
        raise UserError("batch-seqlen config defines no [[strategy]]")
    b_div, s_div = _divisors(spec, preset)
    out = [strategy(s["name"], max(1, s["batch_size"] // b_div), max(2, s["seq_len"] // s_div),
                    s.get("grad_accum", 1)) for s in raw]
    budgets = {s["tokens_per_step"] for s in out}
    if len(budgets) != 1:
        raise UserError("strategies must see the same tokens per optimizer step; got "
                        + ", ".join(f"{s['name']}={s['tokens_per_step']}" for s in out))
    return out


def experiments(strats: list[dict], lrs: list[float]) -> list[ExperimentSpec]:
    """Every strategy x LR. All runs are scored on the same validation windows (the longest
    seq_len, a fixed batch), since a shorter context alone raises the loss."""
    eval_seq = max(s["seq_len"] for s in strats)
    eval_batch = min(s["batch_size"] for s in strats)
    return [ExperimentSpec(f"{s['name']}_lr{lr:g}", {
        "train.batch_size": s["batch_size"], "train.seq_len": s["seq_len"], "train.grad_accum": s["grad_accum"],
        "train.muon_lr": lr, "train.eval_seq_len": eval_seq, "train.eval_batch_size": eval_batch})
        for s in strats for lr in lrs]


def record_extra(spec: ExperimentSpec, cfg: ExperimentConfig) -> dict[str, Any]:
    """What each run's JSON adds: its strategy (the id is ``<strategy>_lr<lr>``) and tokens per step."""
    return {"strategy": spec.id.rsplit("_lr", 1)[0],
            "tokens_per_step": cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum}


def check_lengths(base: ExperimentConfig, exps: list[ExperimentSpec]) -> None:
    for e in exps:
        if e.overrides["train.seq_len"] > base.model.max_seq_len:
            raise UserError(f"{e.id}: seq_len {e.overrides['train.seq_len']} exceeds the model's max_seq_len "
                            f"{base.model.max_seq_len}")


def summarize(study_dir: Path, records: list[dict], strats: list[dict]) -> dict[str, Any]:
    by_name = {s["name"]: s for s in strats}
    rows = []
    for r in records:
        rows.append({"run": r["experiment_id"], "strategy": r["strategy"], "batch_size": r["config"]["train"]["batch_size"],
                     "seq_len": r["config"]["train"]["seq_len"], "grad_accum": r["config"]["train"]["grad_accum"],
                     "lr": r["config"]["train"]["muon_lr"], "status": r["status"], "val_loss": r.get("val_loss"),
                     "val_accuracy": r.get("val_accuracy"), "train_time_s": r.get("train_time_s"),
                     "tokens_per_s": r.get("tokens_per_s"), "peak_memory_gb": r.get("peak_memory_gb")})
    df = pd.DataFrame(rows)
    ok = df[(df.status == "ok") & df.val_loss.notna()]
    best = ok.loc[ok.groupby("strategy").val_loss.idxmin()].sort_values("val_loss") if not ok.empty else ok
    answer = _answer(best, by_name)
    summary = {"tokens_per_step": strats[0]["tokens_per_step"], "runs": rows,
               "best_per_strategy": best.to_dict("records"), "answer": answer}
    atomic_write_json(study_dir / "results.json", {**summary, "records": [
        {k: v for k, v in r.items()} for r in records]})
    _plot(study_dir, records, best)
    atomic_write_text(study_dir / "report.md", _report(study_dir.name, df, best, answer, strats))
    return summary


def _answer(best: pd.DataFrame, by_name: dict) -> str:
    if best.empty:
        return "No run finished successfully; no answer."
    w = best.iloc[0]
    s = by_name.get(w.strategy, {})
    text = (f"{w.strategy} ({int(w.batch_size)} x {int(w.seq_len)}, accum {int(w.grad_accum)}) reached the lowest "
            f"validation loss, {w.val_loss:.4f} at lr {w.lr:g}")
    if len(best) > 1:
        r = best.iloc[1]
        text += f", {r.val_loss - w.val_loss:.4f} below {r.strategy} ({r.val_loss:.4f})"
    fastest = best.sort_values("tokens_per_s", ascending=False).iloc[0]
    text += (f". Throughput: {fastest.strategy} was fastest at {fastest.tokens_per_s:,.0f} tokens/s. "
             f"All strategies saw {s.get('tokens_per_step', 0):,} tokens per optimizer step.")
    return text


def _plot(study_dir: Path, records: list[dict], best: pd.DataFrame) -> None:
    from ..analysis.plots import save_figure, plt

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    best_runs = set(best.run) if not best.empty else set()
    for r in records:
        if r["experiment_id"] not in best_runs:
            continue
        ev = r.get("history", {}).get("eval", [])
        label = r["experiment_id"]
        axs[0, 0].plot([e["tokens"] for e in ev], [e["loss"] for e in ev], marker="o", label=label)
        axs[0, 1].plot([e["time"] for e in ev], [e["loss"] for e in ev], marker="o", label=label)
    axs[0, 0].set(xlabel="tokens seen", ylabel="validation loss", title="validation loss vs tokens (best LR each)")
    axs[0, 1].set(xlabel="training wall time (s)", ylabel="validation loss", title="validation loss vs wall time")
    for ax in axs[0]:
        ax.legend(fontsize=8)
    if not best.empty:
        axs[1, 0].bar(best.strategy, best.tokens_per_s, color="tab:green")
        axs[1, 1].bar(best.strategy, best.peak_memory_gb, color="tab:purple")
    axs[1, 0].set(ylabel="tokens/s", title="throughput")
    axs[1, 1].set(ylabel="GB", title="peak memory")
    save_figure(fig, study_dir / "batch_seqlen_comparison.png")


def _report(name: str, df: pd.DataFrame, best: pd.DataFrame, answer: str, strats: list[dict]) -> str:
    from ..analysis.report import _table

    lines = [f"# Batch size vs sequence length: {name}", "",
             f"Rule: every strategy sees batch x seq_len x grad_accum = {strats[0]['tokens_per_step']:,} tokens per "
             "optimizer step, so they differ only in how those tokens are shaped. Every run is scored on the same "
             "validation windows (the longest sequence length), so shorter training contexts are not "
             "penalised by a shorter evaluation context.", "", "## Answer", "", answer, "",
             "## Best run per strategy", "", _table(best.to_dict("records")), "## All runs", "",
             _table(df.to_dict("records")), "![comparison](batch_seqlen_comparison.png)", ""]
    return "\n".join(lines)
