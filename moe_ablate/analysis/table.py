"""``results.csv`` and ``results.parquet``: one row per experiment record, for a notebook, a spreadsheet or any
dataframe tool. Columns: the ids (experiment, configuration, stage, status, seed), every hyperparameter of the
run's config flattened (``train.muon_lr``, ``model.num_experts``, ...), then every scalar result (the metrics,
compute, routing, timing). Lists and nested results (history, checkpoints, per-layer routing) stay in
``experiments/*.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ID_COLUMNS = ("experiment_id", "config_id", "stage", "status", "seed")
SKIP = {"hyperparameters", "config", "history", "checkpoints", "routing", "data", "params", "error", "git_commit",
        "origin"}


def results_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ID_COLUMNS}
        row["stage"] = row["stage"] or "grid"
        for section, values in (r.get("config") or {}).items():
            if isinstance(values, dict):
                row.update({f"{section}.{k}": v for k, v in values.items()
                            if v is None or isinstance(v, (bool, int, float, str))})
        row.update({k: v for k, v in r.items() if k not in SKIP and k not in row
                    and (v is None or isinstance(v, (bool, int, float, str)))})
        row["error"] = (r.get("error") or "").splitlines()[0][:300] if r.get("error") else None
        row["data.tokens"] = (r.get("data") or {}).get("num_tokens")
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(study_dir: Path, records: list[dict]) -> list[Path]:
    """results.csv and results.parquet (pandas writes it with pyarrow); both atomic."""
    from ..utils import atomic_write, atomic_write_text

    df = results_frame(records)
    atomic_write_text(study_dir / "results.csv", df.to_csv(index=False))
    atomic_write(study_dir / "results.parquet", lambda f: df.to_parquet(f, index=False))
    return [study_dir / "results.csv", study_dir / "results.parquet"]
