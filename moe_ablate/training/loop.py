"""The training loop: one ``ExperimentConfig`` + tokenised data in, one result record out.

Read top to bottom: build the run → (resume) → for each optimizer step: the step, then each component
at its own cadence (metrics, validation + early stop, hooks, checkpoints) → the result. The host only
synchronises at log/eval steps, so CUDA runs ahead of Python between them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import interrupt
from ..checkpoint import restore_training_state
from ..config import ExperimentConfig
from ..data import TokenData
from ..log import to_stderr
from ..models import TransformerLM
from .checkpointer import Checkpointer
from .hooks import hooks_for
from .measure import Timer
from .metrics import TrainMetrics
from .result import Outcome, make_result
from .setup import Run, prepare
from .state import TrainState, new_history
from .step import optimizer_step
from .validator import Validator


def train(cfg: ExperimentConfig, data: TokenData, *, model: TransformerLM | None = None,
          log: Callable[[str], None] | None = None, progress: bool = True, desc: str = "train",
          checkpoint_dir: str | Path | None = None, resume_from: str | Path | None = None,
          stop_at: int | None = None, hellaswag: Callable[[TransformerLM], dict] | None = None,
          tracker=None) -> tuple[dict[str, Any], TransformerLM]:
    """Train one experiment; return its result record and the trained model (never raises for diverged/OOM runs).

    ``model`` may be a model built earlier for the same architecture (re-initialised here). ``stop_at`` ends the
    run at that absolute step (a successive-halving rung, a WSD branch point) and checkpoints there.
    ``tracker`` (``tracking.Trackers``) receives the values the loop already has at log and eval steps.
    """
    started, log = time.perf_counter(), log or to_stderr
    run = prepare(cfg, data, model)
    state, history = TrainState(), new_history()
    if resume_from is not None:
        history, saved = restore_training_state(resume_from, run.model, run.optimizers, run.schedulers, run.scaler,
                                                run.device)
        state = TrainState.from_dict(saved)
        log(f"resumed from {resume_from} at step {state.step}")
    outcome = Outcome(resumed_seconds=state.train_time + state.eval_time)
    metrics = TrainMetrics(run, state, history, tracker)
    validator = Validator(run, state, history, metrics, log, desc)
    checkpointer = Checkpointer(run, data, state, history, metrics, checkpoint_dir, stops_early=stop_at is not None)
    hooks = hooks_for(run.cfg, data, history, hellaswag, tracker)
    end_step = _end_step(run, state, data, stop_at, lambda m: log(f"{desc}: {m}"))
    timer, bar = Timer(state.train_time), _bar(run, state, desc, progress)
    try:
        while state.step < end_step:
            if interrupt.requested() is not None:  # a signal: stop at this step boundary
                outcome.status = "interrupted"
                log(f"{desc}: interrupted at step {state.step}")
                break
            optimizer_step(run, data, state.step, metrics)
            state.step += 1
            state.tokens += run.tokens_per_step
            bar.update(1)
            step, is_eval = state.step, validator.should_validate(state.step)
            if metrics.should_log(step, is_eval) and not metrics.log(step, timer, bar):
                outcome.status = "diverged"
                log(f"{desc}: loss is {metrics.loss} at step {step}; stopping (diverged)")
                break
            stop = validator.validate(step, timer) if is_eval else None
            if stop is not None:
                outcome.status = "diverged" if stop == "diverged" else outcome.status
                break
            for hook in hooks:
                hook.after_step(step, run, timer)
            checkpointer.after_step(step, timer)
    except torch.OutOfMemoryError as e:
        outcome.status, outcome.error = "oom", str(e).splitlines()[0]
        log(f"{desc}: out of memory at step {state.step}")
    finally:
        bar.close()
    state.train_time = timer.lap()
    checkpointer.at_end(outcome.status)
    result = make_result(run, data, state, history, metrics, outcome, checkpointer.saved,
                         wall=time.perf_counter() - started)
    for hook in hooks:
        hook.at_end(run, result)
    return result, run.model


def _end_step(run: Run, state: TrainState, data: TokenData, stop_at: int | None, warn: Callable[[str], None]) -> int:
    """Where this call stops: the run's last step, a rung (``stop_at``), or here for a run that stopped early
    (it stays stopped when continued). Says so when the planned steps read the training data more than once."""
    t = run.cfg.train
    epochs = t.steps * run.tokens_per_step / len(data.train)
    if epochs > 1 and state.step == 0:
        warn(f"warning: {t.steps} steps x {run.tokens_per_step:,} tokens read the {len(data.train):,} training "
             f"tokens {epochs:.1f} times; losses on repeated data flatter the model (use more data or fewer steps)")
    if state.early_stopped:
        return state.step
    return t.steps if stop_at is None else min(t.steps, stop_at)


def _bar(run: Run, state: TrainState, desc: str, progress: bool) -> tqdm:
    return tqdm(total=run.cfg.train.steps, initial=state.step, desc=desc, disable=None if progress else True,
                leave=False, dynamic_ncols=True, file=sys.stderr)
