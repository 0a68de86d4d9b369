"""The one owner of a study folder's layout: where records, checkpoints and the stored study live, and the
housekeeping of checkpoints, crashed records and temporaries. Nothing else spells these paths out.

    config.json              the stored study (study.py), data provenance, versions, commit
    experiments/<id>.json    one per finished experiment, written atomically the moment it ends
    experiments/crashed/     records of crashed runs set aside on --resume (kept, never deleted)
    checkpoints/<id>/        full training state (checkpoint_step_<N>.pt), for experiments that continue
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import UserError
from ...training.checkpointer import CHECKPOINT_GLOB, checkpoint_name, checkpoint_step
from ...utils import TMP_SUFFIX

EXPERIMENTS_DIR = "experiments"
CHECKPOINTS_DIR = "checkpoints"

__all__ = ["CHECKPOINTS_DIR", "EXPERIMENTS_DIR", "checkpoint_bytes", "checkpoint_dir", "checkpoint_name",
           "checkpoint_step", "checkpoints_in", "drop_checkpoints", "experiments_dir", "keep_newest",
           "latest_checkpoint", "record_path", "remove_stale_temporaries", "set_aside_crashes"]


def experiments_dir(study_dir: Path) -> Path:
    return study_dir / EXPERIMENTS_DIR


def record_path(study_dir: Path, exp_id: str) -> Path:
    return study_dir / EXPERIMENTS_DIR / f"{exp_id}.json"


def checkpoint_dir(study_dir: Path, exp_id: str) -> Path:
    return study_dir / CHECKPOINTS_DIR / exp_id


def checkpoints_in(folder: Path) -> list[Path]:
    """The training checkpoints in ``folder``, oldest step first."""
    return sorted(folder.glob(CHECKPOINT_GLOB), key=checkpoint_step) if folder.is_dir() else []


def keep_newest(folder: Path) -> None:
    for old in checkpoints_in(folder)[:-1]:
        old.unlink(missing_ok=True)


def drop_checkpoints(study_dir: Path, exp_id: str | None = None) -> None:
    """One experiment's checkpoints (``exp_id``), or the empty checkpoints/ folder itself (None)."""
    parent = study_dir / CHECKPOINTS_DIR
    if exp_id is not None:
        shutil.rmtree(parent / exp_id, ignore_errors=True)
    elif parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def checkpoint_bytes(study_dir: Path) -> int:
    d = study_dir / CHECKPOINTS_DIR
    return sum(p.stat().st_size for p in d.rglob("*.pt")) if d.is_dir() else 0


def latest_checkpoint(folder: Path | None, log: Callable[[str], None]) -> Path | None:
    """The newest readable training checkpoint in ``folder`` (unreadable ones are skipped, said once)."""
    from ...checkpoint import (
        read_checkpoint,  # torch.load: only when a folder has checkpoints
    )

    if folder is None:
        return None
    for path in reversed(checkpoints_in(folder)):
        try:
            if "optimizers" in read_checkpoint(path):
                return path
        except UserError as e:
            log(f"skipping {path.name}: {e}")
    return None


def set_aside_crashes(study_dir: Path, log: Callable[[str], None]) -> list[str]:
    """On --resume: records of crashed runs (``error``: no evidence about their settings) move to
    ``experiments/crashed/`` (kept, never deleted), so those experiments run again."""
    exp_dir = experiments_dir(study_dir)
    moved = []
    for f in sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []:
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if isinstance(rec, dict) and rec.get("status") == "error":
            (exp_dir / "crashed").mkdir(exist_ok=True)
            os.replace(f, exp_dir / "crashed" / f"{f.stem}.{int(time.time())}.json")
            moved.append(f.stem)
    if moved:
        log(f"{len(moved)} crashed experiment(s) run again (their records kept in experiments/crashed/): "
            f"{', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}")
    return moved


def remove_stale_temporaries(study_dir: Path) -> int:
    """Temporary files of atomic writes whose writer died (only called while holding the lock)."""
    n = 0
    for p in study_dir.rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


def claim_numbered(study_dir: Path) -> Path:
    """Create a new study's folder named by the tool (``<name>_<time>``) atomically: ``mkdir`` fails when the name
    is taken, and then the next number is tried (``_2``, ``_3``...). Two studies started in the same second
    therefore get two folders instead of one refusing the other as "in use"."""
    study_dir.parent.mkdir(parents=True, exist_ok=True)
    path, n = study_dir, 2
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, n = study_dir.with_name(f"{study_dir.name}_{n}"), n + 1
