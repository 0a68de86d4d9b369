"""Statistics over a study's experiment records (pandas): summaries, effects, importance, advice.

Everything here reads records and returns plain dicts/DataFrames; nothing writes files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..utils import edge_of

METRICS = ["val_loss", "val_accuracy", "val_perplexity", "final_train_loss", "final_train_accuracy",
           "train_time_s", "tokens_per_s"]
# two-sided 95% Student-t critical values by degrees of freedom (1..30); 1.96 beyond
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def load_records(study_dir: str | Path) -> tuple[list[dict], list[str], dict]:
    """(records, unreadable file names, config.json or {}). Missing/empty folders are UserErrors."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise UserError(f"results folder not found: {study_dir}")
    exp_dir = study_dir / "experiments"
    files = sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []
    if not files:
        raise UserError(f"no experiment results in {study_dir} (expected {exp_dir}/*.json)")
    records, bad = [], []
    for f in files:
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(rec, dict) or "experiment_id" not in rec or "status" not in rec:
                raise ValueError("not an experiment record")
            records.append(rec)
        except (ValueError, UnicodeDecodeError):
            bad.append(f.name)
    if not records:
        raise UserError(f"no readable experiment results in {study_dir}: corrupt file(s) {', '.join(bad)}")
    cfg = {}
    if (study_dir / "config.json").exists():
        try:
            cfg = json.loads((study_dir / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"corrupt JSON in {study_dir / 'config.json'}") from None
    return records, bad, cfg


def to_frame(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per experiment: id, status, hyperparameters (axes), metrics. Returns (df, axes)."""
    rows, axes = [], []
    for r in records:
        hp = {k: v for k, v in r.get("hyperparameters", {}).items()}
        for k in hp:
            if k not in axes:
                axes.append(k)
        row = {"experiment_id": r["experiment_id"], "status": r["status"], "error": r.get("error")}
        row.update(hp)
        row.update({m: r.get(m) for m in METRICS})
        rows.append(row)
    df = pd.DataFrame(rows)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    # an axis needs at least two values to say anything; seed is a repeat, not a hyperparameter
    axes = [a for a in axes if a != "seed" and df[a].nunique(dropna=True) > 1]
    return df, axes


def _ci95(std: float, n: int) -> float:
    if n < 2 or not math.isfinite(std):
        return float("nan")
    t = _T95[n - 2] if n - 2 < len(_T95) else 1.96
    return t * std / math.sqrt(n)


def _is_lr(axis: str) -> bool:
    return "lr" in axis


def analyze(records: list[dict], metric: str = "val_loss") -> dict[str, Any]:
    df, axes = to_frame(records)
    ok = df[(df.status == "ok") & df[metric].notna()].copy()
    failed = df[df.status != "ok"]
    out: dict[str, Any] = {
        "metric": metric, "lower_is_better": True, "n_experiments": int(len(df)), "n_ok": int(len(ok)),
        "n_failed": int(len(failed)),
        "failures": failed[["experiment_id", "status", "error"] + axes].to_dict("records"),
        "axes": axes,
    }
    present = [m for m in METRICS if ok[m].notna().any()]
    out["summary"] = ok[present].agg(["mean", "std", "min", "max"]).to_dict()
    ranked = ok.sort_values(metric)
    cols = ["experiment_id"] + axes + [m for m in ("val_loss", "val_accuracy", "val_perplexity") if m in ok]
    out["top"] = ranked[cols].head(5).to_dict("records")
    out["bottom"] = ranked[cols].tail(5).iloc[::-1].to_dict("records")

    effects, importance = {}, {}
    total_ss = float(((ok[metric] - ok[metric].mean()) ** 2).sum())
    for a in axes:
        per_value = ok.groupby(a)[metric].agg(["mean", "std", "count"])
        effects[a] = [{"value": v, "mean": r["mean"], "std": r["std"], "n": int(r["count"]),
                       "ci95": _ci95(r["std"], int(r["count"]))} for v, r in per_value.iterrows()]
        # share of the metric's variance explained by this axis (eta squared, one-way)
        between = float((per_value["count"] * (per_value["mean"] - ok[metric].mean()) ** 2).sum())
        importance[a] = between / total_ss if total_ss > 0 else 0.0
    out["effects"] = effects
    out["importance"] = dict(sorted(importance.items(), key=lambda kv: -kv[1]))
    out["most_important"] = next(iter(out["importance"]), None)

    corr_cols = axes + [m for m in ("val_loss", "val_accuracy", "final_train_loss", "train_time_s") if m in ok]
    if len(ok) >= 3 and corr_cols:
        cdf = ok[corr_cols].astype(float).copy()
        for a in axes:
            if _is_lr(a):
                cdf[a] = np.log10(cdf[a])
        corr = cdf.loc[:, cdf.nunique() > 1].corr(method="spearman")
        out["correlations"] = {c: corr[c].to_dict() for c in corr.columns}
    else:
        out["correlations"] = {}
    out["recommendation"] = recommend(ok, axes, metric, df)
    return out


def recommend(ok: pd.DataFrame, axes: list[str], metric: str, df: pd.DataFrame) -> dict[str, Any]:
    if ok.empty:
        return {"best": None, "text": "No experiment finished successfully; nothing to recommend."}
    ranked = ok.sort_values(metric)
    best = ranked.iloc[0]
    rec: dict[str, Any] = {"best_experiment": best["experiment_id"],
                           "best_config": {a: best[a] for a in axes}, metric: float(best[metric])}
    if len(ranked) > 1:
        second = ranked.iloc[1]
        rec["runner_up"] = second["experiment_id"]
        rec["margin"] = float(second[metric] - best[metric])
        rec["margin_pct"] = 100 * rec["margin"] / abs(float(second[metric])) if second[metric] else None
    warnings = []
    for a in axes:
        if edge := edge_of(best[a], df[a].dropna().unique()):
            warnings.append(f"best {a} = {best[a]} is the {edge} value tried: the optimum is not bracketed; "
                            f"extend the range beyond {best[a]}")
    rec["edge_warnings"] = warnings
    cfg = ", ".join(f"{a}={best[a]}" for a in axes)
    text = f"Best: {best['experiment_id']} ({cfg}) with {metric} {best[metric]:.4f}"
    if "margin" in rec:
        text += f", {rec['margin']:.4f} better than the runner-up {rec['runner_up']}"
    rec["text"] = text + "."
    return rec
