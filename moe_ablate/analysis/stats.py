"""Statistics over a study's experiment records (pandas, scipy): configurations, effects, importance.

Everything here reads records and returns plain dicts/DataFrames; nothing writes files. Ranking
and significance are in ``ranking.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from . import ranking
from .routing import analyze_routing

METRICS = ["val_loss", "val_loss_own_length", "best_val_loss", "val_accuracy", "val_perplexity", "final_train_loss",
           "final_train_accuracy", "train_time_s", "tokens_per_s", "epochs", "params_active", "params_total",
           "flops_per_token", "flops", "tokens", "routing_maxvio", "routing_maxvio_peak", "routing_dead_experts",
           "routing_entropy", "routing_bias_norm"]


def load_records(study_dir: str | Path) -> tuple[list[dict], list[str]]:
    """(records, unreadable file names). Missing/empty folders are UserErrors."""
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
    return records, bad


def to_frame(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: ids, configuration, seed, status, hyperparameters, metrics. Returns (df, axes):
    the hyperparameters that take more than one value (seed is a repeat, never an axis)."""
    rows, axes = [], []
    for r in records:
        hp = dict(r.get("hyperparameters", {}))
        seed = hp.pop("seed", r.get("seed"))
        axes += [k for k in hp if k not in axes]
        rows.append({"experiment_id": r["experiment_id"], "config_id": r.get("config_id") or r["experiment_id"],
                     "stage": r.get("stage", "grid"), "seed": seed, "status": r["status"], "error": r.get("error"),
                     "pruned_at_step": r.get("pruned_at_step"),
                     **hp, **{m: r.get(m) for m in METRICS}})
    df = pd.DataFrame(rows)
    df["seed"] = df["seed"].fillna(-1)  # records made without a seed count as one (unknown) seed
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    axes = [a for a in axes if df[a].astype(str).nunique() > 1]
    return df, axes


def is_numeric_axis(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def is_lr_axis(name: str) -> bool:
    return name in ("lr", "muon_lr") or name.endswith("_lr")


def log_scale(name: str) -> bool:
    return "lr" in name


def _sort_key(v: Any):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def sorted_values(s: pd.Series) -> list:
    """An axis's values in a stable order whatever their types (numbers first, then the rest as text)."""
    return sorted(s.dropna().unique().tolist(), key=_sort_key)


def effects(ok: pd.DataFrame, axes: list[str], metric: str) -> tuple[dict, dict]:
    """Per axis: mean metric per value (pooled over the other axes and seeds) with a 95% CI, and the
    share of the metric's variance that the axis alone explains (eta squared)."""
    out, importance = {}, {}
    total_ss = float(((ok[metric] - ok[metric].mean()) ** 2).sum())
    for a in axes:
        per = ok.groupby(ok[a].astype(str))[metric].agg(["mean", "std", "count"])
        first = {str(v): v for v in ok[a].dropna().unique()}
        out[a] = [{"value": first.get(k, k), "mean": r["mean"], "std": r["std"], "n": int(r["count"]),
                   "ci95": ranking.ci_halfwidth(r["std"], int(r["count"]))}
                  for k, r in per.iterrows()]
        out[a].sort(key=lambda row: _sort_key(row["value"]))
        between = float((per["count"] * (per["mean"] - ok[metric].mean()) ** 2).sum())
        importance[a] = between / total_ss if total_ss > 0 else 0.0
    return out, dict(sorted(importance.items(), key=lambda kv: -kv[1]))


def anova_importance(ok: pd.DataFrame, axes: list[str], metric: str) -> dict[str, Any]:
    """Which hyperparameter matters most, interactions included: a two-way ANOVA (statsmodels ``anova_lm``,
    type II) of ``metric ~ axes + their pairwise interactions (+ seed)``; each term's share of the total sum
    of squares, named in statsmodels' ``a:b`` notation. Interactions enter only while the model keeps residual
    degrees of freedom (one run per cell cannot tell an interaction from noise; then it is said). One-way
    shares (eta squared) hid a learning-rate x weight-decay interaction that carried 0.76 of the variance."""
    import itertools
    import warnings

    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    used = [a for a in axes if ok[a].astype(str).nunique() > 1]
    if not used or len(ok) < 3:
        return {"importance": {}, "method": "none", "interactions": []}
    names = {a: f"x{i}" for i, a in enumerate(used)}
    d = pd.DataFrame({names[a]: ok[a].astype(str).to_numpy() for a in used})
    d["y"] = ok[metric].to_numpy(float)
    d["seed"] = ok["seed"].astype(str).to_numpy()
    blocks = " + C(seed)" if d.seed.nunique() > 1 else ""
    main = " + ".join(f"C({names[a]})" for a in used)
    pairs = [f"C({names[a]}):C({names[b]})" for a, b in itertools.combinations(used, 2)]
    note, table = None, None
    for terms in ([main, *pairs], [main]) if pairs else ([main],):
        formula = "y ~ " + " + ".join(terms) + blocks
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ols(formula, d).fit()
                if fit.df_resid < 1:
                    raise ValueError("no residual degrees of freedom")
                table = anova_lm(fit, typ=2)
            break
        except (ValueError, np.linalg.LinAlgError) as e:
            note = (f"interactions not estimable ({e}): one run per cell cannot tell them from noise; add seeds"
                    if len(terms) > 1 else f"ANOVA failed: {e}")
            table = None
    if table is None:
        return {"importance": {}, "method": "none", "interactions": [], "note": note}
    total = float(table["sum_sq"].sum())
    back = {v: k for k, v in names.items()}

    def label(term: str) -> str | None:
        parts = [p.strip()[2:-1] for p in term.split(":")]  # "C(x0)" -> "x0"
        return ":".join(back[p] for p in parts) if all(p in back for p in parts) else None

    shares = {label(t): float(r["sum_sq"]) / total for t, r in table.iterrows() if label(t) and total > 0}
    shares = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
    pvals = {label(t): float(r["PR(>F)"]) for t, r in table.iterrows() if label(t) and "PR(>F)" in r}
    inter = []
    n_pairs = max(1, sum(":" in k for k in shares))
    for term, share in shares.items():
        if ":" in term:
            a, b = term.split(":")
            # said only when real (F test, Bonferroni over the pairs), material (>= 5% of the variance) and larger
            # than one of its main effects
            p = pvals.get(term, 1.0)
            if share > min(shares.get(a, 0.0), shares.get(b, 0.0)) and share >= 0.05 and p < ranking.ALPHA / n_pairs:
                inter.append({"term": term, "share": share, "axes": [a, b], "p": p,
                              "main": {a: shares.get(a, 0.0), b: shares.get(b, 0.0)}})
    return {"importance": shares, "method": "two-way ANOVA, type II (statsmodels anova_lm): " + formula.replace(
        "y", metric, 1) + " with " + ", ".join(f"{v}={k}" for k, v in names.items()), "interactions": inter,
            **({"note": note} if note else {})}


def conditional_effects(table: pd.DataFrame, axes: list[str], best: dict | None) -> dict[str, list[dict]]:
    """Each axis's values with the other axes held at the recommended configuration's values: the effect a
    researcher acts on (pooled means mix the other axes' effects in)."""
    out = {}
    if not best:
        return out
    done = table[table.n > 0]
    for a in axes:
        sl = done
        for x in axes:
            if x != a and x in best:
                sl = sl[sl[x].astype(str) == str(best[x])]
        if sl[a].nunique() > 1:
            out[a] = [{"value": ranking.plain(r[a]), "mean": float(r["mean"]), "n": int(r["n"]),
                       "config_id": r["config_id"]}
                      for _, r in sl.sort_values(a, key=lambda s: s.map(_sort_key)).iterrows()]
    return out


def correlations(ok: pd.DataFrame, axes: list[str]) -> dict:
    """Spearman correlations between the numeric axes (LRs on a log scale) and the metrics."""
    numeric = [a for a in axes if is_numeric_axis(ok[a])]
    cols = numeric + [m for m in ("val_loss", "val_accuracy", "final_train_loss",
                                  "train_time_s") if ok[m].notna().any()]
    if len(ok) < 3 or not cols:
        return {}
    cdf = ok[cols].astype(float).copy()
    for a in numeric:
        if log_scale(a) and (cdf[a] > 0).all():
            cdf[a] = np.log10(cdf[a])
    corr = cdf.loc[:, cdf.nunique() > 1].corr(method="spearman")
    return {c: corr[c].to_dict() for c in corr.columns}


SENSITIVITY_BOOT = 1000


def _cross_fitted(runs: pd.DataFrame, cfg_codes: np.ndarray, settings: list[np.ndarray], cap: float) -> np.ndarray:
    """Per setting: for each seed that every one of its LRs ran, the mean over LRs minus the value at the LR that
    the *other* seeds chose, averaged over those seeds. The plug-in subtracts the minimum of the same noisy means
    it averages, so a flat curve reads above zero; a choice made on other seeds is independent of the held-out
    seed's noise. NaN where fewer than 2 seeds are shared."""
    v = pd.DataFrame({"c": cfg_codes, "seed": runs["seed"].to_numpy(),
                      "v": np.where(runs.status == "ok", np.minimum(runs["capped"], cap), cap)})
    M = v.pivot_table(index="c", columns="seed", values="v", aggfunc="mean")
    out = np.full(len(settings), np.nan)
    for j, c in enumerate(settings):
        sub = M.reindex(c).dropna(axis=1)  # the seeds every LR of the setting ran
        if sub.shape[1] < 2:
            continue
        X = sub.to_numpy(float)
        vals = []
        for s in range(X.shape[1]):
            rest = np.delete(X, s, axis=1).mean(axis=1)
            vals.append(X[:, s].mean() - X[int(np.argmin(rest)), s])
        out[j] = float(np.mean(vals))
    return out


def _lr_curves(runs: pd.DataFrame, others: list[str], lr_axis: str) -> tuple[np.ndarray, pd.DataFrame,
                                                                             list[np.ndarray]]:
    """(each run's configuration code, each configuration's first run, the configurations of each setting of
    the other axes that has 2+ LRs). Settings are keyed by their values' text, whatever their types."""
    setting = pd.Series(["\x1f".join(map(str, row)) for row in runs[others].itertuples(index=False)]
                        if others else [""] * len(runs), index=runs.index)
    cfg_codes, cfg_names = pd.factorize(setting + "\x1e" + runs[lr_axis].map(str))
    set_of_cfg = pd.factorize(pd.Series(cfg_names).str.split("\x1e").str[0])[0]
    settings = [np.flatnonzero(set_of_cfg == k) for k in range(set_of_cfg.max() + 1)]
    # a setting with one LR left (pruning) has no curve
    return cfg_codes, runs.groupby(cfg_codes).first(), [c for c in settings if len(c) >= 2]


def _nanavg(cols: list[int], of: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmean(of[..., cols], axis=-1)


def _basic_ci(value: float, reps: np.ndarray) -> list[float] | None:
    """The basic bootstrap interval [2v - q97.5, 2v - q2.5]: it corrects the bias the replicates show."""
    reps = reps[np.isfinite(reps)]
    if len(reps) < 20:
        return None
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return [2 * value - float(hi), 2 * value - float(lo)]


def _order(axis: str, rows: list[dict], of_value: dict, boot: np.ndarray | None) -> dict[str, Any]:
    """Whether the least and the most sensitive values of ``axis`` differ: only when the interval of their
    difference excludes 0 is one called more forgiving."""
    lo_r, hi_r = min(rows, key=lambda r: r["sensitivity"]), max(rows, key=lambda r: r["sensitivity"])
    lo_v, hi_v = lo_r["value"], hi_r["value"]
    diff = hi_r["sensitivity"] - lo_r["sensitivity"]
    ci = _basic_ci(diff, _nanavg(of_value[hi_v], boot) - _nanavg(of_value[lo_v], boot)) if boot is not None else None
    told = ci is not None and ci[0] > 0
    if told:
        text = (f"{axis} = {lo_v} is more forgiving of the LR than {axis} = {hi_v} (difference {diff:.3g}, 95% CI "
                f"[{ci[0]:.3g}, {ci[1]:.3g}])")
    else:
        text = (f"cannot tell which {axis} is more forgiving of the LR (the difference between {lo_v} and {hi_v}, "
                f"{diff:.3g}, " + (f"has a 95% CI [{ci[0]:.3g}, {ci[1]:.3g}])" if ci else
                                   "has no interval: it needs 2+ seeds)"))
    return {"more_forgiving": lo_v if told else None, "less_forgiving": hi_v if told else None,
            "difference": diff, "ci95": ci, "text": text}


def lr_sensitivity(df: pd.DataFrame, table: pd.DataFrame, axes: list[str], lr_axis: str, cap: float, metric: str,
                   n_boot: int = SENSITIVITY_BOOT, seed: int = 0) -> dict[str, Any] | None:
    """Wortsman et al. (2023): the loss above the best, averaged over the LRs tried, for each setting of
    the other axes. A failed seed counts at ``cap`` (the loss of a uniform prediction) within its
    configuration's mean, so a partly diverged LR is penalised in proportion; configurations pruned by
    successive halving have no final loss and are left out (a crash is missing). Reported per value of each
    other axis (mean over the settings with that value), and overall.

    The plug-in value subtracts the *minimum* of noisy means, so it reads above zero on a flat curve (0.012 in
    the issue's simulation). Its 95% interval is the basic interval of a parametric bootstrap of the
    configuration means (seed-blocked run noise, its chi-square redrawn; floored at 0); a seed bootstrap
    under-states the noise with 2-5 seeds (it ordered two identical curves in 9 of 25 simulated studies).
    ``corrected`` is cross-fitted (``_cross_fitted``): zero in expectation on a flat curve. One value of an
    axis is called more forgiving than another only when the interval of their difference excludes 0."""
    runs = df[df.status.isin(("ok",) + ranking.FAILED)]
    runs = runs.assign(capped=np.where(runs.status == "ok", runs[metric], cap))
    runs = runs[np.isfinite(runs["capped"].to_numpy(float))]
    if runs[lr_axis].nunique() < 2:
        return None
    others = [a for a in axes if a != lr_axis]
    cfg_codes, first, settings = _lr_curves(runs, others, lr_axis)
    if not settings:
        return None
    onehot = np.zeros((len(runs), len(first)))
    onehot[np.arange(len(runs)), cfg_codes] = 1.0
    is_ok = (runs.status == "ok").to_numpy(float)
    n_ok, n_all = is_ok @ onehot, onehot.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok_mean = (is_ok * runs["capped"].to_numpy(float)) @ onehot / n_ok

    def sensitivities(means_ok: np.ndarray) -> np.ndarray:
        """Replicates x settings: the mean over a setting's LRs of its means above their minimum. A configuration's
        finished runs are averaged and that mean capped, then mixed with its failed runs at the cap."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (np.where(n_ok > 0, np.minimum(means_ok, cap) * n_ok, 0.0) + cap * (n_all - n_ok)) / n_all
        out = np.full((len(means), len(settings)), np.nan)
        for j, c in enumerate(settings):
            out[:, j] = np.nanmean(means[:, c] - np.nanmin(means[:, c], axis=1, keepdims=True), axis=1)
        return out

    point = sensitivities(ok_mean[None, :])[0]
    ok_runs = runs[runs.status == "ok"]
    fit = ranking.Fit(ok_runs, metric) if len(ok_runs) else None
    boot = None
    if fit is not None and fit.sigma is not None:
        boot = sensitivities(_noisy_means(ok_mean, n_ok, fit, n_boot, seed))
    corrected = _cross_fitted(runs, cfg_codes, settings, cap) if "seed" in runs else None

    def summary(cols: list[int]) -> dict[str, Any]:
        value = float(_nanavg(cols, point))
        ci = _basic_ci(value, _nanavg(cols, boot)) if boot is not None else None
        # the cross-fitted value of a group only when every setting in it has one (a mean over some of them
        # would be another quantity)
        fixed = float(np.mean(corrected[cols])) if corrected is not None and np.isfinite(corrected[cols]).all() \
            else None
        return {"sensitivity": value, "corrected": fixed, "ci95": [max(0.0, t) for t in ci] if ci else None}

    every = list(range(len(settings)))
    overall = summary(every)
    out: dict[str, Any] = {
        "axis": lr_axis, "overall": overall["sensitivity"], "overall_corrected": overall["corrected"],
        "overall_ci95": overall["ci95"], "cap": cap, "n_seeds": int(runs["seed"].nunique()) if "seed" in runs else 0,
        "settings": [{**{a: ranking.plain(first.loc[c[0], a]) for a in others}, "sensitivity": float(point[j]),
                      "lrs": len(c)} for j, c in enumerate(settings)],
        "left_out_pruned": int((table.n_pruned > 0).sum()), "per_axis": {}, "order": {}}
    for a in others:
        out["per_axis"][a], order = _per_value(a, settings, first, summary, boot)
        if order is not None:
            out["order"][a] = order
    out["method"] = ((f"95% interval: basic parametric bootstrap of the configuration means ({n_boot} replicates, "
                      f"seed-blocked run noise on {fit.dof} degrees of freedom)" if boot is not None else
                      "no interval: the run noise is unknown (one seed)")
                     + "; corrected: the loss above the LR chosen on the other seeds, averaged over held-out seeds "
                       "(zero on a flat curve; below the truth when the best LR is uncertain)")
    return out


def _per_value(axis: str, settings: list, first: pd.DataFrame, summary, boot) -> tuple[list[dict], dict | None]:
    """One axis's rows (the sensitivity of the settings with each value) and, with two or more values, their order."""
    of_value: dict[Any, list[int]] = {}
    for j, c in enumerate(settings):
        of_value.setdefault(ranking.plain(first.loc[c[0], axis]), []).append(j)
    rows = [{"value": v, **summary(of_value[v])} for v in sorted(of_value, key=_sort_key)]
    return rows, (_order(axis, rows, of_value, boot) if len(rows) >= 2 else None)


def _noisy_means(ok_mean: np.ndarray, n_ok: np.ndarray, fit, n_boot: int, seed: int) -> np.ndarray:
    """Replicates x configurations of the means redrawn with the seed-blocked run noise (its chi-square redrawn)."""
    rng = np.random.default_rng(seed)
    s2 = fit.sigma ** 2 * rng.chisquare(fit.dof, n_boot) / fit.dof
    with np.errstate(invalid="ignore", divide="ignore"):
        return ok_mean + rng.normal(0, 1, (n_boot, len(ok_mean))) * np.sqrt(s2[:, None] / n_ok)


WIDTH_AXES = ("d_model",)


def optimum_per(df: pd.DataFrame, axes: list[str], metric: str, lr_axis: str, by: str) -> dict[str, Any]:
    """The best LR at each value of ``by`` (e.g. model width), with its near-optimal LRs, and whether
    the optimum moved: only when the near-optimal ranges (lowest to highest near-optimal LR) of two values do
    not overlap."""
    rows = []
    for v in sorted_values(df[by]):
        sub = df[df[by].astype(str) == str(v)]
        sub_axes = [a for a in axes if a != by and sub[a].astype(str).nunique() > 1]
        rec = ranking.recommend(sub, sub_axes, metric)
        if rec["best"] is None:
            rows.append({by: v, "best_lr": None})
            continue
        table = ranking.configuration_table(sub, sub_axes + [lr_axis] * (lr_axis not in sub_axes), metric)
        lrs = table.set_index("config_id")[lr_axis]
        rows.append({by: v, "best_lr": float(lrs[rec["best"]]), "mean": rec[metric], "ci95": rec["ci95"],
                     "n": rec["n"], "near_optimal_lrs": sorted({float(lrs[c]) for c in rec["near_optimal"]}),
                     "noise_known": rec["noise_std"] is not None,
                     "bracketed": ranking.bracketed(table, lr_axis, rec)})
    done = [r for r in rows if r["best_lr"] is not None]
    best = {r["best_lr"] for r in done}
    common = set.intersection(*(set(r["near_optimal_lrs"]) for r in done)) if done else set()
    per = ", ".join(f"{r[by]}: {r['best_lr']:g}" for r in done)
    if len(done) < 2:
        moved, text = None, f"too few {by} values finished to tell whether the optimal {lr_axis} moves"
    elif len(best) == 1:
        moved, text = False, f"the optimum did not move: {lr_axis} = {best.pop():g} is best at every {by}"
    elif not all(r["noise_known"] for r in done):
        moved, text = None, (f"the best {lr_axis} differs ({per}) but with one seed the noise is unknown: cannot tell "
                             "whether the optimum moved; add seeds")
    elif common:
        moved, text = False, (f"no shift detectable at this noise level: the best {lr_axis} differs ({per}), but "
                              f"{', '.join(f'{x:g}' for x in sorted(common))} {'is' if len(common) == 1 else 'are'} "
                              f"near-optimal at every {by}")
    elif max(min(r["near_optimal_lrs"]) for r in done) <= min(max(r["near_optimal_lrs"]) for r in done):
        # each value tried its own LRs (a scaling study's validation grid): no LR was tried at all of them, but
        # their near-optimal ranges share a span, so no shift is shown (intervals that pairwise overlap share one)
        lo = max(min(r["near_optimal_lrs"]) for r in done)
        hi = min(max(r["near_optimal_lrs"]) for r in done)
        moved, text = False, (f"no shift detectable at this noise level: the best {lr_axis} differs ({per}), but the "
                              f"near-optimal ranges of every {by} share {lo:g}-{hi:g}")
    else:
        moved, text = True, (f"the optimum moved with {by}: best {lr_axis} {per}; the near-optimal ranges do not "
                             "overlap")
    unbracketed = [r[by] for r in done if not r["bracketed"]]
    if unbracketed and moved is not None:
        text += (f" (not bracketed at {by} = {', '.join(map(str, unbracketed))}: the true optimum there may lie "
                 "outside the LRs tried)")
    return {"axis": by, "lr_axis": lr_axis, "rows": rows, "moved": moved, "text": text}


def analyze(records: list[dict], metric: str = "val_loss") -> dict[str, Any]:
    """Every number the report states: configurations, recommendation, noise, effects, failures."""
    df, axes = to_frame(records)
    ok = ranking.ok_runs(df, metric)
    failed = df[df.status.isin(ranking.FAILED + ranking.CRASHED)]  # pruned runs are a choice, interrupted ones rerun
    table = ranking.configuration_table(df, axes, metric)
    rec = ranking.recommend(df, axes, metric)
    rec["edge_warnings"] = ranking.edge_notes(table, axes, rec)
    out: dict[str, Any] = {
        "metric": metric, "lower_is_better": True, "n_experiments": int(len(df)), "n_ok": int(len(ok)),
        "n_failed": int(len(failed)), "n_crashed": int(df.status.isin(ranking.CRASHED).sum()),
        "n_pruned": int((df.status == "pruned").sum()), "n_configurations": int(len(table)), "axes": axes,
        "failures": failed[["experiment_id", "config_id", "status", "error"] + axes].to_dict("records"),
        "configurations": table.to_dict("records"), "recommendation": rec,
    }
    present = [m for m in METRICS if ok[m].notna().any()]
    out["summary"] = ok[present].agg(["mean", "std", "min", "max"]).to_dict() if len(ok) else {}
    out["effects"], out["importance_one_way"] = effects(ok, axes, metric) if len(ok) else ({}, {})
    anova = anova_importance(ok, axes, metric) if len(ok) else {"importance": {}, "interactions": []}
    out["importance"] = anova["importance"] or out["importance_one_way"]
    out["importance_method"] = anova.get("method") if anova["importance"] else "eta squared, one axis at a time"
    out["interactions"] = anova["interactions"]
    out["most_important"] = next((k for k in out["importance"] if ":" not in k), None)
    out["conditional_effects"] = conditional_effects(table, axes, rec.get("best_config"))
    for i in anova["interactions"][:2]:  # the best value of one axis depends on the other: part of the answer
        a_, b_ = i["axes"]
        rec["text"] += (f" Interaction: the best {a_} depends on {b_} ({i['term']} explains {i['share']:.0%} of the "
                        f"variance, more than {a_ if i['main'][a_] < i['main'][b_] else b_} alone, "
                        f"{min(i['main'].values()):.0%}); read {a_}'s effect at the recommended {b_} (conditional "
                        "effects).")
    out["correlations"] = correlations(ok, axes)
    lr_axes = [a for a in axes if is_lr_axis(a) and is_numeric_axis(df[a])]
    vocab = next((r.get("config", {}).get("model", {}).get("vocab_size") for r in records if r.get("config")), None)
    cap = math.log(vocab) if vocab else float(table["mean"].max())
    out["lr_sensitivity"] = lr_sensitivity(df, table, axes, lr_axes[0], cap, metric) if lr_axes else None
    width = next((w for w in WIDTH_AXES if w in axes), None)
    out["lr_transfer"] = optimum_per(df, axes, metric, lr_axes[0], width) if lr_axes and width else None
    # the token horizon (Bjorck et al. 2024: the optimal LR falls as the horizon grows)
    out["lr_by_horizon"] = optimum_per(df, axes, metric, lr_axes[0], "steps") if lr_axes and "steps" in axes else None
    out["routing"] = analyze_routing(records, table, axes, metric)
    return out
