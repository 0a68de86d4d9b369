"""Chosen moments for a real SIGKILL, so that a test can kill a study exactly where a resume is hardest.

``MOE_ABLATE_KILL_AT="<point>:<n>"`` makes the process SIGKILL itself the n-th time it passes ``<point>``
(``scripts/kill_resume.py --at``, ``tests/test_faults.py``). Random kills found the resume flake of issue 36
once in hundreds of tries; a named point turns such a moment into a test that fails every time. Points:

- ``write:before_rename`` / ``write:after_rename``: inside ``utils.atomic_write`` (any file: records,
  checkpoints, the stored study), between the fsynced temporary and its rename, and just after it;
- ``train:logged``: in the training loop, a training-loss entry logged and the evaluation not yet run;
- ``runner:recorded``: an experiment's record written, the next experiment not started.

Unset (always, outside these tests) it costs one comparison with None. Not a mock: the kill is real.
"""

from __future__ import annotations

import os
import signal

ENV = "MOE_ABLATE_KILL_AT"
_SPEC = os.environ.get(ENV)
_hits: dict[str, int] = {}


def reached(point: str) -> None:
    if _SPEC is None:
        return
    name, _, n = _SPEC.rpartition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
