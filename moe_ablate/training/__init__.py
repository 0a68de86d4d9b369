"""Training one experiment: ``train(cfg, data)`` → (result record, model). The loop (``loop.py``) asks its
components, each owning its cadence and state: metrics (``metrics.py``), validation and early stopping
(``validator.py``), checkpoints (``checkpointer.py``), periodic/end hooks (``hooks.py``: HellaSwag, batch-seqlen's
own-length evaluation); ``setup.py`` builds the run, ``step.py`` is one optimizer step, ``result.py`` the record."""

from .loop import train
from .result import routing_summary
from .setup import amp_dtype_for, seed_everything

__all__ = ["amp_dtype_for", "routing_summary", "seed_everything", "train"]
