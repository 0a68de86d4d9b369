"""The built-in study kinds, and what the command line asks of the registry (``kind.REGISTRY``).

Each kind's file registers its kind (``KIND = register(MyKind())``); importing it here makes it built in. A kind
of your own: a ``StudyKind`` subclass and ``register(MyKind())`` before ``moe_ablate.cli.main`` runs (or one
more import below). ``base.py`` says what a kind may define."""

from __future__ import annotations

from . import batch_seqlen, expert_search, grid, long_train, lr_search, scaling  # noqa: F401  (they register)
from .base import REGISTRY as KINDS
from .base import StudyKind, get_kind, register

__all__ = ["KINDS", "command_for", "get_kind", "register", "resumable_by", "with_commands"]


HELP_ORDER = ("run", "scaling", "batch-seqlen", "lr-search", "expert-search")  # then any other, as registered


def with_commands() -> list[StudyKind]:
    """The kinds that have a command of their own, in the order --help lists them."""
    rank = {c: i for i, c in enumerate(HELP_ORDER)}
    return sorted((k for k in KINDS.values() if k.command), key=lambda k: rank.get(k.command, len(rank)))


def resumable_by(command: str) -> set[str]:
    return {k.name for k in KINDS.values() if k.command == command or command in k.resumed_by}


def command_for(kind_name: str) -> str:
    kind = get_kind(kind_name)
    return kind.command or (kind.resumed_by or ("run",))[0]
