"""The study figures (matplotlib Agg + seaborn), one question each. Each function writes one PNG and
returns its path. Failed and diverged configurations are drawn as marked points, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..record import config_id
from .stats import is_lr_axis, is_numeric_axis, log_scale, sorted_values  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
FAILED = dict(marker="x", color="tab:red", s=60, zorder=5)


def save_figure(fig, path: Path) -> Path:
    from ..utils import atomic_write

    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def study_figures(df: pd.DataFrame, axes: list[str], records: list[dict], a: dict, out: Path) -> list[Path]:
    """Every generic figure that has something to show for this study."""
    metric = a["metric"]
    table = pd.DataFrame(a["configurations"])
    ok = df[(df.status == "ok") & df[metric].notna()]
    figs = []
    lr_axes = [x for x in axes if is_lr_axis(x) and is_numeric_axis(df[x])]
    if lr_axes and not table.empty:
        figs.append(loss_vs_lr(table, axes, lr_axes[0], a, out))
    if len(axes) >= 2 and not ok.empty:
        mains = [k for k in a["importance"] if ":" not in k]
        figs.append(heatmap(ok, (mains + [x for x in axes if x not in mains])[:2], metric, out))
    if any(r.get("history", {}).get("eval") for r in records):
        figs.append(validation_curves(records, a["recommendation"].get("best"), out))
    if not ok.empty:
        figs += [performance_distributions(ok, out), hyperparameter_analysis(df, axes, metric, out),
                 correlation_heatmap(a["correlations"], out), top_performers(table, metric, out)]
    if a.get("routing"):
        figs.append(routing_plot(records, a, axes, out))
    return figs


def _second_axis(axes: list[str], lr_axis: str, importance: dict) -> str | None:
    others = [x for x in importance if x != lr_axis and ":" not in x]
    others += [x for x in axes if x != lr_axis and x not in importance]
    return others[0] if others else None


def loss_vs_lr(table: pd.DataFrame, axes: list[str], lr_axis: str, a: dict, out: Path) -> Path:
    """Loss vs LR, one curve per value of the most important other axis, mean ± 95% CI over seeds,
    each curve's optimum starred; the other axes are held at the best configuration's values."""
    metric, rec = a["metric"], a["recommendation"]
    second = _second_axis(axes, lr_axis, a.get("importance", {}))
    best = rec.get("best_config") or {}
    fixed = [x for x in axes if x not in (lr_axis, second) and x in best]
    sl = table
    for x in fixed:
        sl = sl[sl[x].astype(str) == str(best[x])]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups = [(None, sl)] if second is None else [(v, sl[sl[second].astype(str) == str(v)])
                                                  for v in sorted_values(sl[second])]
    palette = sns.color_palette("viridis", max(1, len(groups)))
    top = np.nanmax(table["mean"].to_numpy(dtype=float)) if table["mean"].notna().any() else 1.0
    for (v, g), color in zip(groups, palette):
        g = g.sort_values(lr_axis)
        good = g[g.n > 0]
        label = "mean" if second is None else f"{second}={v}"
        ax.errorbar(good[lr_axis], good["mean"], yerr=good["ci95"].fillna(0), marker="o", capsize=3, color=color,
                    label=label)
        if not good.empty:
            opt = good.loc[good["mean"].idxmin()]
            ax.scatter([opt[lr_axis]], [opt["mean"]], marker="*", s=220, color=color, edgecolor="k", zorder=6)
        bad = g[g.n == 0]
        if not bad.empty:
            ax.scatter(bad[lr_axis], [top] * len(bad), **FAILED)
    if (table.n == 0).any():
        ax.scatter([], [], label="failed / diverged", **FAILED)
    ax.set_xscale("log")
    held = ", ".join(f"{x}={best[x]}" for x in fixed)
    ax.set(xlabel=lr_axis, ylabel=f"{metric} (mean ± 95% CI over seeds)",
           title=f"{metric} vs {lr_axis}" + (f" per {second}" if second else "") + (f"\n({held})" if held else ""))
    ax.legend(fontsize=8)
    return save_figure(fig, out / "loss_vs_lr.png")


def heatmap(ok: pd.DataFrame, pair: list[str], metric: str, out: Path) -> Path:
    """Mean metric over the two most important axes (averaged over the other axes and seeds)."""
    x, y = pair
    pivot = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    pivot = pivot.reindex(index=sorted_values(ok[y]), columns=sorted_values(ok[x]))
    fig, ax = plt.subplots(figsize=(1.2 * len(pivot.columns) + 3, 0.6 * len(pivot.index) + 2.5))
    sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis_r", ax=ax, cbar_kws={"label": f"mean {metric}"})
    ax.set_title(f"mean {metric} by {x} and {y} (the two most important axes)")
    return save_figure(fig, out / "heatmap.png")


def validation_curves(records: list[dict], best: str | None, out: Path) -> Path:
    """Validation loss over steps for every run (the best configuration highlighted), and the LR schedule."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for r in records:
        ev = r.get("history", {}).get("eval", [])
        if not ev:
            continue
        is_best = config_id(r) == best
        ax.plot([e["step"] for e in ev], [e["loss"] for e in ev], color="tab:red" if is_best else "0.6",
                lw=2.2 if is_best else 0.8, alpha=1 if is_best else 0.6, zorder=3 if is_best else 1,
                ls="-" if r["status"] == "ok" else ":")
    ax.plot([], [], color="tab:red", lw=2.2, label=f"best configuration ({best})")
    ax.plot([], [], color="0.6", lw=0.8, label="other runs (dotted: failed)")
    ax.set(xlabel="step", ylabel="validation loss", title="validation loss over training, every run")
    ax.legend(fontsize=8)
    shown = [r for r in records if config_id(r) == best] or records
    tr = shown[0].get("history", {}).get("train", [])
    ax2.plot([t["step"] for t in tr], [t["lr"] for t in tr], color="tab:blue")
    ax2.set(xlabel="step", ylabel="learning rate", title="LR schedule of the best configuration")
    return save_figure(fig, out / "validation_curves.png")


def performance_distributions(ok: pd.DataFrame, out: Path) -> Path:
    metrics = [m for m in ("val_loss", "val_accuracy", "val_perplexity", "train_time_s") if ok[m].notna().any()]
    fig, axs = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axs[0], metrics):
        sns.histplot(ok[m].dropna(), ax=ax, bins=min(20, max(3, len(ok))), color="tab:blue")
        ax.axvline(ok[m].mean(), color="k", ls="--", lw=1, label="mean")
        ax.set_title(m)
        ax.legend()
    fig.suptitle(f"Distribution over {len(ok)} successful runs")
    return save_figure(fig, out / "performance_distributions.png")


def hyperparameter_analysis(df: pd.DataFrame, axes: list[str], metric: str, out: Path) -> Path:
    """The metric per value of each axis (box: successful runs; red x: failed runs of that value)."""
    n = max(1, len(axes))
    fig, axs = plt.subplots(1, n, figsize=(4 * n, 3.6), squeeze=False)
    ok = df[(df.status == "ok") & df[metric].notna()]
    for ax, a in zip(axs[0], axes):
        data = ok.assign(**{a: ok[a].astype(str)})
        order = [str(v) for v in sorted_values(df[a])]
        sns.boxplot(data=data, x=a, y=metric, order=order, ax=ax, color="tab:cyan")
        sns.stripplot(data=data, x=a, y=metric, order=order, ax=ax, color="k", size=3)
        bad = df[df.status != "ok"]
        if not bad.empty and not ok.empty:
            ax.scatter([order.index(str(v)) for v in bad[a]], [ok[metric].max()] * len(bad), **FAILED)
        ax.set_title(f"{metric} by {a}")
    if not axes:
        axs[0][0].text(0.5, 0.5, "no varied hyperparameters", ha="center")
    return save_figure(fig, out / "hyperparameter_analysis.png")


def correlation_heatmap(correlations: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    if correlations:
        sns.heatmap(pd.DataFrame(correlations), annot=True, fmt=".2f", cmap="coolwarm", vmin=-1, vmax=1, ax=ax,
                    square=True)
        ax.set_title("Spearman rank correlation (numeric axes; LRs on log scale)")
    else:
        ax.text(0.5, 0.5, "too few successful runs or numeric axes for correlations", ha="center")
        ax.axis("off")
    return save_figure(fig, out / "correlation_heatmap.png")


def top_performers(table: pd.DataFrame, metric: str, out: Path, k: int = 10) -> Path:
    """The best configurations by mean, with 95% CIs over seeds where there are two or more."""
    head = table[table.n > 0].head(k).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(head) + 1.8))
    bars = ax.barh(head.config_id, head["mean"], xerr=head["ci95"].fillna(0), color="tab:gray", capsize=3)
    if len(head):
        bars[-1].set_color("tab:red")
        lo, hi = (head["mean"] - head["ci95"].fillna(0)).min(), (head["mean"] + head["ci95"].fillna(0)).max()
        pad = 0.05 * (hi - lo + 1e-9) + 1e-3
        ax.set_xlim(lo - pad, hi + pad)
    ax.set(xlabel=f"mean {metric} (± 95% CI over seeds)", title=f"best {len(head)} configurations (red: best)")
    return save_figure(fig, out / "top_performers_analysis.png")


def rung_plot(h: dict, metric: str, out: Path) -> Path:
    """Successive halving: each configuration's metric at each rung it reached; survivors in colour."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    final = set(h["rungs"][-1]["kept"])
    configs = {c for r in h["rungs"] for c in r["metric"]}
    for c in sorted(configs):
        pts = [(r["steps"], r["metric"][c]) for r in h["rungs"] if r["metric"].get(c) is not None]
        if not pts:
            continue
        survivor = c in final
        ax.plot(*zip(*pts), marker="o", lw=2 if survivor else 0.8, color=None if survivor else "0.7",
                alpha=1 if survivor else 0.7, label=c if survivor else None, zorder=3 if survivor else 1)
    ax.set(xlabel="step (rung)", ylabel=f"{metric} (mean over seeds)",
           title=f"successive halving (eta {h['eta']}): {h['share_of_full_grid']:.0%} of the full grid's steps")
    ax.legend(fontsize=8, title="final survivors")
    return save_figure(fig, out / "halving_rungs.png")


def routing_plot(records: list[dict], a: dict, axes: list[str], out: Path) -> Path:
    """Left: the best configuration's per-expert load in each layer over training (its first successful
    seed; one panel per layer, at most 4). Right: MaxVio at the end of training against the study's most
    important axis, one point per configuration (red: dead experts)."""
    best = a["recommendation"].get("best")
    run = next((r for r in records if config_id(r) == best and r["status"] == "ok"
                and r.get("history", {}).get("routing")), None)
    windows = run["history"]["routing"] if run else []
    n_layers = min(4, len(windows[0]["layers"])) if windows else 0
    fig, axs = plt.subplots(1, n_layers + 1, figsize=(3.6 * (n_layers + 1), 3.8), squeeze=False)
    steps = [w["step"] for w in windows]
    for layer in range(n_layers):
        ax = axs[0, layer]
        loads = np.array([w["layers"][layer]["load_fraction"] for w in windows])
        for e in range(loads.shape[1]):
            ax.plot(steps, loads[:, e], lw=1)
        ax.axhline(1 / loads.shape[1], color="0.3", ls="--", lw=0.8)
        ax.set(xlabel="step", ylabel="share of tokens" if layer == 0 else None,
               title=f"{best}: layer {layer} load per expert")
    ax = axs[0, -1]
    rows = pd.DataFrame(a["routing"]["rows"])
    x_axis = next((x for x in [a.get("most_important"), *axes] if x in rows and is_numeric_axis(rows[x])), None)
    xs = rows[x_axis] if x_axis else np.arange(len(rows))
    dead = rows.get("dead_experts", pd.Series(0, index=rows.index)).fillna(0) > 0
    ax.scatter(xs[~dead], rows["maxvio"][~dead], color="tab:blue", label="no dead experts")
    if dead.any():
        ax.scatter(xs[dead], rows["maxvio"][dead], color="tab:red", label="dead experts")
    if x_axis and log_scale(x_axis):
        ax.set_xscale("log")
    ax.set(xlabel=x_axis or "configuration", ylabel="MaxVio (end of training)",
           title="load imbalance per configuration")
    ax.legend(fontsize=7)
    return save_figure(fig, out / "routing.png")


def figure_caption(name: str) -> str:
    return CAPTIONS.get(name, name)


CAPTIONS: dict[str, Any] = {
    "loss_vs_lr.png": "Loss vs learning rate, one curve per value of the most important other axis (mean ± 95% CI "
                      "over seeds; star: each curve's optimum; red x: failed runs).",
    "heatmap.png": "Mean metric over the two most important axes.",
    "validation_curves.png": "Validation loss over steps for every run (red: the best configuration) and its LR "
                             "schedule.",
    "performance_distributions.png": "Distribution of the metrics over all successful runs.",
    "hyperparameter_analysis.png": "The metric per value of each axis (red x: failed runs).",
    "correlation_heatmap.png": "Spearman correlations between numeric axes and metrics.",
    "top_performers_analysis.png": "The best configurations by mean, with 95% CIs.",
    "routing.png": "Routing health: the best configuration's share of tokens per expert in each layer over training "
                   "(dashed: a fair share), and MaxVio at the end of training per configuration (red: dead "
                   "experts).",
    "scaling_law.png": "The optimum at each scale vs training compute, log-log (bootstrap 95% CIs; hollow: not "
                       "bracketed, left out of the fit), the fitted power law with its 95% band, the held-out "
                       "scale's prediction from the smaller ones (orange) and the target run (green, 80% interval).",
    "halving_rungs.png": "Successive halving: each configuration's metric at each rung it reached (grey: pruned).",
}


def scaling_plot(law: dict, out: Path) -> Path:
    """The optimum at each scale against compute (log-log): bootstrap 95% CIs, the fitted law with its 95%
    band, the held-out point with the prediction of the law fitted without it, and the target run."""
    keys = [k for k in ("lr", "batch") if law.get("fits", {}).get(k) is not None]
    fig, axs = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.8), squeeze=False)
    pred = law.get("prediction") or {}
    for ax, key in zip(axs[0], keys):
        fit = law["fits"][key]
        scales = [s for s in law["scales"] if s.get("compute") and s.get(key) and s[key].get("opt")]
        for s in scales:
            o = s[key]
            lo, hi = o["ci"]
            ax.errorbar([s["compute"]], [o["opt"]], yerr=[[o["opt"] - lo], [hi - o["opt"]]], fmt="o" if o["bracketed"]
                        else "s", mfc="tab:blue" if o["bracketed"] else "white", color="tab:blue", capsize=3)
            ax.annotate(s["scale"], (s["compute"], o["opt"]), textcoords="offset points", xytext=(5, 5), fontsize=7)
        xs = [s["compute"] for s in scales] + ([pred["compute"]] if pred.get(key) else [])
        if fit.get("fitted") and xs:
            grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 100)
            ax.plot(grid, fit["coef"] * grid ** fit["exponent"], color="tab:blue",
                    label=f"fit: {fit['coef']:.3g} C^{fit['exponent']:+.3f}")
            if "bootstrap" in fit:
                draws = (np.array(fit["bootstrap"]["log_coef"])[:, None]
                         + np.array(fit["bootstrap"]["exponent"])[:, None] * np.log(grid)[None, :])
                ax.fill_between(grid, *np.exp(np.percentile(draws, [2.5, 97.5], axis=0)), color="tab:blue", alpha=0.15,
                                label="95% band (bootstrap)")
            h = fit.get("holdout")
            if h:
                ax.scatter([h["compute"]], [h["predicted"]], marker="D", color="tab:orange", zorder=5,
                           label=f"held out: predicted from the smaller scales ({h['log_error']:+.2f} in log)")
        if pred.get(key):
            p = pred[key]
            iv = p.get("interval") or [p["value"], p["value"]]
            ax.errorbar([pred["compute"]], [p["value"]], yerr=[[p["value"] - iv[0]], [iv[1] - p["value"]]], fmt="*",
                        ms=14, color="tab:green", capsize=3, label="target (80% interval)")
        ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)",
               ylabel=f"optimal {law.get('lr_axis') if key == 'lr' else law.get('batch_axis')}",
               title=f"{key} optimum vs compute (hollow: not bracketed, left out)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, out / "scaling_law.png")
