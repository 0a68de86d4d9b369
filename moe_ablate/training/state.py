"""The loop's state: what a checkpoint saves and a resumed run continues from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

History = dict[str, list]  # "train", "eval", "hellaswag" (and "routing" for MoE models): one entry per event


def new_history() -> History:
    return {"train": [], "eval": [], "hellaswag": []}


@dataclass
class TrainState:
    """Counters of one run. Stored in checkpoints as a plain dict with these keys (the format of every
    checkpoint written so far), so ``to_dict``/``from_dict`` keep the keys and leave out unset extras."""

    step: int = 0
    tokens: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    bad_evals: int = 0
    train_time: float = 0.0
    eval_time: float = 0.0
    early_stopped: bool = False  # a run that stopped early stays stopped when it is continued
    pending_loss_sum: float | None = None  # stopped between log steps: the partial training-loss average
    pending_n: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key, unset in (("early_stopped", False), ("pending_loss_sum", None), ("pending_n", 0)):
            if d[key] == unset:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
