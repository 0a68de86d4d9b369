"""Periodic and end-of-run extras that are not part of every run. Each hook owns its cadence:
``after_step(step, run, timer)`` after each optimizer step, ``at_end(run, result)`` on a finished run."""

from __future__ import annotations

from collections.abc import Callable

from ..data import TokenData
from ..models import TransformerLM
from .evaluate import evaluate
from .measure import Timer
from .setup import Run
from .state import History


class Hook:
    def after_step(self, step: int, run: Run, timer: Timer) -> None:
        pass

    def at_end(self, run: Run, result: dict) -> None:
        pass


class HellaSwagHook(Hook):
    """Scores the model every ``train.hellaswag_every`` steps (outside the training time) into the history."""

    def __init__(self, score: Callable[[TransformerLM], dict], every: int, history: History, tracker=None):
        self.score, self.every, self.history, self.tracker = score, every, history, tracker

    def after_step(self, step: int, run: Run, timer: Timer) -> None:
        if not self.every or step % self.every:
            return
        with timer.paused():
            self.history["hellaswag"].append({**self.score(run.model), "step": step})
        if self.tracker is not None:
            last = self.history["hellaswag"][-1]
            self.tracker.log({"hellaswag/acc": last["acc"], "hellaswag/acc_norm": last["acc_norm"]}, step)


class OwnLengthEval(Hook):
    """batch-seqlen scores every run on common windows of another length; beyond its training length a
    short-context model is off-task, so the final model is also scored at its own length, on as many
    validation tokens (``val_loss_own_length``)."""

    def __init__(self, data: TokenData):
        self.data = data

    def at_end(self, run: Run, result: dict) -> None:
        t = run.cfg.train
        if result["status"] != "ok":
            return
        per_batch = max(1, (t.eval_batch_size or t.batch_size) * t.eval_seq_len // t.seq_len)
        batches = self.data.val_batches(per_batch, t.seq_len, t.eval_batches, run.device)
        result["val_loss_own_length"] = evaluate(run.model, batches, run.device, run.amp_dtype)["loss"]


def hooks_for(cfg, data: TokenData, history: History, hellaswag: Callable | None, tracker=None) -> list[Hook]:
    """The hooks a configuration asks for: HellaSwag when a scorer is given and ``hellaswag_every`` is set, the
    own-length evaluation when it is evaluated at another length (``train.eval_seq_len``, set by batch-seqlen)."""
    t, hooks = cfg.train, []
    if hellaswag is not None and t.hellaswag_every:
        hooks.append(HellaSwagHook(hellaswag, t.hellaswag_every, history, tracker))
    if t.eval_seq_len and t.eval_seq_len != t.seq_len:
        hooks.append(OwnLengthEval(data))
    return hooks
