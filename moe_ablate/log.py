"""The one log sink: a plain line on stderr, written through tqdm so that a progress bar on the terminal stays
intact (stdout is left to results a user may pipe)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def to_stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)
