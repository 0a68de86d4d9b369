"""The registry of study kinds (the only module that knows them all)."""

from __future__ import annotations

from ..errors import UserError
from . import batch_seqlen, expert_search, grid, long_train, lr_search, scaling
from .kind import StudyKind

KINDS: dict[str, StudyKind] = {k.name: k for k in (grid.KIND, grid.TRANSFER, lr_search.KIND, expert_search.KIND,
                                                    batch_seqlen.KIND, long_train.KIND,
                                                    scaling.KIND)}


def get_kind(name: str) -> StudyKind:
    if name not in KINDS:
        raise UserError(f"unknown study kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]
