"""Rank configurations, not runs, and say whether the winner is really better.

A configuration is one combination of hyperparameters; its seeds are repeats. Configurations are
ranked by their mean metric over the seeds that finished. The best is compared with every other
configuration:

- on the seeds both ran (runs with the same seed see the same batches and initial weights, so the
  comparison is paired): ``scipy.stats.ttest_rel``, its confidence interval and p-value;
- otherwise, when both have >= 2 runs: Welch's ``scipy.stats.ttest_ind``;
- otherwise, when any configuration of the study has >= 2 runs: the pooled run-to-run noise of
  the study (a t-test with the pooled variance, ``scipy.stats.t``);
- otherwise nothing can be said, and the recommendation says so.

The *near-optimal set* is the best configuration plus every configuration whose difference from
it is not significant at ``ALPHA``. Failed runs never count towards a mean; a configuration
with no successful run is listed as failed and never recommended.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05  # significance level of every "better" claim


def ok_runs(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Successful runs with a finite metric: the one definition of "ok" in every ranking."""
    vals = pd.to_numeric(df[metric], errors="coerce")
    return df[(df.status == "ok") & np.isfinite(vals.astype(float))]


def ci_halfwidth(std: float, n: int, level: float = 0.95) -> float:
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def configuration_table(df: pd.DataFrame, axes: list[str], metric: str) -> pd.DataFrame:
    """One row per configuration: its axis values, n runs ok, n failed, mean, std, 95% CI, min, max;
    sorted best first (configurations without a successful run last)."""
    ok = ok_runs(df, metric)
    g = ok.groupby("config_id")[metric]
    agg = g.agg(["count", "mean", "std", "min", "max"]).rename(columns={"count": "n"})
    first = df.drop_duplicates("config_id").set_index("config_id")[axes]
    table = first.join(agg, how="left")
    table["n"] = table["n"].fillna(0).astype(int)
    table["n_failed"] = df[df.status != "ok"].groupby("config_id").size().reindex(table.index).fillna(0).astype(int)
    table["ci95"] = [ci_halfwidth(s, n) for s, n in zip(table["std"], table["n"])]
    if "epochs" in df and df["epochs"].notna().any():  # > 1: the configuration repeated its training data
        table["epochs"] = df.groupby("config_id")["epochs"].max().reindex(table.index)
    table = table.sort_values("mean", na_position="last")
    table.index.name = "config_id"
    return table.reset_index()


def pooled_noise(df: pd.DataFrame, metric: str) -> tuple[float, int] | None:
    """(pooled within-configuration std of one run, degrees of freedom), or None when no
    configuration has two successful runs."""
    ok = ok_runs(df, metric)
    g = ok.groupby("config_id")[metric]
    n, var = g.count(), g.var(ddof=1)
    dof = int((n[n >= 2] - 1).sum())
    if dof < 1:
        return None
    return float(math.sqrt(((n[n >= 2] - 1) * var[n >= 2]).sum() / dof)), dof


def _by_seed(ok: pd.DataFrame, config_id: str, metric: str) -> pd.Series:
    runs = ok[ok.config_id == config_id]
    return runs.groupby("seed")[metric].mean()


def compare(df: pd.DataFrame, metric: str, best: str, other: str,
            noise: tuple[float, int] | None) -> dict[str, Any]:
    """``other`` minus ``best`` (positive = other is worse, for a lower-is-better metric)."""
    ok = ok_runs(df, metric)
    a, b = _by_seed(ok, best, metric), _by_seed(ok, other, metric)
    shared = sorted(set(a.index) & set(b.index))
    out: dict[str, Any] = {"config_id": other, "n_best": int(len(a)), "n_other": int(len(b)),
                           "shared_seeds": len(shared)}
    diff = float(b.mean() - a.mean())
    paired = b[shared].values - a[shared].values
    if len(shared) >= 2 and np.ptp(paired) <= 1e-12 * max(1.0, float(np.abs(paired).max())):
        # the same difference on every seed: no spread to test, the difference is exact
        d = float(paired[0])
        out.update(diff=d, ci_low=d, ci_high=d, p=0.0 if d else 1.0,
                   test=f"identical difference on {len(shared)} shared seeds")
    elif len(shared) >= 2:
        res = stats.ttest_rel(b[shared].values, a[shared].values)
        ci = res.confidence_interval(0.95)
        out.update(diff=float((b[shared] - a[shared]).mean()), ci_low=float(ci.low), ci_high=float(ci.high),
                   p=float(res.pvalue), test=f"paired t-test over {len(shared)} shared seeds")
    elif len(a) >= 2 and len(b) >= 2:
        res = stats.ttest_ind(b.values, a.values, equal_var=False)
        ci = res.confidence_interval(0.95)
        out.update(diff=diff, ci_low=float(ci.low), ci_high=float(ci.high), p=float(res.pvalue),
                   test="Welch t-test (no shared seeds)")
    elif noise is not None and noise[0] > 0:
        sd, dof = noise
        se = sd * math.sqrt(1 / len(a) + 1 / len(b))
        half = float(stats.t.ppf(0.975, dof) * se)
        out.update(diff=diff, ci_low=diff - half, ci_high=diff + half,
                   p=float(2 * stats.t.sf(abs(diff) / se, dof)), test=f"pooled seed noise (df {dof})")
    else:
        out.update(diff=diff, ci_low=None, ci_high=None, p=None, test="no estimate of noise")
    out["significant"] = out["p"] is not None and out["p"] < ALPHA
    return out


def recommend(df: pd.DataFrame, axes: list[str], metric: str) -> dict[str, Any]:
    """The best configuration by mean, its comparisons, the near-optimal set and a verdict."""
    table = configuration_table(df, axes, metric)
    ranked = table[table.n > 0]
    if ranked.empty:
        return {"best": None, "verdict": "none", "near_optimal": [], "comparisons": [],
                "text": "No experiment finished successfully; nothing to recommend."}
    noise = pooled_noise(df, metric)
    best = ranked.iloc[0]
    comparisons = [compare(df, metric, best.config_id, c, noise) for c in ranked.config_id.iloc[1:]]
    near = [best.config_id] + [c["config_id"] for c in comparisons if c["p"] is not None and not c["significant"]]
    untested = [c["config_id"] for c in comparisons if c["p"] is None]
    rec: dict[str, Any] = {
        "best": best.config_id, "best_config": {a: _plain(best[a]) for a in axes}, "metric": metric,
        metric: float(best["mean"]), "n": int(best.n), "ci95": _plain(best.ci95),
        "noise_std": noise[0] if noise else None, "noise_dof": noise[1] if noise else None,
        "alpha": ALPHA, "comparisons": comparisons, "near_optimal": near, "untested": untested}
    if comparisons:
        rec["runner_up"] = comparisons[0]["config_id"]
        rec["margin"] = comparisons[0]["diff"]
    rec["verdict"], rec["text"] = _verdict(rec, ranked, axes, metric)
    return rec


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def describe(row: pd.Series, axes: list[str]) -> str:
    return f"{row.config_id} ({', '.join(f'{a}={_plain(row[a])}' for a in axes)})" if axes else str(row.config_id)


def _verdict(rec: dict, ranked: pd.DataFrame, axes: list[str], metric: str) -> tuple[str, str]:
    rows = ranked.set_index("config_id", drop=False)
    best = rows.loc[rec["best"]]
    seeds = f"mean of {rec['n']} seeds" if rec["n"] > 1 else "one seed"
    head = f"{describe(best, axes)} has the lowest {metric}, {best['mean']:.4f} ({seeds})"
    if not rec["comparisons"]:
        return "single", head + "; it is the only configuration that finished, so there is nothing to compare."
    r = rec["comparisons"][0]
    if r["p"] is None:
        return "cannot_tell", (head + f", {r['diff']:.4f} below {r['config_id']}. Every configuration ran with one "
                               "seed, so the run-to-run noise is unknown and this study cannot tell whether the "
                               "difference is real: add seeds (--seeds 2) or a confirmation stage (--confirm 2).")
    ci = f"95% CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], p = {r['p']:.3g}, {r['test']}"
    if len(rec["near_optimal"]) == 1:
        text = (f"{describe(best, axes)} is better than the runner-up {r['config_id']}: {metric} {best['mean']:.4f} "
                f"vs {rows.loc[r['config_id']]['mean']:.4f} (difference {r['diff']:+.4f}, {ci}).")
        verdict = "better"
    else:
        near = rows.loc[rec["near_optimal"]]
        names = ", ".join(describe(row, axes) for _, row in near.iterrows())
        text = (f"{names} are indistinguishable at this noise level (best {rec['best']} {best['mean']:.4f}; "
                f"runner-up {r['config_id']} {r['diff']:+.4f}, {ci}): pick by another criterion (cost, "
                "stability) or add seeds.")
        shared = [a for a in axes if near[a].astype(str).nunique() == 1]
        free = [a for a in axes if a not in shared]
        if shared and free:
            text += (f" They agree on {', '.join(f'{a}={_plain(near[a].iloc[0])}' for a in shared)}; "
                     f"{', '.join(free)} made no detectable difference among them.")
        verdict = "indistinguishable"
    if rec["untested"]:
        text += (f" {len(rec['untested'])} configuration(s) could not be tested (one seed and no estimate of "
                 "noise).")
    return verdict, text


def edge_notes(table: pd.DataFrame, axes: list[str], near_optimal: list[str], best: str | None) -> list[str]:
    """Warnings about optima that are not bracketed: only numeric axes with >= 3 values can be
    bracketed; a near-optimal value at an edge counts too. Two-value axes get a plain note."""
    if best is None:
        return []
    notes = []
    rows = table.set_index("config_id")
    for a in axes:
        values = pd.Series(table[a].dropna().unique())
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        lo, hi = values.min(), values.max()
        if len(values) == 2:
            notes.append(f"{a} was tried at two values only ({lo:g}, {hi:g}): it cannot be bracketed; add a third "
                         "value to locate its optimum")
            continue
        if len(values) < 2:
            continue
        b = rows.loc[best, a]
        if b in (lo, hi):
            edge = "largest" if b == hi else "smallest"
            notes.append(f"best {a} = {b:g} is the {edge} value tried: the optimum is not bracketed; extend the "
                         f"range {'above' if edge == 'largest' else 'below'} {b:g}")
            continue
        at_edge = sorted({rows.loc[c, a] for c in near_optimal if rows.loc[c, a] in (lo, hi)})
        if at_edge:
            notes.append(f"near-optimal configurations include {a} = {', '.join(f'{v:g}' for v in at_edge)} at the "
                         "edge of the range: the optimum may lie beyond it")
    return notes


def bracketed(table: pd.DataFrame, axis: str, best: str | None) -> bool:
    """True when ``axis`` has >= 3 values and the best configuration's value is not at an edge."""
    if best is None or axis not in table:
        return False
    values = table[axis].dropna().unique()
    b = table.set_index("config_id").loc[best, axis]
    return bool(len(values) >= 3 and values.min() < b < values.max())
