"""The training loop: one ``ExperimentConfig`` + tokenised data in, one result record out.

Readable top to bottom: set up → for each optimizer step: micro-batches (AMP, accumulation) →
clip → Muon + AdamW step → schedule → (log | evaluate | early-stop | checkpoint) → result.
The host only synchronises at log/eval steps, so CUDA runs ahead of Python between them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import failpoints, interrupt
from .config import ExperimentConfig, validate
from .data import TokenData
from .evaluate import autocast_context, evaluate
from .models import TransformerLM, build_model
from .optim import build_optimizers, build_schedulers
from .checkpoint import restore_training_state, save_training_state
from .utils import git_commit, resolve_device


class Timer:
    """Training time only: ``with timer.paused():`` around evaluation, checkpoints and HellaSwag
    keeps them out by construction. ``lap()`` adds the time since the last lap (or pause) and
    returns the running total, which a resumed run starts from."""

    def __init__(self, total: float = 0.0):
        self.total, self._since, self.last_pause = total, time.perf_counter(), 0.0

    def lap(self) -> float:
        now = time.perf_counter()
        self.total += now - self._since
        self._since = now
        return self.total

    @contextlib.contextmanager
    def paused(self):
        self.lap()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._since = time.perf_counter()
            self.last_pause = self._since - start


def amp_dtype_for(device: str, amp: str) -> torch.dtype | None:
    """CUDA: bf16 where supported, else fp16 (with GradScaler). CPU: always fp32."""
    if not device.startswith("cuda") or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def memory_gb(device: str) -> float:
    """CUDA: peak allocated since the run began. CPU: current resident set size of this process
    (sampled at log steps; ru_maxrss would be the whole process's lifetime peak, not this run's)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**30
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    cfg: ExperimentConfig,
    data: TokenData,
    *,
    model: TransformerLM | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    stop_after: int | None = None,
    stop_at: int | None = None,
    hellaswag: Callable[[TransformerLM], dict] | None = None,
    tracker=None,
) -> tuple[dict[str, Any], TransformerLM]:
    """Train one experiment; return its result record and the trained model (never raises for diverged/OOM runs).

    ``model`` may be a model built earlier for the same architecture: it is re-initialised
    here, which saves rebuilding (and on CUDA recompiling) it for every experiment of a study.
    ``stop_after`` ends the run after that many optimizer steps (used to test exact resume); ``stop_at``
    ends it at that absolute step (a successive-halving rung) and checkpoints there, like ``stop_after``.
    ``tracker`` (``tracking.Trackers``) receives the values the loop already has at log and eval steps.
    """
    cfg = copy.deepcopy(cfg)
    cfg.model.vocab_size = data.vocab_size
    validate(cfg)
    t, started = cfg.train, time.perf_counter()
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    device = resolve_device(t.device)
    amp_dtype = amp_dtype_for(device, t.amp)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)

    if model is None:
        model = build_model(cfg.model)
    # reseed right before initialising, so a reused model and a freshly built one (whose
    # constructors consumed random numbers) start from identical weights
    seed_everything(t.seed)
    model.init_weights()
    model.zero_grad(set_to_none=True)  # a reused model may hold gradients from a failed step
    model.to(device).train()
    if t.compile and device.startswith("cuda") and getattr(model, "_compiled_call_impl", None) is None:
        # compile in place (every call of the module, model.loss included, runs compiled); a model
        # reused across a study's experiments is compiled once, since re-initialising keeps the graph
        model.compile()
    optimizers = build_optimizers(model, t.muon_lr, t.adamw_lr_ratio, t.momentum, t.weight_decay, device,
                                  adjust_lr=t.muon_adjust_lr)
    schedulers = build_schedulers(optimizers, t)
    # only fp16 needs loss scaling; disabled, the scaler passes every call straight through
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=amp_dtype == torch.float16)
    val_batches = data.val_batches(t.eval_batch_size or t.batch_size, t.eval_seq_len or t.seq_len,
                                   t.eval_batches, device)
    params = [p for p in model.parameters() if p.requires_grad]

    history: dict[str, list] = {"train": [], "eval": [], "hellaswag": []}
    state = {"step": 0, "tokens": 0, "best_val_loss": math.inf, "best_step": None,
             "bad_evals": 0, "train_time": 0.0, "eval_time": 0.0}
    if resume_from is not None:
        history, state = restore_training_state(resume_from, model, optimizers, schedulers, scaler, device)
        log(f"resumed from {resume_from} at step {state['step']}")
    resumed_seconds = state["train_time"] + state["eval_time"]  # spent before this call (a WSD branch's trunk)

    status, error, early_stopped = "ok", None, False
    peak_mem = memory_gb(device)
    train_loss = train_acc = math.nan
    running = torch.zeros((), device=device)
    running_n = 0
    last_logits = last_y = None
    tokens_per_step = t.batch_size * t.seq_len * t.grad_accum
    checkpoints: list[str] = []
    planned_epochs = t.steps * tokens_per_step / len(data.train)
    if planned_epochs > 1 and state["step"] == 0:
        log(f"{desc}: warning: {t.steps} steps x {tokens_per_step:,} tokens read the {len(data.train):,} training "
            f"tokens {planned_epochs:.1f} times; losses on repeated data flatter the model (use more data or fewer "
            "steps)")

    def save_checkpoint(path: Path) -> None:
        snapshot = dict(state)
        if running_n:  # between log steps: the partial training-loss average continues on resume (one sync)
            snapshot.update(pending_loss_sum=float(running.item()), pending_n=running_n)
        save_training_state(path, cfg, model, data.tokenizer, optimizers, schedulers, scaler, history, snapshot,
                            device)
        checkpoints.append(str(path))

    bar = tqdm(total=t.steps, initial=state["step"], desc=desc, disable=None if progress else True, leave=False,
               dynamic_ncols=True, file=sys.stderr)
    end_step = t.steps if stop_after is None else min(t.steps, state["step"] + stop_after)
    if stop_at is not None:
        end_step = min(end_step, stop_at)
    if state.get("early_stopped"):  # a run that stopped early stays stopped when it is continued
        end_step, early_stopped = state["step"], True
    if history["train"]:  # continued: the last logged values stand until the next log step
        train_loss, train_acc = history["train"][-1]["loss"], history["train"][-1]["accuracy"]
    if state.get("pending_n"):  # stopped between log steps: the partial training-loss average continues
        running.fill_(state.pop("pending_loss_sum"))
        running_n = state.pop("pending_n")
    timer = Timer(state["train_time"])
    try:
        while state["step"] < end_step:
            if interrupt.requested() is not None:  # a signal: stop at this step boundary
                status = "interrupted"
                log(f"{desc}: interrupted at step {state['step']}")
                break
            step = state["step"]
            for micro in range(t.grad_accum):
                x, y = data.train_batch(t.seed, step, micro, t.batch_size, t.seq_len, device)
                with autocast_context(device, amp_dtype):
                    loss, ce, logits = model.loss(x, y)
                scaler.scale(loss / t.grad_accum).backward()
                running += ce.detach()
                running_n += 1
            last_logits, last_y = logits.detach(), y
            for o in optimizers:
                scaler.unscale_(o)
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            for o in optimizers:
                scaler.step(o)
                o.zero_grad(set_to_none=True)
            scaler.update()
            for s in schedulers:
                s.step()
            model.after_optimizer_step()
            state["step"] = step = step + 1
            state["tokens"] += tokens_per_step
            bar.update(1)

            is_eval = step % t.eval_every == 0 or step == t.steps
            # a run stopped early (a rung, a trunk's branch point) logs where the whole run would, so that
            # its continuation's history is the uninterrupted run's, entry for entry
            if step % t.log_every == 0 or is_eval:
                # the only host sync between evaluations
                train_loss = (running / max(running_n, 1)).item()
                train_acc = (last_logits.argmax(-1) == last_y).float().mean().item()
                running.zero_()
                running_n = 0
                state["train_time"] = timer.lap()
                tok_s = state["tokens"] / max(state["train_time"], 1e-9)
                history["train"].append({"step": step, "loss": train_loss, "accuracy": train_acc,
                                         "lr": schedulers[0].get_last_lr()[0], "tokens": state["tokens"],
                                         "time": state["train_time"]})
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}")
                failpoints.reached("train:logged")
                if tracker is not None:
                    tracker.log({"train/loss": train_loss, "train/accuracy": train_acc, "train/tokens_per_s": tok_s,
                                 "train/lr": history["train"][-1]["lr"]}, step)
                peak_mem = max(peak_mem, memory_gb(device))
                if not math.isfinite(train_loss):
                    status = "diverged"
                    log(f"{desc}: loss is {train_loss} at step {step}; stopping (diverged)")
                    break
            if is_eval:
                with timer.paused():
                    ev = evaluate(model, val_batches, device, amp_dtype)
                state["eval_time"] += timer.last_pause
                ev.update(step=step, tokens=state["tokens"], time=state["train_time"])
                history["eval"].append(ev)
                window = model.routing_window()  # at an eval step: the host has synced anyway
                if window is not None:
                    history.setdefault("routing", []).append({"step": step, "layers": window})
                if tracker is not None:
                    routing = model.routing_stats()
                    tracker.log({"val/loss": ev["loss"], "val/accuracy": ev["accuracy"],
                                 "val/perplexity": ev["perplexity"],
                                 **({"routing/load_cv": routing["cv"]} if routing else {}),
                                 **routing_summary(history.get("routing", [])[-1:], prefix="routing/")}, step)
                log(f"{desc}: step {step}/{t.steps} | train {train_loss:.4f} | val {ev['loss']:.4f} "
                    f"acc {ev['accuracy']:.3f} ppl {ev['perplexity']:.2f} | "
                    f"{state['tokens'] / max(state['train_time'], 1e-9):,.0f} tok/s")
                if not math.isfinite(ev["loss"]):
                    status = "diverged"
                    break
                if ev["loss"] < state["best_val_loss"] - t.min_delta:
                    state["best_val_loss"], state["best_step"], state["bad_evals"] = ev["loss"], step, 0
                else:
                    state["bad_evals"] += 1
                    if t.patience and state["bad_evals"] >= t.patience:
                        early_stopped = state["early_stopped"] = True
                        log(f"{desc}: early stop at step {step}: no improvement in {t.patience} evaluations")
                        break
            if hellaswag is not None and t.hellaswag_every and step % t.hellaswag_every == 0:
                with timer.paused():
                    history["hellaswag"].append({**hellaswag(model), "step": step})
                if tracker is not None:
                    tracker.log({"hellaswag/acc": history["hellaswag"][-1]["acc"],
                                 "hellaswag/acc_norm": history["hellaswag"][-1]["acc_norm"]}, step)
            if checkpoint_dir is not None and t.checkpoint_every and step % t.checkpoint_every == 0:
                with timer.paused():
                    save_checkpoint(Path(checkpoint_dir) / f"checkpoint_step_{step}.pt")
    except torch.OutOfMemoryError as e:
        status, error = "oom", str(e).splitlines()[0]
        log(f"{desc}: out of memory at step {state['step']}")
    finally:
        bar.close()
    state["train_time"] = timer.lap()
    # when checkpointing, also save where the run ends (finished, early-stopped, or stop_after)
    if checkpoint_dir is not None and status in ("ok", "interrupted") and (
            t.checkpoint_every or stop_after is not None or stop_at is not None):
        final_ckpt = Path(checkpoint_dir) / f"checkpoint_step_{state['step']}.pt"
        if str(final_ckpt) not in checkpoints:
            save_checkpoint(final_ckpt)

    result = make_result(status, error, early_stopped, state, history, train_loss, train_acc,
                         schedulers[0].get_last_lr()[0], model, device, amp_dtype, peak_mem, t.seed, data,
                         checkpoints, wall=time.perf_counter() - started)
    result["epochs"] = state["tokens"] / len(data.train)  # > 1: the run repeated its training data
    result["resumed_seconds"] = resumed_seconds
    # compute accounting (one formula: TransformerLM.flops_per_token), flat so that tables can use it
    counts = result["params"]
    result.update(params_total=counts["total"], params_active=counts["active"],
                  flops_per_token=model.flops_per_token(t.seq_len), tokens=state["tokens"],
                  flops=model.flops_per_token(t.seq_len) * state["tokens"])
    if status == "ok" and t.eval_seq_len and t.eval_seq_len != t.seq_len:
        # scored on common windows of another length (batch-seqlen): also score the final model at its own
        # training length, on as many validation tokens, since beyond it a short-context model is off-task
        per_batch = max(1, (t.eval_batch_size or t.batch_size) * t.eval_seq_len // t.seq_len)
        own = evaluate(model, data.val_batches(per_batch, t.seq_len, t.eval_batches, device), device, amp_dtype)
        result["val_loss_own_length"] = own["loss"]
    return result, model


def routing_summary(windows: list[dict], prefix: str = "routing_") -> dict[str, float]:
    """Routing health for the record (and trackers): the last window's MaxVio (mean over layers), dead
    experts (summed over layers), router entropy (mean), bias norm (mean, aux-loss-free router), and the
    largest MaxVio seen at any evaluation."""
    if not windows or not windows[-1]["layers"] or windows[-1]["layers"][0].get("maxvio") is None:
        return {}
    last = windows[-1]["layers"]
    mean = lambda key, layers: (sum(v[key] for v in layers) / len(layers)  # noqa: E731
                                if all(v.get(key) is not None for v in layers) else None)
    out = {f"{prefix}maxvio": mean("maxvio", last), f"{prefix}dead_experts": sum(v["dead"] for v in last),
           f"{prefix}entropy": mean("entropy", last),
           f"{prefix}maxvio_peak": max((mean("maxvio", w["layers"]) or 0.0) for w in windows)}
    if "bias_norm" in last[0]:
        out[f"{prefix}bias_norm"] = mean("bias_norm", last)
    return {k: v for k, v in out.items() if v is not None}


def make_result(status: str, error: str | None, early_stopped: bool, state: dict, history: dict, train_loss: float,
                train_acc: float, final_lr: float, model: TransformerLM, device: str, amp_dtype, peak_mem: float,
                seed: int, data: TokenData, checkpoints: list[str], wall: float) -> dict[str, Any]:
    """The result record of one training run (the runner adds the experiment's identity to it)."""
    last_eval = history["eval"][-1] if history["eval"] else {}
    train_time = state["train_time"]
    return {
        "status": status,
        "error": error,
        "early_stopped": early_stopped,
        "steps": state["step"],
        "final_train_loss": train_loss,
        "final_train_accuracy": train_acc,
        "val_loss": last_eval.get("loss"),
        "val_accuracy": last_eval.get("accuracy"),
        "val_perplexity": last_eval.get("perplexity"),
        "best_val_loss": state["best_val_loss"] if state["best_step"] is not None else None,
        "best_step": state["best_step"],
        "final_lr": final_lr,
        "tokens_seen": state["tokens"],
        "train_time_s": train_time,
        "eval_time_s": state["eval_time"],
        "wall_time_s": wall,
        "tokens_per_s": state["tokens"] / train_time if train_time > 0 else None,
        "params": model.param_counts(),
        "routing": model.routing_stats(),
        **routing_summary(history.get("routing", [])),
        "device": device,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "compiled": getattr(model, "_compiled_call_impl", None) is not None,
        "peak_memory_gb": max(peak_mem, memory_gb(device)),
        "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process RSS (sampled)",
        "seed": seed,
        "git_commit": git_commit(),
        "data": data.provenance,
        "checkpoints": checkpoints,
        "history": history,
    }
