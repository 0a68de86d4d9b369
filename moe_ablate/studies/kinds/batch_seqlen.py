"""Batch size vs sequence length at equal tokens per optimizer step (the seeds' Experiment 5).

Strategies come from ``configs/batch_seqlen.toml``; each runs with every LR. A configuration is
(strategy, LR); the study's answer compares the best LR of each strategy, with the noise. Every
run is scored twice: on the same validation windows (the longest seq_len: the same tokens predicted
from the same context, the question "which model is better at the long context"), which the answer
uses, and at its own training length (``val_loss_own_length``, as many tokens), where a
short-context model is not asked to predict beyond the positions it was trained on. The report
gives both rankings and says whether they agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UserError
from ...record import config_id
from ...utils import atomic_write_json
from ..spec.file import ExperimentSpec, StudySpec, load_spec
from ..spec.stored import Study
from .base import StudyKind, register


def _divisors(spec: StudySpec, preset: str) -> tuple[int, int]:
    """(batch, seq) divisors of the file's [scale.<preset>] section (1, 1 when absent)."""
    scale = spec.extra.get("scale", {}).get(preset, {})
    return int(scale.get("batch", 1)), int(scale.get("seq", 1))


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
    from ..spec.file import safe_name

    out = [strategy(safe_name(s["name"], "a [[strategy]] name"), max(1, s["batch_size"] // b_div),
                    max(2, s["seq_len"] // s_div), s.get("grad_accum", 1)) for s in raw]
    if len({s["tokens_per_step"] for s in out}) != 1:
        raise UserError("strategies must see the same tokens per optimizer step; got "
                        + ", ".join(f"{s['name']}={s['tokens_per_step']}" for s in out))
    return out


def experiments(strats: list[dict], lrs: list[float]) -> list[ExperimentSpec]:
    """Every strategy x LR, all scored on the same validation windows (longest seq_len, fixed batch)."""
    eval_seq = max(s["seq_len"] for s in strats)
    eval_batch = min(s["batch_size"] for s in strats)
    return [ExperimentSpec(f"{s['name']}_lr{float(lr)!r}", {
        "train.batch_size": s["batch_size"], "train.seq_len": s["seq_len"], "train.grad_accum": s["grad_accum"],
        "train.muon_lr": lr, "train.eval_seq_len": eval_seq, "train.eval_batch_size": eval_batch},
        labels={"strategy": s["name"], "muon_lr": lr}) for s in strats for lr in lrs]


def make_study(config: str = "batch_seqlen", *, preset: str | None = None, overrides: dict[str, Any] | None = None,
               custom: dict[str, Any] | None = None, confirm: int | None = None) -> Study:
    """The file's strategies x LRs, or one ``custom`` strategy (name, batch_size, seq_len, grad_accum, lr)."""
    spec = load_spec(config)
    preset = preset or spec.preset
    base = spec.base_config(preset, None, overrides or {})
    base.model.max_seq_len = max(2, base.model.max_seq_len // _divisors(spec, preset)[1])
    if custom:
        from ..spec.file import safe_name

        strats = [strategy(safe_name(custom.get("name") or "custom", "--name"), custom["batch_size"], custom["seq_len"],
                           custom.get("grad_accum") or 1)]
        lrs = [custom.get("lr") or base.train.muon_lr]
    else:
        strats, lrs = strategies(spec, preset), learning_rates(spec, base.train.muon_lr)
    exps = experiments(strats, lrs)
    for e in exps:
        if e.overrides["train.seq_len"] > base.model.max_seq_len:
            raise UserError(f"{e.id}: seq_len {e.overrides['train.seq_len']} exceeds the model's max_seq_len "
                            f"{base.model.max_seq_len}")
    name = f"batch_seqlen_{strats[0]['name']}" if custom else "batch_seqlen"
    return Study(kind=KIND.name, name=name, base=base, experiments=exps,
                 params={"spec": spec.to_dict(), "preset": preset, "strategies": strats, "lrs": lrs},
                 metric=spec.metric, description=spec.description, confirm=confirm)


def _rows(records: list[dict]) -> list[dict]:
    return [{"run": r["experiment_id"], "strategy": r["hyperparameters"]["strategy"],
             "batch_size": r["config"]["train"]["batch_size"], "seq_len": r["config"]["train"]["seq_len"],
             "grad_accum": r["config"]["train"]["grad_accum"], "lr": r["config"]["train"]["muon_lr"],
             "seed": r["config"]["train"]["seed"], "status": r["status"], "val_loss": r.get("val_loss"),
             "val_accuracy": r.get("val_accuracy"), "train_time_s": r.get("train_time_s"),
             "tokens_per_s": r.get("tokens_per_s"), "peak_memory_gb": r.get("peak_memory_gb")} for r in records]


def best_per_strategy(analysis: dict) -> list[dict]:
    """Each strategy's best configuration (its best LR by mean over seeds)."""
    seen, out = set(), []
    for c in analysis["configurations"]:
        if c["n"] > 0 and c.get("strategy", "custom") not in seen:
            seen.add(c.get("strategy", "custom"))
            out.append(c)
    return out


class BatchSeqlenKind(StudyKind):
    name = "batch_seqlen"
    title = "Batch size vs sequence length"
    command = "batch-seqlen"
    help = "batch size vs sequence length at equal tokens per step"
    description = ("Run the strategies of configs/batch_seqlen.toml (large batch + short sequences, balanced, small "
                   "batch + long sequences) x LRs, or one custom configuration.")
    folder_name = "batch_seqlen"
    name_flag = False
    skip_flags = ("--batch-size", "--seq-len", "--grad-accum", "--muon-lr")

    def add_flags(self, defining, other):
        d = defining
        d.add("--config", default=None, help="study TOML (default configs/batch_seqlen.toml)")
        d.add("--batch", type="pos_int", default=None, help="custom run: sequences per micro-batch")
        d.add("--seqlen", type="pos_int", default=None, help="custom run: tokens per sequence")
        d.add("--lr", type="lr_float", default=None, help="custom run: Muon learning rate")
        d.add("--grad-accum", type="pos_int", default=None, help="custom run: micro-batches per step")
        d.add("--name", default=None, help="custom run: its name (used in the folder name)")

    def build(self, args, overrides):
        custom = {"batch_size": args.batch, "seq_len": args.seqlen, "lr": args.lr, "grad_accum": args.grad_accum,
                  "name": args.name}
        is_custom = any(v is not None for k, v in custom.items() if k != "name")
        if is_custom and (args.batch is None or args.seqlen is None):
            raise UserError("a custom run needs at least --batch and --seqlen")
        return make_study(args.config or "batch_seqlen", preset=args.preset, overrides=overrides,
                          custom=custom if is_custom else None, confirm=args.confirm)

    def answer(self, study, records, analysis):
        strats = {s["name"]: s for s in study.params["strategies"]}
        rec = analysis["recommendation"]
        if rec.get("best") is None:
            return "No run finished successfully; no answer."
        speed: dict[str, list[float]] = {}
        for r in records:
            if r["status"] == "ok" and r.get("tokens_per_s"):
                speed.setdefault(r["hyperparameters"]["strategy"], []).append(r["tokens_per_s"])
        fastest = max(speed, key=lambda k: sum(speed[k]) / len(speed[k]))
        tps = sum(speed[fastest]) / len(speed[fastest])
        tokens = next(iter(strats.values()))["tokens_per_step"]
        own = own_length(records, analysis)
        agree = ""
        if own is not None:
            same = own["best_strategy"] == _strategy_of(analysis, rec["best"])
            agree = (f" Scored at each strategy's own training length instead, the best is {own['best_strategy']} "
                     f"({own['best']}, {own['val_loss_own_length']:.4f}): "
                     + ("the two scorings agree." if same else "the scorings disagree, so the answer depends on the "
                        "context length the model will be used at."))
        return (f"On the common longest validation windows: {rec['text']}{agree} Throughput: {fastest} was fastest "
                f"at {tps:,.0f} tokens/s (mean over its runs). Every strategy saw {tokens:,} tokens per optimizer "
                "step.")

    def report_sections(self, study, records, analysis):
        tokens = study.params["strategies"][0]["tokens_per_step"]
        own = own_length(records, analysis)
        lines = ["## The rule", "",
                 f"Every strategy sees batch x seq_len x grad_accum = {tokens:,} tokens per optimizer step, so they "
                 "differ only in how those tokens are shaped. Every run is scored on the same validation windows (the "
                 "longest sequence length), and the answer uses that score: it asks which model predicts the same "
                 "tokens best from the same context. That penalises short-context strategies, whose loss rises at "
                 "positions beyond their training length, so each run is also scored at its own training length "
                 "(`val_loss_own_length`, as many validation tokens).", ""]
        if own is not None:
            lines += ["### Ranked at each strategy's own length", "", own["text"], ""]
        return lines
    def write_files(self, study_dir, study, records, analysis):
        atomic_write_json(study_dir / "results.json", {
            "tokens_per_step": study.params["strategies"][0]["tokens_per_step"], "runs": _rows(records),
            "best_per_strategy": best_per_strategy(analysis), "answer": analysis["answer"], "records": records})

    def figures(self, study_dir, study, records, analysis):
        return [plot(study_dir, records, analysis)]


KIND = register(BatchSeqlenKind())


def _strategy_of(analysis: dict, config_id: str) -> str:
    return next((c.get("strategy", "custom") for c in analysis["configurations"] if c["config_id"] == config_id), "?")


def own_length(records: list[dict], analysis: dict) -> dict | None:
    """The same analysis on ``val_loss_own_length``; None when no run has it."""
    if not any(r.get("val_loss_own_length") is not None for r in records):
        return None
    from ...analysis.stats import analyze

    own = analyze(records, "val_loss_own_length")["recommendation"]
    if own.get("best") is None:
        return None
    return {"best": own["best"], "best_strategy": _strategy_of(analysis, own["best"]),
            "val_loss_own_length": own["val_loss_own_length"], "text": own["text"]}


def plot(study_dir: Path, records: list[dict], analysis: dict) -> Path:
    from ...analysis.plots import plt, save_figure

    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    best = best_per_strategy(analysis)
    best_ids = {c["config_id"] for c in best}
    for r in records:
        if config_id(r) not in best_ids:
            continue
        ev = r.get("history", {}).get("eval", [])
        axs[0, 0].plot([e["tokens"] for e in ev], [e["loss"] for e in ev], marker="o", label=r["experiment_id"])
        axs[0, 1].plot([e["time"] for e in ev], [e["loss"] for e in ev], marker="o", label=r["experiment_id"])
    axs[0, 0].set(xlabel="tokens seen", ylabel="validation loss", title="validation loss vs tokens (best LR each)")
    axs[0, 1].set(xlabel="training wall time (s)", ylabel="validation loss", title="validation loss vs wall time")
    for ax in axs[0]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ok = [r for r in records if r["status"] == "ok" and config_id(r) in best_ids]
    names = sorted({r["hyperparameters"]["strategy"] for r in ok})
    for i, (key, ax, title, unit) in enumerate([("tokens_per_s", axs[1, 0], "throughput", "tokens/s"),
                                                ("peak_memory_gb", axs[1, 1], "peak memory", "GB")]):
        vals = [[r.get(key) or 0 for r in ok if r["hyperparameters"]["strategy"] == n] for n in names]
        ax.bar(names, [sum(v) / len(v) for v in vals], color="tab:green" if i == 0 else "tab:purple")
        ax.set(ylabel=unit, title=f"{title} (best LR of each strategy)")
    return save_figure(fig, study_dir / "batch_seqlen_comparison.png")
