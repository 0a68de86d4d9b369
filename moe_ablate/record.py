"""Reading an experiment record (``experiments/<id>.json``, made by ``studies.runner.make_record``): the
accessors every reader shares, so a record's keys are interpreted in one place."""

from __future__ import annotations

from typing import Any


def config_id(r: dict[str, Any]) -> str:
    """The configuration a run belongs to (its seeds share it); records written before seeds had none."""
    return r.get("config_id", r["experiment_id"])
