"""Rank configurations, not runs, and say whether the winner is really better: one statistical model,
one footing for every number the answer prints.

A configuration is one combination of hyperparameters; its seeds are repeats, and runs with the same
seed see the same batches and initial weights, so seed is a *blocking factor*. The metric of the
successful runs is fitted with the additive model ``metric ~ configuration + seed`` (``statsmodels``
OLS; the seed term is dropped when the seeds do not connect the configurations). Each configuration's
*estimate* is its least-squares mean (its mean over the same average seed), so configurations with
different seed sets (a failed seed, a confirmation stage, an extension) stand on one footing; ranks,
differences and tests all come from these estimates, so a verdict can never point the other way from
the numbers printed beside it.

Comparisons with the best are many tests on a winner picked from the same data: Holm over "best vs
each" does not control that (``scripts/calibration.py`` measures it far above 5%), so significance is
the studentized range over the k configurations (``scipy.stats.studentized_range``), which holds the
familywise error at ``ALPHA`` for every pairwise comparison, the selected best's included. Noise belongs
to a configuration (near divergence it is many times larger): each difference uses the two
configurations' own variances (the larger of each one's own and the pooled) on Welch degrees of
freedom, i.e. Games-Howell, Tukey-Kramer's form for unequal variances. The *near-optimal set* is the best plus every
configuration not significantly worse.

Failures belong to their configuration: a configuration with any diverged, out-of-memory or crashed
seed is not recommended while one without failures finished (the answer says so); where every
configuration failed somewhere, only those with the lowest failure rate are eligible. Pruned
(successive halving) is not failed: pruned configurations are listed at the rung they reached and
take no part in the final comparison. After a confirmation stage the recommendation is made among
the confirmed configurations only, estimated from the confirmation seeds alone: the grid seed that
selected the winner is left out of its reported mean, which removes the winner's curse.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

ALPHA = 0.05  # familywise level of every "better"/"worse" claim
FAILED = ("diverged", "oom")  # a failed seed counts against its configuration: evidence about it
# a crash (a killed worker, a CUDA error, an exception) says nothing about the hyperparameters: it is retried in
# the study and rerun on --resume, and if it still failed it counts as a missing run, never as a failure
CRASHED = ("error",)
CORRECTION = "Games-Howell (studentized range on Welch df)"  # Tukey-Kramer with each configuration's own variance
VARIANCE_METHOD = ("per configuration, the larger of its own run-noise variance (seed-blocked residuals) and the "
                   "pooled one; differences on Welch degrees of freedom against the studentized range "
                   "(Games-Howell): near divergence the noise is many times larger, and a pooled variance alone "
                   "lets a noisy configuration look significant")
P_VALUES_SHOWN = 20  # the report's tables print this many comparisons
NAMES_SHOWN = 4  # an answer names at most this many configurations; more are summarised by their axis values
POWER = 0.8  # the power at which "the smallest difference this study could see" is stated
# "indistinguishable" needs every interval inside this band (relative to the best's value); wider is "cannot tell"
TOLERANCE_REL = 0.005


def ok_runs(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Successful runs with a finite metric: the one definition of "ok" in every ranking."""
    vals = pd.to_numeric(df[metric], errors="coerce")
    return df[(df.status == "ok") & np.isfinite(vals.astype(float))]


def ci_halfwidth(std: float, n: int, level: float = 0.95, dof: int | None = None) -> float:
    dof = n - 1 if dof is None else dof
    if n < 1 or dof < 1 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, dof) * std / math.sqrt(n))


# ---------------------------------------------------------------- the model
class Fit:
    """``metric ~ configuration + seed`` over successful runs: estimates (least-squares means), their
    covariance, the residual noise and its degrees of freedom (0: noise unknown)."""

    def __init__(self, ok: pd.DataFrame, metric: str):
        self.configs = list(dict.fromkeys(ok.config_id))
        seeds = list(dict.fromkeys(ok.seed))
        k, n = len(self.configs), len(ok)
        # seed is a block when shared seeds connect the configurations, unless its effects would use up
        # every residual degree of freedom that the model without it has (e.g. one configuration with
        # several seeds, the others one): then the unpaired model still estimates the noise (conservative)
        self.blocked = len(seeds) > 1 and _connected(ok) and not (n - k - (len(seeds) - 1) == 0 and n > k)
        X = pd.get_dummies(ok.config_id).reindex(columns=self.configs).to_numpy(float)
        L = np.eye(k)
        if self.blocked:  # seed effects relative to the first seed; estimates at the average seed
            X = np.hstack([X, pd.get_dummies(ok.seed).reindex(columns=seeds).to_numpy(float)[:, 1:]])
            L = np.hstack([L, np.full((k, len(seeds) - 1), 1 / len(seeds))])
        y = ok[metric].to_numpy(float)
        res = sm.OLS(y, X).fit()
        self.dof = int(len(y) - np.linalg.matrix_rank(X))
        self.estimates = pd.Series(L @ res.params, index=self.configs)
        self.sigma = float(math.sqrt(max(res.ssr, 0.0) / self.dof)) if self.dof > 0 else None
        self._cov = L @ res.normalized_cov_params @ L.T  # times sigma^2
        self.n = ok.groupby("config_id").size().reindex(self.configs).to_numpy(float)
        self.var, self.var_dof = self._config_variances(ok.config_id.to_numpy(), res.resid)

    def _config_variances(self, config_ids, resid) -> tuple[np.ndarray, np.ndarray]:
        """Each configuration's run-noise variance: near divergence it is many times the others', and a pooled
        variance then lets the noisy configuration look significant (17-24% familywise false alarms with one
        configuration at 7x the noise). Its own estimate is its residual sum of squares over d_i, its share of
        the model's residual degrees of freedom (a configuration with one run has none). Tried and rejected:
        limma's empirical-Bayes moderation (Smyth 2004; with 6-12 configurations its prior cannot see one
        outlying variance: 16-19% false alarms) and own variances for all (false alarms held, power lost)."""
        k = len(self.configs)
        if self.sigma is None:
            return np.full(k, np.nan), np.zeros(k)
        ss = pd.Series(np.asarray(resid) ** 2).groupby(config_ids).sum().reindex(self.configs).fillna(0).to_numpy()
        d = self.dof * self.n / self.n.sum()
        own = np.where(self.n < 2, 0.0, ss / np.maximum(d, 1e-12))
        # the larger of its own variance (on d_i df) and the pooled one (on the model's df): a noisy configuration
        # stands on its own; a quiet one never claims to be quieter than the common noise on two or three seeds.
        # Calibrated against the alternatives (scripts/calibration.py; the closing note of issue 31 has the table):
        # own variances alone lost power, and a pre-test that flags noisy configurations biased the quiet pool
        noisy = own > self.sigma ** 2
        return np.where(noisy, own, self.sigma ** 2), np.where(noisy, d, float(self.dof))

    def diff_se(self, a: str, b: str) -> float | None:
        """Standard error of estimate(b) - estimate(a) with each configuration's own (moderated) variance, or
        None when the noise is unknown. The design factor (the seed-blocked least-squares means' covariance)
        is kept; the common variance is replaced by the two configurations' own, weighted by their runs."""
        if self.sigma is None:
            return None
        i, j = self.configs.index(a), self.configs.index(b)
        design = self._cov[i, i] + self._cov[j, j] - 2 * self._cov[i, j]
        own = (self.var[i] / self.n[i] + self.var[j] / self.n[j]) / (1 / self.n[i] + 1 / self.n[j])
        return float(math.sqrt(max(design * own, 0.0)))

    def diff_dof(self, a: str, b: str) -> int:
        """Welch-Satterthwaite degrees of freedom of that difference (Games-Howell), floored, at most the model's."""
        i, j = self.configs.index(a), self.configs.index(b)
        u, v = self.var[i] / self.n[i], self.var[j] / self.n[j]
        den = u ** 2 / self.var_dof[i] + v ** 2 / self.var_dof[j]
        dof = (u + v) ** 2 / den if den > 0 else self.dof
        return int(max(1, min(self.dof, math.floor(dof + 1e-9))))  # floored: one cached critical value per df


def _connected(ok: pd.DataFrame) -> bool:
    """Whether shared seeds link every configuration (else seed effects cannot be told from
    configuration effects, and the model has no seed term)."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for c, s in zip(ok.config_id, ok.seed):
        parent[find(("c", c))] = find(("s", s))
    return len({find(x) for x in list(parent)}) == 1


@functools.lru_cache(maxsize=1024)
def _studentized_critical(k: int, dof: int) -> float:
    return float(stats.studentized_range.ppf(1 - ALPHA, k, dof) / math.sqrt(2))


def tukey_critical(k: int, dof: int) -> float:
    """The critical |t| of a studentized-range comparison among k >= 2 configurations (q / sqrt 2) on ``dof``
    degrees of freedom. Exact for k = 2 (Student's t) and for dof <= 8 or a power of two; in between, harmonic
    interpolation in 1/dof between the neighbouring powers of two, as printed tables are read (error well under
    0.5%). Each exact quantile is a numerical integral of about 0.2 s; with Welch df per comparison this keeps a
    study's analysis to a handful of them (cached)."""
    if k <= 2:
        return float(stats.t.ppf(1 - ALPHA / 2, dof))
    dof = int(min(dof, 1024))
    if dof <= 8 or dof & (dof - 1) == 0:
        return _studentized_critical(k, dof)
    lo = 2 ** int(math.log2(dof))
    hi = lo * 2
    w = (1 / dof - 1 / hi) / (1 / lo - 1 / hi)
    return w * _studentized_critical(k, lo) + (1 - w) * _studentized_critical(k, hi)


def compare(fit: Fit, best: str, other: str, p_values: bool = True) -> dict[str, Any]:
    """``other`` minus ``best`` from the model (positive = other is worse for a lower-is-better metric),
    with a simultaneous 95% interval, the adjusted and unadjusted p-values and the direction."""
    diff = float(fit.estimates[other] - fit.estimates[best])
    out: dict[str, Any] = {"config_id": other, "diff": diff}
    se = fit.diff_se(best, other)
    k = len(fit.configs)
    if se is None:
        out.update(ci_low=None, ci_high=None, p=None, p_unadjusted=None, significant=False, direction="cannot tell",
                   test="no estimate of noise")
        return out
    dof = fit.diff_dof(best, other)
    crit = tukey_critical(k, dof)
    if se <= 1e-12 * max(1.0, abs(diff)):  # no residual spread: the difference is exact
        p = p_raw = 0.0 if abs(diff) > 1e-12 else 1.0
        significant = p == 0.0
    else:
        t = abs(diff) / se
        p_raw = float(2 * stats.t.sf(t, dof))
        significant = t > crit
        p = float(stats.studentized_range.sf(t * math.sqrt(2), k, dof)) if p_values else None
    out.update(ci_low=diff - crit * se, ci_high=diff + crit * se, p=p, p_unadjusted=p_raw, significant=significant,
               se=se, dof=dof,
               direction=("worse" if diff > 0 else "better") if significant else "indistinguishable",
               test=f"{'configuration + seed' if fit.blocked else 'configuration'} model, per-configuration "
                    f"variances, Welch df {dof}, {CORRECTION} over {k} configurations")
    return out


# ---------------------------------------------------------------- the table
def configuration_table(df: pd.DataFrame, axes: list[str], metric: str, fit: Fit | None = None) -> pd.DataFrame:
    """One row per configuration: its axis values; n runs ok, n failed (diverged/OOM), failure rate, n crashed
    (missing runs, not in the failure rate), n pruned; the seed-adjusted mean (``mean``, the estimate every comparison
    uses), the plain
    mean of its runs, std, 95% CI, min, max; for pruned ones the rung and metric they reached. Sorted
    best first; configurations without a successful final run last."""
    ok = ok_runs(df, metric)
    fit = fit if fit is not None else (Fit(ok, metric) if len(ok) else None)
    g = ok.groupby("config_id")[metric]
    agg = g.agg(["count", "mean", "std", "min", "max"]).rename(columns={"count": "n", "mean": "raw_mean"})
    first = df.drop_duplicates("config_id").set_index("config_id")[axes]
    table = first.join(agg, how="left")
    table["n"] = table["n"].fillna(0).astype(int)
    count = lambda mask: df[mask].groupby("config_id").size().reindex(table.index).fillna(0).astype(int)  # noqa: E731
    table["n_failed"] = count(df.status.isin(FAILED))
    table["n_diverged"] = count(df.status == "diverged")  # information about the axis (a crash is none)
    table["n_crashed"] = count(df.status.isin(CRASHED))  # missing runs
    table["n_pruned"] = count(df.status == "pruned")
    tried = table["n"] + table["n_failed"]
    table["failure_rate"] = (table["n_failed"] / tried.where(tried > 0)).astype(float)
    table["mean"] = fit.estimates.reindex(table.index) if fit is not None else np.nan
    table["ci95"] = [ci_halfwidth(s, n) for s, n in zip(table["std"], table["n"])]
    pruned = df[df.status == "pruned"]
    if len(pruned):
        table["pruned_at_step"] = pruned.groupby("config_id")["pruned_at_step"].max().reindex(table.index)
        table["rung_metric"] = pruned.groupby("config_id")[metric].mean().reindex(table.index)
    for col in ("params_active", "params_total", "flops_per_token", "routing_maxvio", "routing_dead_experts"):
        if col in df and df[col].notna().any():  # compute and routing health, next to the loss
            table[col] = ok.groupby("config_id")[col].mean().reindex(table.index) if len(ok) else np.nan
    if "epochs" in df and df["epochs"].notna().any():  # > 1: the configuration repeated its training data
        table["epochs"] = df.groupby("config_id")["epochs"].max().reindex(table.index)
    table = table.sort_values(["mean", "rung_metric"] if "rung_metric" in table else "mean", na_position="last")
    table.index.name = "config_id"
    return table.reset_index()


def eligible(table: pd.DataFrame) -> pd.DataFrame:
    """The configurations that may be recommended: a finished result and no failed seed; where every
    finished configuration failed somewhere, those with the lowest failure rate."""
    done = table[table.n > 0]
    clean = done[done.n_failed == 0]
    return clean if len(clean) else done[done.failure_rate == done.failure_rate.min()]


# ---------------------------------------------------------------- the recommendation
def recommend(df: pd.DataFrame, axes: list[str], metric: str, p_values: bool = True) -> dict[str, Any]:
    """The best eligible configuration, its comparisons with every other, the near-optimal set, the
    noise, and a verdict: "better", "indistinguishable", "cannot_tell", "single" or "none"."""
    ok = ok_runs(df, metric)
    fit = Fit(ok, metric) if len(ok) else None
    table = configuration_table(df, axes, metric, fit)
    allowed = eligible(table)
    if allowed.empty:
        return {"best": None, "verdict": "none", "near_optimal": [], "comparisons": [], "metric": metric,
                "alpha": ALPHA, "noise_std": None, "noise_dof": None,
                "text": "No experiment finished successfully; nothing to recommend."}
    confirmed = _confirmed(df, ok, allowed)
    incomplete = None if confirmed else _confirmation_incomplete(df)
    switched = None
    if confirmed:
        # sample splitting: the grid's runs choose, the confirmation seeds estimate. Choosing among the
        # confirmed ones on the confirmation runs and reporting those same runs would bring the winner's
        # curse back; the choice moves only to a configuration significantly better on the fresh seeds.
        grid = ok[ok.stage != "confirm"]
        grid_fit = Fit(grid, metric) if len(grid) else fit
        choice_fit = Fit(ok[ok.config_id.isin(confirmed) & (ok.stage == "confirm")], metric)
        best = min(confirmed, key=lambda c: grid_fit.estimates.get(c, math.inf))
        better = [c for c in choice_fit.configs if c != best
                  and compare(choice_fit, best, c, False)["direction"] == "better"]
        if better:
            switched, best = best, min(better, key=lambda c: choice_fit.estimates[c])
    else:
        choice_fit = fit
        pool = list(allowed.config_id)
        if incomplete:  # stay with what the grid chose for confirmation; never an unconfirmed outsider
            pool = [c for c in pool if c in incomplete["chosen"]] or pool
        best = min(pool, key=lambda c: fit.estimates[c])
    rows = table.set_index("config_id", drop=False)
    others = sorted((c for c in choice_fit.configs if c != best), key=lambda c: choice_fit.estimates[c])
    # adjusted p-values (a numerical integral each) only where a report prints them: the first P_VALUES_SHOWN
    comparisons = [compare(choice_fit, best, c, p_values and i < P_VALUES_SHOWN) for i, c in enumerate(others)]
    near = [best] + [c["config_id"] for c in comparisons if c["direction"] in ("indistinguishable", "better")]
    best_runs = (ok[(ok.config_id == best) & (ok.stage == "confirm")] if confirmed else ok[ok.config_id == best])
    mean, ci = _reported(best_runs, choice_fit, best, confirmed, ok, metric)
    rec: dict[str, Any] = {
        "best": best, "best_config": {a: plain(rows.loc[best, a]) for a in axes}, "metric": metric,
        metric: mean, "n": int(len(best_runs)), "ci95": ci,
        "noise_std": fit.sigma if fit else None, "noise_dof": fit.dof if fit and fit.sigma is not None else None,
        "alpha": ALPHA, "correction": CORRECTION, "family_size": len(choice_fit.configs),
        "variance_method": VARIANCE_METHOD,
        "comparisons": comparisons, "near_optimal": near if choice_fit.sigma is not None else [best],
        "untested": [c["config_id"] for c in comparisons if c["direction"] == "cannot tell"],
        "confirmed": confirmed, "estimated_on": "confirmation seeds" if confirmed else "every seed",
        "grid_choice_replaced": switched, "confirmation_incomplete": incomplete,
        "ineligible": [c for c in table.config_id[(table.n > 0)] if c not in set(allowed.config_id)],
        "failure_rule": "a configuration with a diverged or out-of-memory seed is not recommended while one "
                        "without failures finished; a crashed run (error) is retried, then counts as missing"}
    if confirmed and fit is not None and fit.sigma is not None:
        # the configurations the confirmation left out are still tested against the best, on every seed (the
        # noise is known from the confirmed ones' seeds): a value 50 sd worse brackets the optimum although it
        # was never confirmed. They do not enter the choice or the near-optimal set.
        rec["outside_confirmation"] = [compare(fit, best, c, False) for c in fit.configs
                                       if c != best and c not in choice_fit.configs]
    if comparisons:
        rec["runner_up"], rec["margin"] = comparisons[0]["config_id"], comparisons[0]["diff"]
    rec["tolerance"] = TOLERANCE_REL * abs(mean) if mean == mean else None
    rec["tolerance_rule"] = f"{TOLERANCE_REL:.1%} of the best's {metric}"
    seeds = int(ok[ok.config_id == best].seed.nunique()) if len(ok) else 0
    rec["power"] = _power(rec, choice_fit, seeds) if choice_fit.sigma is not None and rec["tolerance"] else None
    rec["detectable_difference"] = rec["power"]["detectable_difference"] if rec["power"] else None
    rec["verdict"], rec["text"] = _verdict(rec, rows, axes, metric, selected_from=int((table.n > 0).sum()))
    return rec


def _confirmation_incomplete(df: pd.DataFrame) -> dict[str, Any] | None:
    """When a confirmation stage ran but none of its runs succeeded: which configurations it was for and why."""
    if "stage" not in df or not (df.stage == "confirm").any():
        return None
    runs = df[df.stage == "confirm"]
    statuses = runs.status.value_counts().to_dict()
    why = ", ".join(f"{n} {s}" for s, n in statuses.items())
    return {"chosen": list(dict.fromkeys(runs.config_id)), "statuses": {str(k): int(v) for k, v in statuses.items()},
            "reason": f"none of its {len(runs)} runs finished ({why})"}


def _confirmed(df: pd.DataFrame, ok: pd.DataFrame, allowed: pd.DataFrame) -> list[str]:
    """Configurations with successful confirmation runs (in the table's order), if the study has them."""
    if "stage" not in df:
        return []
    have = set(ok.config_id[ok.stage == "confirm"])
    return [c for c in allowed.config_id if c in have]


def _reported(runs: pd.DataFrame, fit: Fit, best: str, confirmed: list[str], ok: pd.DataFrame,
              metric: str) -> tuple[float, float]:
    """(the mean the answer reports for the best, its 95% CI half-width). Without confirmation: its
    estimate, with the CI of its own runs. After confirmation: the mean of its confirmation runs, whose
    error is a new seed's effect plus run noise. The confirmed configurations share those seeds, so the
    two variance components are separated (two-way ANOVA: seed mean square, residual mean square) and
    recombined, ``sigma^2 = MS_seed / k + (1 - 1/k) MS_res``, with Satterthwaite's degrees of freedom:
    pooling their spreads as if independent would overstate the degrees of freedom (and undercover)."""
    n = len(runs)
    if not confirmed:
        return float(fit.estimates[best]), ci_halfwidth(float(runs[metric].std()), n) if n >= 2 else math.nan
    mean = float(runs[metric].mean())
    grid = (ok[ok.config_id.isin(confirmed) & (ok.stage == "confirm")]
            .pivot_table(index="config_id", columns="seed", values=metric, aggfunc="mean").dropna(axis=1))
    k, m = grid.shape
    if m < 2:
        return mean, math.nan
    y = grid.to_numpy(float)
    if k == 1:
        return mean, ci_halfwidth(float(y.std(ddof=1)), n)
    seed_means = y.mean(axis=0)
    ms_seed = k * float(((seed_means - seed_means.mean()) ** 2).sum()) / (m - 1)
    resid = y - y.mean(axis=1, keepdims=True) - seed_means[None, :] + y.mean()
    ms_res = float((resid ** 2).sum()) / ((k - 1) * (m - 1))
    a, b = ms_seed / k, (1 - 1 / k) * ms_res
    total = a + b
    if total <= 0:
        return mean, 0.0
    dof = total ** 2 / (a ** 2 / (m - 1) + b ** 2 / ((k - 1) * (m - 1)))
    return mean, float(stats.t.ppf(0.975, dof) * math.sqrt(total / n))


def plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def describe(row: pd.Series, axes: list[str]) -> str:
    return f"{row.config_id} ({', '.join(f'{a}={plain(row[a])}' for a in axes)})" if axes else str(row.config_id)



def _short(v) -> str:
    """A value as the answer names it: floats compactly (1e-03 as 0.001), others as they are."""
    return f"{plain(v):g}" if isinstance(plain(v), float) else str(plain(v))

def detectable_difference(se: float, k: int, dof: int, power: float = POWER) -> float:
    """The smallest true difference from the best that a Tukey-Kramer comparison with standard error ``se``
    (k configurations, ``dof`` residual degrees of freedom) detects with probability ``power`` at the
    familywise ALPHA: ``(critical + t_power(dof)) x se``, the usual shifted-t approximation of the noncentral t
    (scipy's noncentral t returns NaN at the 1-3 degrees of freedom that 2-4 seeds give)."""
    return float(tukey_critical(max(k, 2), dof) + stats.t.ppf(power, dof)) * se


def _power(rec: dict, fit: Fit, n_seeds: int) -> dict[str, Any] | None:
    """What this study could see: ``detectable_difference`` (80% power, familywise 5%) over the typical standard
    error of "best vs another", and the seeds per configuration that would see the practical tolerance."""
    comps = [c for c in rec["comparisons"] if c.get("se") is not None]
    if not comps or fit.dof < 1:
        return None
    se, k = float(np.median([c["se"] for c in comps])), len(fit.configs)
    dof = int(np.median([c["dof"] for c in comps]))
    out = {"detectable_difference": detectable_difference(se, k, dof), "power": POWER, "alpha": ALPHA,
           "se": se, "seeds": n_seeds, "tolerance": rec["tolerance"], "seeds_for_tolerance": None}
    # with m seeds per configuration the standard error falls as 1/sqrt(m) and the residual df grow to about
    # (k-1)(m-1): the smallest such m, by bisection (about 10 studentized-range quantiles, cached)
    n = max(n_seeds, 1)

    def sees(m: int) -> bool:
        # df rounded down to a power of two (conservative), so the quantiles are shared across studies (cached)
        dof_m = max(dof, 2 ** int(math.log2(min(1024, max(1, (k - 1) * (m - 1))))))
        return detectable_difference(se * math.sqrt(n / m), k, dof_m) <= rec["tolerance"]

    lo, hi = n, 1000
    if sees(hi):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if sees(mid) else (mid, hi)
        out["seeds_for_tolerance"] = hi
    return out


def _ci(c: dict, rec: dict) -> str:
    return (f"simultaneous 95% CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
            + (f", adjusted p = {c['p']:.3g}" if c["p"] is not None else "")
            + f", {CORRECTION} over {rec['family_size']} configurations")


def _why_not(c: str, rec: dict, rows: pd.DataFrame) -> str:
    """Why a configuration significantly better than the recommended one is not the recommendation."""
    if c in rec["ineligible"]:
        return (f"{int(rows.loc[c, 'n_failed'])} of {int(rows.loc[c, 'n'] + rows.loc[c, 'n_failed'])} of its seeds "
                "failed (diverged or out of memory)")
    if rec["confirmed"] and c not in rec["confirmed"]:
        return "it was not confirmed on fresh seeds"
    return "it was not chosen by the grid's seeds"


def _verdict(rec: dict, rows: pd.DataFrame, axes: list[str], metric: str, selected_from: int) -> tuple[str, str]:
    """The answer's sentence. Its direction word comes from the interval printed beside it: "better" (every
    other configuration is significantly worse), "indistinguishable" (the others not significantly worse all
    lie within the practical tolerance), "cannot tell" (the interval is wider than the tolerance, or the
    noise is unknown); a configuration significantly lower but not recommended is called lower, with why."""
    best = rows.loc[rec["best"]]
    runs = f"mean of {rec['n']} seeds" if rec["n"] > 1 else "one seed"
    if rec["confirmed"]:
        runs = f"mean of its {rec['n']} confirmation seed(s), which did not select it"
    ci = f" ± {rec['ci95']:.4f} (95% CI)" if rec["ci95"] is not None and rec["ci95"] == rec["ci95"] else ""
    head = f"{describe(best, axes)}: {metric} {rec[metric]:.4f}{ci} ({runs})"
    notes = _notes(rec, rows, selected_from)
    if not rec["comparisons"]:
        only = ("the only confirmed configuration" if rec["confirmed"] else
                "the only configuration that finished")
        return "single", f"{head}; it is {only}, so there is nothing to compare.{notes}"
    r = rec["comparisons"][0]
    among = f"among the {len(rec['confirmed'])} confirmed configurations" if rec["confirmed"] else ""
    if r["direction"] == "cannot tell":
        return "cannot_tell", (f"{head} has the lowest {metric} {among}".rstrip() + f", {r['diff']:.4f} below "
                               f"{r['config_id']}. The run-to-run noise is unknown (no configuration ran twice), so "
                               "this study cannot tell whether the difference is real: add seeds (--seeds 2) or a "
                               f"confirmation stage (--confirm 2).{notes}")
    lower = [c for c in rec["comparisons"] if c["direction"] == "better"]
    level = [c for c in rec["comparisons"] if c["direction"] == "indistinguishable"]
    lower_text = "".join(f" {c['config_id']} has a significantly lower {metric} ({c['diff']:+.4f}, {_ci(c, rec)}) but "
                         f"is not recommended: {_why_not(c['config_id'], rec, rows)}." for c in lower[:3])
    if not level:
        runner = rows.loc[r["config_id"]]
        worse = [c for c in rec["comparisons"] if c["direction"] == "worse"]
        if lower:
            return "better", (f"{head}: the recommended configuration; every other eligible one is significantly "
                              f"worse.{lower_text}{notes}")
        return "better", (f"{head} is better than every other configuration{' ' + among if among else ''}; the "
                          f"runner-up {describe(runner, axes)} is worse by {worse[0]['diff']:+.4f} "
                          f"({_ci(worse[0], rec)}).{lower_text}{notes}")
    tol = rec["tolerance"]
    widest = max(level, key=lambda c: max(abs(c["ci_low"]), abs(c["ci_high"])))
    reach = max(abs(widest["ci_low"]), abs(widest["ci_high"]))
    near = rows.loc[[rec["best"]] + [c["config_id"] for c in level]]
    if len(near) <= NAMES_SHOWN:
        names = ", ".join(describe(row, axes) for _, row in near.iterrows())
    else:
        values = "; ".join(f"{a} {', '.join(_short(v) for v in sorted(near[a].unique(), key=str))}" for a in axes)
        names = f"{len(near)} configurations ({values}; listed in the report)"
    if reach <= tol:
        verdict = "indistinguishable"
        text = (f"{names} are indistinguishable{' (' + among + ')' if among else ''}: every difference from the best "
                f"lies within the practical tolerance of ±{tol:.4g} {metric} (widest: {widest['config_id']} "
                f"{widest['diff']:+.4f}, {_ci(widest, rec)}). Recommended"
                f"{' (the grid' + chr(39) + 's choice)' if rec['confirmed'] else ''}: {head}. Pick among them by "
                "another criterion (cost, stability).")
    else:
        verdict = "cannot_tell"
        pw = rec.get("power") or {}
        seen = (f" Differences under {pw['detectable_difference']:.3g} {metric} could not be seen (80% power at the "
                f"familywise 5% level)" if pw.get("detectable_difference") is not None else "")
        more = (f"; {pw['seeds_for_tolerance']} seeds per configuration would see {tol:.3g}"
                if pw.get("seeds_for_tolerance") else f"; even 1,000 seeds per configuration would not see {tol:.3g}"
                if pw else "")
        text = (f"{head} has the lowest {metric}{' ' + among if among else ''}, but this study cannot tell it from "
                f"{len(level)} other configuration(s) that are not significantly worse: their intervals reach past "
                f"the practical tolerance of ±{tol:.4g} (widest: {widest['config_id']} {widest['diff']:+.4f}, "
                f"{_ci(widest, rec)}).{seen}{more}." if seen else
                f"{head} has the lowest {metric}, but this study cannot tell it from {len(level)} other(s).")
    shared = [a for a in axes if near[a].astype(str).nunique() == 1]
    free = [a for a in axes if a not in shared]
    if shared and free:
        text += (f" They agree on {', '.join(f'{a}={plain(near[a].iloc[0])}' for a in shared)}; "
                 f"{', '.join(free)} made no {'practical' if verdict == 'indistinguishable' else 'detectable'} "
                 "difference among them.")
    return verdict, text + lower_text + notes


def _notes(rec: dict, rows: pd.DataFrame, selected_from: int) -> str:
    notes = ""
    if rec.get("grid_choice_replaced"):
        notes += (f" {rec['grid_choice_replaced']} looked best in the grid, but on the confirmation seeds "
                  f"{rec['best']} "
                  "is significantly better, so it is recommended instead (chosen on those seeds: its estimate is "
                  "slightly optimistic).")
    if rec.get("confirmation_incomplete"):
        inc = rec["confirmation_incomplete"]
        notes += (f" Confirmation could not be completed: {inc['reason']}; the recommendation is the grid's choice "
                  f"among the configurations chosen for confirmation ({', '.join(inc['chosen'])}), estimated on the "
                  "seeds that chose it (optimistic). Resume the study to run the confirmation again.")
    if rec["ineligible"]:
        bad = ", ".join(f"{c} ({int(rows.loc[c, 'n_failed'])} of {int(rows.loc[c, 'n'] + rows.loc[c, 'n_failed'])} "
                        "seeds failed)" for c in rec["ineligible"][:5])
        notes += f" Not recommended because seeds failed: {bad}" + (" ..." if len(rec["ineligible"]) > 5 else "") + "."
    best_failed = int(rows.loc[rec["best"], "n_failed"])
    if best_failed:
        notes += (f" Every configuration had failed seeds; {rec['best']} failed on {best_failed}, the fewest: treat "
                  "it as unstable.")
    if not rec["confirmed"] and selected_from > 1:
        notes += (f" Its {rec['metric']} is the best of {selected_from} configurations measured on the seeds that "
                  "chose it, so it is optimistic (winner's curse); --confirm K measures it on fresh seeds.")
    return notes


# ---------------------------------------------------------------- edges and bracketing
def bracket(table: pd.DataFrame, axis: str, rec: dict) -> dict[str, Any]:
    """Whether the optimum along a numeric ``axis`` is bracketed: on *both* sides of the near-optimal values, a
    value whose configurations were *tested* worse (the recommendation's comparisons, and after a confirmation
    those of the configurations it left out) or diverged. A crash (error, OOM) says nothing about the axis; a
    near-optimal value is not worse; with no noise estimate (one seed) no value was tested and only divergence
    brackets. Returns ``{"bracketed", "tested", "open", "by_estimate"}``: ``open`` is the side to extend
    ("largest" | "smallest" | None), judged by the estimates where nothing could be tested (where to look
    next, never a claim), and ``by_estimate`` whether the estimates alone rise on both sides."""
    best = rec.get("best")
    if best is None or axis not in table or table[axis].dropna().nunique() < 2:
        return {"bracketed": False, "tested": False, "open": None, "by_estimate": False}
    rows = table.set_index("config_id")
    tested = rec.get("noise_std") is not None
    comps = rec.get("comparisons", []) + rec.get("outside_confirmation", [])
    worse = {c["config_id"] for c in comps if c["direction"] == "worse"}
    higher = {c["config_id"] for c in comps if c["diff"] > 0}
    diverged = set(rows.index[(rows.get("n_diverged", 0) > 0) & (rows.n == 0)])
    near = [rows.loc[c, axis] for c in {best, *rec.get("near_optimal", [])}]

    def sides(bounding: set) -> tuple[bool, bool]:
        bounds = [rows.loc[c, axis] for c in bounding]
        return any(v > max(near) for v in bounds), any(v < min(near) for v in bounds)

    high, low = sides(worse | diverged)
    est_high, est_low = sides(higher | diverged)
    h, lo_ = (high, low) if tested else (est_high, est_low)
    return {"bracketed": high and low, "tested": tested, "by_estimate": est_high and est_low,
            "open": None if h and lo_ else "largest" if not h else "smallest"}


def bracketed(table: pd.DataFrame, axis: str, rec: dict) -> bool:
    return bracket(table, axis, rec)["bracketed"]


BUDGET_AXES = ("steps",)  # the token horizon: compared, never "optimised"


def edge_notes(table: pd.DataFrame, axes: list[str], rec: dict) -> list[str]:
    """Warnings about optima that are not bracketed (numeric axes of >= 3 values); two-value axes get a
    plain note."""
    best = rec.get("best")
    if best is None:
        return []
    notes = []
    rows = table.set_index("config_id")
    for a in axes:
        if a in BUDGET_AXES:  # a budget, not a hyperparameter: more steps is expected to win, not an edge
            continue
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
        at_edge = sorted({rows.loc[c, a] for c in rec.get("near_optimal", []) if rows.loc[c, a] in (lo, hi)})
        if at_edge:
            notes.append(f"near-optimal configurations include {a} = {', '.join(f'{v:g}' for v in at_edge)} at the "
                         "edge of the range: the optimum may lie beyond it")
    return notes
