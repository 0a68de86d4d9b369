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
    best = a["recommendation"].get("best")
    if len(axes) >= 2 and not ok.empty:
        mains = [k for k in a["importance"] if ":" not in k]
        figs.append(heatmap(ok, (mains + [x for x in axes if x not in mains])[:2], metric, out,
                            a["recommendation"].get("best_config")))
    if any(r.get("history", {}).get("eval") for r in records):
        figs.append(validation_curves(records, best, out))
    if a.get("conditional_effects"):
        figs.append(conditional_effects_plot(a["conditional_effects"], metric, best, out))
    if not table.empty and (table.n > 0).any():
        figs.append(top_performers(table, metric, out, best))
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
    chosen = sl[sl.config_id == rec.get("best")]
    if not chosen.empty:
        ax.scatter(chosen[lr_axis], chosen["mean"], s=260, facecolors="none", edgecolors="tab:red", linewidths=2.5,
                   zorder=7, label=f"recommended ({rec['best']})")
    if (table.n == 0).any():
        ax.scatter([], [], label="failed / diverged", **FAILED)
    ax.set_xscale("log")
    held = ", ".join(f"{x}={best[x]}" for x in fixed)
    ax.set(xlabel=lr_axis, ylabel=f"{metric} (mean ± 95% CI over seeds)",
           title=f"{metric} vs {lr_axis}" + (f" per {second}" if second else "") + (f"\n({held})" if held else ""))
    ax.legend(fontsize=8)
    return save_figure(fig, out / "loss_vs_lr.png")


def heatmap(ok: pd.DataFrame, pair: list[str], metric: str, out: Path, best: dict | None = None) -> Path:
    """Mean metric over the two most important axes (averaged over the other axes and seeds); the recommended
    configuration's cell outlined in red."""
    from matplotlib.patches import Rectangle

    x, y = pair
    pivot = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    pivot = pivot.reindex(index=sorted_values(ok[y]), columns=sorted_values(ok[x]))
    fig, ax = plt.subplots(figsize=(1.2 * len(pivot.columns) + 3, 0.6 * len(pivot.index) + 2.5))
    sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis_r", ax=ax, cbar_kws={"label": f"mean {metric}"})
    if best and x in best and y in best:
        cols, rows = [str(v) for v in pivot.columns], [str(v) for v in pivot.index]
        if str(best[x]) in cols and str(best[y]) in rows:
            ax.add_patch(Rectangle((cols.index(str(best[x])), rows.index(str(best[y]))), 1, 1, fill=False,
                                   edgecolor="tab:red", lw=3, label="recommended"))
    ax.set_title(f"mean {metric} by {x} and {y} (red: recommended)")
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
    ax.plot([], [], color="tab:red", lw=2.2, label=f"recommended ({best})")
    ax.plot([], [], color="0.6", lw=0.8, label="other runs (dotted: failed)")
    ax.set(xlabel="step", ylabel="validation loss", title="validation loss over training, every run")
    ax.legend(fontsize=8)
    shown = [r for r in records if config_id(r) == best] or records
    tr = shown[0].get("history", {}).get("train", [])
    ax2.plot([t["step"] for t in tr], [t["lr"] for t in tr], color="tab:blue")
    ax2.set(xlabel="step", ylabel="learning rate", title="LR schedule of the recommended configuration")
    return save_figure(fig, out / "validation_curves.png")


def conditional_effects_plot(effects: dict[str, list[dict]], metric: str, best: str | None, out: Path) -> Path:
    """Each axis's effect with the other axes at the recommended values (not pooled over them): one panel per
    axis, the recommended configuration in red."""
    n = len(effects)
    fig, axs = plt.subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False)
    for ax, (axis, rows) in zip(axs[0], effects.items()):
        labels = [str(r["value"]) for r in rows]
        ax.plot(labels, [r["mean"] for r in rows], marker="o", color="0.4")
        for i, r in enumerate(rows):
            if r["config_id"] == best:
                ax.scatter([labels[i]], [r["mean"]], s=90, color="tab:red", zorder=5, label="recommended")
        ax.set(xlabel=axis, ylabel=f"{metric} (seed-adjusted mean)", title=f"{axis}, others at the recommended")
    return save_figure(fig, out / "conditional_effects.png")


def top_performers(table: pd.DataFrame, metric: str, out: Path, best: str | None = None, k: int = 12) -> Path:
    """The configurations as the table orders them (the recommended first, in red, then by mean): each a dot
    with its 95% CI over seeds, on an axis that is not cut to exaggerate the differences' look."""
    done = table[table.n > 0]
    order = pd.concat([done[done.config_id == best], done[done.config_id != best]]).head(k).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.8))
    colors = ["tab:red" if c == best else "0.35" for c in order.config_id]
    ax.errorbar(order["mean"], order.config_id, xerr=order["ci95"].fillna(0), fmt="none", ecolor="0.6", capsize=3)
    ax.scatter(order["mean"], order.config_id, c=colors, s=50, zorder=3)
    ax.set(xlabel=f"seed-adjusted mean {metric} (± 95% CI over seeds; none with one seed)",
           title=f"{len(order)} configurations, the recommended first (red)")
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
    # against the axis under study: an expert-count or balance axis when the study has one, else the most important
    routing_first = [x for x in ROUTING_AXES if x in axes]
    x_axis = next((x for x in [*routing_first, a.get("most_important"), *axes]
                   if x in rows and is_numeric_axis(rows[x])), None)
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


ROUTING_AXES = ("num_experts", "top_k", "active_d_ff", "aux_loss_weight", "router_z_loss_weight", "bias_update_rate",
                "n_shared_experts")


def figure_caption(name: str) -> str:
    return CAPTIONS.get(name, name)


CAPTIONS: dict[str, Any] = {
    "loss_vs_lr.png": "Loss vs learning rate, one curve per value of the most important other axis (mean ± 95% CI "
                      "over seeds; star: each curve's optimum; red ring: the recommended configuration; red x: "
                      "failed runs): read whether the optimum is inside the range.",
    "heatmap.png": "Mean metric over the two most important axes, averaged over the others (red: the "
                   "recommended configuration's cell): read where the low region lies.",
    "validation_curves.png": "Validation loss over steps for every run (red: the recommended configuration) and "
                             "its LR schedule: read whether the runs had converged.",
    "conditional_effects.png": "Each axis's effect with the other axes at the recommended values (red: the "
                               "recommended configuration): read how far the metric moves along each axis.",
    "top_performers_analysis.png": "The configurations, the recommended first (red), each with its 95% CI over "
                                   "seeds: read whether the intervals overlap.",
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
        one_axis = len(law.get("scale_axes") or []) == 1 and all("=" in s["scale"] for s in scales)
        for i, s in enumerate(scales):
            o = s[key]
            lo, hi = o["ci"]
            ax.errorbar([s["compute"]], [o["opt"]], yerr=[[o["opt"] - lo], [hi - o["opt"]]], fmt="o" if o["bracketed"]
                        else "s", mfc="tab:blue" if o["bracketed"] else "white", color="tab:blue", capsize=3)
            # the value alone when the ladder has one axis (named in the legend's title), alternately above and
            # below: neighbouring scales a small factor apart in compute do not overprint
            ax.annotate(s["scale"].split("=", 1)[1] if one_axis else s["scale"], (s["compute"], o["opt"]),
                        textcoords="offset points", fontsize=7, xytext=(5, 5) if i % 2 == 0 else (5, -11))
        xs = [s["compute"] for s in scales] + ([pred["compute"]] if pred.get(key) else []) + (
            [law["validation"]["compute"]] if key == "lr" and (law.get("validation") or {}).get("compute") else [])
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
        v = law.get("validation") or {}
        if key == "lr" and (v.get("measured") or {}).get("bracketed"):  # the unseen scale: measured, not fitted
            m = v["measured"]
            ax.errorbar([v["compute"]], [m["opt"]], yerr=[[m["opt"] - m["ci"][0]], [m["ci"][1] - m["opt"]]], fmt="P",
                        ms=9, color="tab:red", capsize=3, zorder=6, label=f"validation {v['scale']}: measured (95% CI)")
            if v.get("reuse"):
                ax.scatter([v["compute"]], [v["reuse"]["predicted"]], marker="x", color="tab:gray", zorder=6,
                           label="validation: reuse of the largest rung's optimum")
        if pred.get(key):
            p = pred[key]
            iv = p.get("interval") or [p["value"], p["value"]]
            ax.errorbar([pred["compute"]], [p["value"]], yerr=[[p["value"] - iv[0]], [iv[1] - p["value"]]], fmt="*",
                        ms=14, color="tab:green", capsize=3, label="target (80% interval)")
        ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)",
               ylabel=f"optimal {law.get('lr_axis') if key == 'lr' else law.get('batch_axis')}",
               title=f"{key} optimum vs compute (hollow: not bracketed, left out)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title=f"points labelled by {law['scale_axes'][0]}" if one_axis else None,
                      title_fontsize=7)
    return save_figure(fig, out / "scaling_law.png")
