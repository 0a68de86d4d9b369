"""The study plots (matplotlib Agg + seaborn). Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def performance_distributions(ok: pd.DataFrame, out: Path) -> Path:
    metrics = [m for m in ("val_loss", "val_accuracy", "val_perplexity", "train_time_s") if ok[m].notna().any()]
    fig, axs = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axs[0], metrics):
        sns.histplot(ok[m].dropna(), ax=ax, bins=min(20, max(3, len(ok))), color="tab:blue")
        ax.axvline(ok[m].mean(), color="k", ls="--", lw=1, label="mean")
        ax.set_title(m)
        ax.legend()
    fig.suptitle(f"Distribution over {len(ok)} successful experiments")
    return save_figure(fig, out / "performance_distributions.png")


def hyperparameter_analysis(ok: pd.DataFrame, axes: list[str], metric: str, out: Path) -> Path:
    n = max(1, len(axes))
    fig, axs = plt.subplots(1, n, figsize=(4 * n, 3.6), squeeze=False)
    for ax, a in zip(axs[0], axes):
        order = sorted(ok[a].unique())
        sns.boxplot(data=ok, x=a, y=metric, order=order, ax=ax, color="tab:cyan")
        sns.stripplot(data=ok, x=a, y=metric, order=order, ax=ax, color="k", size=3)
        ax.set_title(f"{metric} by {a}")
    if not axes:
        axs[0][0].text(0.5, 0.5, "no varied hyperparameters", ha="center")
    return save_figure(fig, out / "hyperparameter_analysis.png")


def correlation_heatmap(correlations: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    if correlations:
        corr = pd.DataFrame(correlations)
        sns.heatmap(corr, annot=True, fmt=".2f", cmap="coolwarm", vmin=-1, vmax=1, ax=ax, square=True)
        ax.set_title("Spearman rank correlation (LRs on log scale)")
    else:
        ax.text(0.5, 0.5, "too few successful experiments for correlations", ha="center")
        ax.axis("off")
    return save_figure(fig, out / "correlation_heatmap.png")


def top_performers(ok: pd.DataFrame, axes: list[str], metric: str, out: Path, k: int = 5) -> Path:
    ranked = ok.sort_values(metric).reset_index(drop=True)
    top_ids = set(ranked.experiment_id.head(k))
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    ax = axs[0]
    x = axes[0] if axes else None
    if x is not None:
        colors = np.where(ok.experiment_id.isin(top_ids), "tab:red", "tab:gray")
        ax.scatter(ok[x], ok[metric], c=colors, alpha=0.8)
        if "lr" in x:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {x} (red: top {k})")
    head = ranked.head(min(10, len(ranked)))
    axs[1].barh(head.experiment_id[::-1], head[metric][::-1],
                color=["tab:red" if i in top_ids else "tab:gray" for i in head.experiment_id[::-1]])
    axs[1].set_xlabel(metric)
    axs[1].set_title("best experiments")
    lo, hi = head[metric].min(), head[metric].max()
    axs[1].set_xlim(lo - 0.05 * (hi - lo + 1e-9) - 1e-3, hi + 0.05 * (hi - lo + 1e-9) + 1e-3)
    return save_figure(fig, out / "top_performers_analysis.png")
