"""Training checkpoints at their cadence, and one where the run ends when it will be continued."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import save_training_state
from ..data import TokenData
from .measure import Timer
from .metrics import TrainMetrics
from .setup import Run
from .state import History, TrainState

CHECKPOINT_GLOB = "checkpoint_step_*.pt"


def checkpoint_name(step: int) -> str:
    return f"checkpoint_step_{step}.pt"


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint file was saved at, from its name."""
    return int(Path(path).stem.rsplit("_", 1)[1])


class Checkpointer:
    """Saves into ``folder`` every ``train.checkpoint_every`` steps, and at the end of a run that checkpoints or
    stops before its last step (a rung, a branch point: it will be continued). ``saved`` lists the paths."""

    def __init__(self, run: Run, data: TokenData, state: TrainState, history: History, metrics: TrainMetrics,
                 folder: str | Path | None, stops_early: bool):
        self.run, self.data, self.state, self.history, self.metrics = run, data, state, history, metrics
        self.folder, self.every = (Path(folder) if folder is not None else None), run.cfg.train.checkpoint_every
        self.save_at_end = self.folder is not None and (bool(self.every) or stops_early)
        self.saved: list[str] = []

    def after_step(self, step: int, timer: Timer) -> None:
        if self.folder is not None and self.every and step % self.every == 0:
            with timer.paused():
                self.save(step)

    def at_end(self, status: str) -> None:
        """Finished, early-stopped, stopped at a rung or interrupted: save where the run ends (once)."""
        if self.save_at_end and status in ("ok", "interrupted"):
            self.save(self.state.step)

    def save(self, step: int) -> None:
        path = self.folder / checkpoint_name(step)
        if str(path) in self.saved:
            return
        run = self.run
        snapshot = {**self.state.to_dict(), **self.metrics.pending()}
        save_training_state(path, run.cfg, run.model, self.data.tokenizer, run.optimizers, run.schedulers, run.scaler,
                            self.history, snapshot, run.device)
        self.saved.append(str(path))
