"""Evaluation at its cadence, with early stopping on the validation loss and the routing window."""

from __future__ import annotations

import math
from collections.abc import Callable

from .evaluate import evaluate
from .measure import Timer
from .metrics import TrainMetrics
from .result import routing_summary
from .setup import Run
from .state import History, TrainState


class Validator:
    def __init__(self, run: Run, state: TrainState, history: History, metrics: TrainMetrics,
                 log: Callable[[str], None], desc: str):
        self.run, self.state, self.history, self.metrics, self.log, self.desc = run, state, history, metrics, log, desc

    def should_validate(self, step: int) -> bool:
        t = self.run.cfg.train
        return step % t.eval_every == 0 or step == t.steps

    def validate(self, step: int, timer: Timer) -> str | None:
        """Evaluate; return why the run stops here ("diverged", "early_stop") or None."""
        run, state, t = self.run, self.state, self.run.cfg.train
        with timer.paused():
            ev = evaluate(run.model, run.val_batches, run.device, run.amp_dtype)
        state.eval_time += timer.last_pause
        ev.update(step=step, tokens=state.tokens, time=state.train_time)
        self.history["eval"].append(ev)
        window = run.model.routing_window()  # at an eval step: the host has synced anyway
        if window is not None:
            self.history.setdefault("routing", []).append({"step": step, "layers": window})
        self._track(ev, step)
        self.log(f"{self.desc}: step {step}/{t.steps} | train {self.metrics.loss:.4f} | val {ev['loss']:.4f} "
                 f"acc {ev['accuracy']:.3f} ppl {ev['perplexity']:.2f} | "
                 f"{state.tokens / max(state.train_time, 1e-9):,.0f} tok/s")
        if not math.isfinite(ev["loss"]):
            return "diverged"
        if ev["loss"] < state.best_val_loss - t.min_delta:
            state.best_val_loss, state.best_step, state.bad_evals = ev["loss"], step, 0
            return None
        state.bad_evals += 1
        if t.patience and state.bad_evals >= t.patience:
            state.early_stopped = True
            self.log(f"{self.desc}: early stop at step {step}: no improvement in {t.patience} evaluations")
            return "early_stop"
        return None

    def _track(self, ev: dict, step: int) -> None:
        tracker = self.metrics.tracker
        if tracker is None:
            return
        routing = self.run.model.routing_stats()
        tracker.log({"val/loss": ev["loss"], "val/accuracy": ev["accuracy"], "val/perplexity": ev["perplexity"],
                     **({"routing/load_cv": routing["cv"]} if routing else {}),
                     **routing_summary(self.history.get("routing", [])[-1:], prefix="routing/")}, step)
