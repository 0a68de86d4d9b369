"""Training metrics at log steps: the mean training loss since the last log step, kept on the device
between them (the only host sync between evaluations is here), tokens/s, memory, and the divergence check."""

from __future__ import annotations

import math

import torch

from .. import failpoints
from .measure import Timer, memory_gb
from .setup import Run
from .state import History, TrainState


class TrainMetrics:
    def __init__(self, run: Run, state: TrainState, history: History, tracker=None):
        self.run, self.state, self.history, self.tracker = run, state, history, tracker
        self.running, self.n = torch.zeros((), device=run.device), 0
        self.logits = self.y = None
        self.loss = self.accuracy = math.nan
        self.peak_memory = memory_gb(run.device)
        if history["train"]:  # continued: the last logged values stand until the next log step
            self.loss, self.accuracy = history["train"][-1]["loss"], history["train"][-1]["accuracy"]
        if state.pending_n:  # stopped between log steps: the partial training-loss average continues
            self.running.fill_(state.pending_loss_sum)
            self.n = state.pending_n
            state.pending_loss_sum, state.pending_n = None, 0

    def add(self, ce: torch.Tensor) -> None:
        self.running += ce.detach()
        self.n += 1

    def last_batch(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.logits, self.y = logits.detach(), y

    def pending(self) -> dict:
        """For a checkpoint between log steps: the partial average, so a resumed run continues it (one sync)."""
        return {"pending_loss_sum": float(self.running.item()), "pending_n": self.n} if self.n else {}

    def should_log(self, step: int, is_eval: bool) -> bool:
        # a run stopped early (a rung, a trunk's branch point) logs where the whole run would, so that
        # its continuation's history is the uninterrupted run's, entry for entry
        return step % self.run.cfg.train.log_every == 0 or is_eval

    def log(self, step: int, timer: Timer, bar) -> bool:
        """Record the step's training metrics; False when the loss is not finite (the run diverged)."""
        state = self.state
        self.loss = (self.running / max(self.n, 1)).item()
        self.accuracy = (self.logits.argmax(-1) == self.y).float().mean().item()
        self.running.zero_()
        self.n = 0
        state.train_time = timer.lap()
        tok_s = state.tokens / max(state.train_time, 1e-9)
        self.history["train"].append({"step": step, "loss": self.loss, "accuracy": self.accuracy, "lr": self.run.lr,
                                      "tokens": state.tokens, "time": state.train_time})
        bar.set_postfix(loss=f"{self.loss:.3f}", tok_s=f"{tok_s:,.0f}")
        failpoints.reached("train:logged")
        if self.tracker is not None:
            self.tracker.log({"train/loss": self.loss, "train/accuracy": self.accuracy, "train/tokens_per_s": tok_s,
                              "train/lr": self.run.lr}, step)
        self.peak_memory = max(self.peak_memory, memory_gb(self.run.device))
        return math.isfinite(self.loss)
