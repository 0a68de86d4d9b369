"""A study's records in other tools' formats: CSV and Parquet (``table.results_frame``), and an Optuna storage
(SQLite) whose trials are the experiments, so ``optuna-dashboard sqlite:///study.db`` serves the study the way
Optuna users expect (history, parameter importances, intermediate values for the learning curves).

Each trial carries the varied hyperparameters as its params (categorical: the grid's values, which is what a grid
is), the study's metric as its value, the validation curve as intermediate values, and the ids, stage and seed as
user attributes. Failed runs are FAIL trials; pruned ones (successive halving) PRUNED, with their rung's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError

FORMATS = ("csv", "parquet", "optuna")


def export(records: list[dict], metric: str, study_name: str, fmt: str, out: Path) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.exists() and not out.is_file():
        raise UserError(f"--output {out} exists and is not a regular file")
    if fmt == "optuna":
        return _optuna(records, metric, study_name, out)
    from ..utils import atomic_write, atomic_write_text
    from .table import results_frame

    df = results_frame(records)
    if fmt == "csv":
        atomic_write_text(out, df.to_csv(index=False))
    else:
        atomic_write(out, lambda f: df.to_parquet(f, index=False))
    return out


def _varied(records: list[dict]) -> dict[str, list]:
    """``section.key -> sorted values`` of every config setting (seed aside) that differs between the records."""
    values: dict[str, set] = {}
    for r in records:
        for section, d in (r.get("config") or {}).items():
            for k, v in (d or {}).items():
                if isinstance(v, (bool, int, float, str)) and f"{section}.{k}" != "train.seed":
                    values.setdefault(f"{section}.{k}", set()).add(v)
    return {k: sorted(v, key=lambda x: (str(type(x)), x)) for k, v in values.items() if len(v) > 1}


def _optuna(records: list[dict], metric: str, study_name: str, out: Path) -> Path:
    try:
        import optuna
    except ImportError:
        raise UserError("--format optuna needs Optuna (pip install 'moe-ablate[optuna]')") from None
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    if out.exists():
        raise UserError(f"--output {out} already exists; an Optuna storage is not overwritten (choose another file)")
    varied = _varied(records)
    dists = {k: CategoricalDistribution(v) for k, v in varied.items()}
    tmp = out.with_name(f".{out.name}.partial")
    tmp.unlink(missing_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp}", study_name=study_name, direction="minimize")
    study.set_user_attr("metric", metric)
    study.set_user_attr("source", "moe-ablate")
    for r in records:
        state = {"ok": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(r.get("status"), TrialState.FAIL)
        value = r.get(metric)
        if state == TrialState.COMPLETE and not _finite(value):
            state = TrialState.FAIL
        params = {k: _get(r, k) for k in varied}
        study.add_trial(create_trial(
            state=state, value=value if state == TrialState.COMPLETE else None,
            params={k: v for k, v in params.items() if v is not None},
            distributions={k: d for k, d in dists.items() if params[k] is not None},
            intermediate_values=_curve(r),
            user_attrs={"experiment_id": r.get("experiment_id"), "config_id": r.get("config_id"),
                        "stage": r.get("stage", "grid"), "status": r.get("status"), "seed": r.get("seed"),
                        **({"error": str(r.get("error")).splitlines()[0][:300]} if r.get("error") else {})}))
    tmp.replace(out)  # the finished storage appears at once (SQLite's file is complete once the engine is closed)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == v and abs(v) != float("inf")


def _get(r: dict, key: str) -> Any:
    section, _, k = key.partition(".")
    return ((r.get("config") or {}).get(section) or {}).get(k)


def _curve(r: dict) -> dict[int, float]:
    evals = ((r.get("history") or {}).get("eval")) or []
    return {int(e["step"]): float(e["loss"]) for e in evals if _finite(e.get("loss")) and "step" in e}
