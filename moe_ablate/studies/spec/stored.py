"""A study as it is stored in ``<study>/config.json``: its kind, base config, experiments and metric.

Every study kind (grid, LR search, expert search, batch-vs-seqlen, long run) is one ``Study``; the
kind only decides how the experiments were expanded and what extra files and figures it writes
(``kind.py``). The *identity* (kind, name, params, metric, base, confirmation) is what must match
when a study is resumed with flags; the experiment list is stored beside it because it may grow
(an LR search's ``--extend``, a confirmation stage) and a resume continues the grown list.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import ExperimentConfig
from ...errors import UserError
from ...utils import atomic_write_json, git_commit, read_json, software_versions
from .file import ExperimentSpec

STUDY_FILE = "config.json"


@dataclass
class Study:
    kind: str  # a name in kinds.KINDS
    name: str  # folder prefix, e.g. learning_rate_ablation
    base: ExperimentConfig
    experiments: list[ExperimentSpec]
    params: dict[str, Any] = field(default_factory=dict)  # the kind's definition (axes, LRs, strategies...)
    metric: str = "val_loss"  # lower is better
    description: str = ""
    confirm: int | None = None  # extra seeds for the top configurations; None = 2 when >= 4 configurations
    confirm_max: int = 3  # at most this many configurations are confirmed
    halving: int = 0  # successive halving: keep the best 1/halving per rung (0 = off)
    min_steps: int = 0  # steps of the first rung (0 = steps / halving^2)
    halving_restart: bool = False  # rerun survivors from step 0 instead of continuing from checkpoints
    flags: dict[str, Any] | None = None  # the study-defining flags it was started with (None: not from the CLI)

    def identity(self) -> dict[str, Any]:
        """What a resume with flags must reproduce (JSON-normalised, so it compares with a stored one)."""
        return json.loads(json.dumps({
            "kind": self.kind, "name": self.name, "params": self.params, "metric": self.metric,
            "base": self.base.to_dict(), "confirm": self.confirm, "confirm_max": self.confirm_max,
            "halving": self.halving, "min_steps": self.min_steps, "halving_restart": self.halving_restart}))

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "description": self.description, "flags": self.flags,
                "experiments": [e.to_dict() for e in self.experiments]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Study:
        return cls(kind=d["kind"], name=d["name"], base=ExperimentConfig.from_dict(d["base"]),
                   experiments=[ExperimentSpec.from_dict(e) for e in d["experiments"]], params=d.get("params", {}),
                   metric=d.get("metric", "val_loss"), description=d.get("description", ""),
                   confirm=d.get("confirm"), confirm_max=d.get("confirm_max", 3), halving=d.get("halving", 0),
                   min_steps=d.get("min_steps", 0), halving_restart=d.get("halving_restart", False),
                   flags=d.get("flags"))

    def configurations(self) -> dict[str, list[ExperimentSpec]]:
        """Experiments grouped by configuration (seeds are repeats), in first-seen order."""
        out: dict[str, list[ExperimentSpec]] = {}
        for e in self.experiments:
            out.setdefault(e.config_id, []).append(e)
        return out

    def resolved_confirm(self) -> int:
        if self.confirm is not None:
            return self.confirm
        return 2 if len(self.configurations()) >= 4 else 0


def save_study(study_dir: Path, study: Study, data: dict[str, dict] | None = None) -> None:
    """Write config.json (atomically); keeps the stored data provenance and creation time."""
    path = study_dir / STUDY_FILE
    old = read_json(path) if path.exists() else {}
    atomic_write_json(path, {
        "study": study.to_dict(), "data": {**(data or {}), **old.get("data", {})},  # as first recorded
        "software": old.get("software") or software_versions(), "git_commit": old.get("git_commit") or git_commit(),
        "created": old.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S")})


def _check_stored(study: Study, path: Path) -> None:
    """Beyond the schema (``schema.StoredStudy``: every field's type and bound), what the TOML's checks also
    held: a metric the analysis can minimise, each experiment listed once under a name that is a plain file name."""
    from .schema import check_metric

    check_metric(study.metric, str(path))
    ids = [e.id for e in study.experiments]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"{path} lists experiment(s) {', '.join(twice[:3])} more than once; it was edited by hand")
    bad = [i for i in ids if not i or i != Path(i).name or i.startswith(".")]
    if bad:
        raise UserError(f"{path}: experiment id {bad[0]!r} is not a plain file name")


def load_study(study_dir: Path) -> tuple[Study, dict[str, Any]]:
    """The stored study and the whole config.json; a missing or foreign file is a UserError."""
    path = Path(study_dir) / STUDY_FILE
    if not path.exists():
        raise UserError(f"{study_dir} is not a study folder: no {STUDY_FILE} there")
    stored = read_json(path)
    try:
        from .schema import check_stored_study

        check_stored_study(stored["study"], str(path))
        study = Study.from_dict(stored["study"])
        _check_stored(study, path)
        return study, stored
    except KeyError as e:
        raise UserError(f"{path} is not a moe-ablate study file (missing {e})") from None
    except (TypeError, AttributeError, ValueError) as e:
        raise UserError(f"{path} is not a moe-ablate study file ({type(e).__name__}: {e})") from None
