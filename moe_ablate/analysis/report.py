"""Turn a study folder into final_results.json, analysis.json, comprehensive_report.json, plots and
report.md. Reads experiments/*.json; never modifies them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..utils import atomic_write_json, atomic_write_text
from . import plots
from .stats import analyze, load_records, to_frame


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.4g}"
    return str(v)


def _table(rows: list[dict], cols: list[str] | None = None) -> str:
    if not rows:
        return "_none_\n"
    df = pd.DataFrame(rows)
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    return df.map(_fmt).to_markdown(index=False) + "\n"


def analyze_study(study_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    study_dir = Path(study_dir)
    records, bad, cfg = load_records(study_dir)
    for name in bad:
        log(f"skipped corrupt experiment file: {name}")
    metric = cfg.get("identity", {}).get("study", {}).get("metric", "val_loss")
    result = analyze(records, metric)
    result["skipped_files"] = bad
    df, axes = to_frame(records)
    ok = df[(df.status == "ok") & df[metric].notna()]

    expected = len(cfg.get("identity", {}).get("experiments", [])) or len(records)
    result["n_expected"] = expected
    final = {"study": cfg.get("identity", {}).get("study"), "n_expected": expected,
             "results": [{k: v for k, v in r.items() if k != "history"} for r in records]}
    atomic_write_json(study_dir / "final_results.json", final)
    atomic_write_json(study_dir / "analysis.json", result)

    figures = []
    if not ok.empty:
        figures = [plots.performance_distributions(ok, study_dir),
                   plots.hyperparameter_analysis(ok, axes, metric, study_dir),
                   plots.correlation_heatmap(result["correlations"], study_dir),
                   plots.top_performers(ok, axes, metric, study_dir)]
    comprehensive = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": cfg, "analysis": result,
                     "experiments": df.to_dict("records"), "figures": [f.name for f in figures]}
    atomic_write_json(study_dir / "comprehensive_report.json", comprehensive)
    atomic_write_text(study_dir / "report.md", render_markdown(study_dir.name, cfg, result, figures))
    return result


def render_markdown(name: str, cfg: dict, a: dict, figures: list[Path]) -> str:
    metric, rec = a["metric"], a["recommendation"]
    study = cfg.get("identity", {}).get("study", {})
    data = cfg.get("data", {})
    lines = [f"# Study report: {name}", ""]
    if study.get("description"):
        lines += [study["description"], ""]
    lines += [
        f"- Experiments: {a['n_ok']} ok, {a['n_failed']} failed, {a['n_experiments']} recorded "
        f"of {a.get('n_expected', a['n_experiments'])} planned",
        f"- Metric: `{metric}` on held-out validation tokens (lower is better)",
    ]
    if data:
        lines.append(f"- Data: `{data.get('source')}`, {data.get('num_tokens', 0):,} tokens "
                     f"(train {data.get('train_tokens', 0):,} / val {data.get('val_tokens', 0):,}, disjoint), "
                     f"tokenizer `{data.get('tokenizer')}` (vocab {data.get('vocab_size')}, "
                     f"sha256 {str(data.get('tokenizer_sha256', ''))[:12]})")
    if cfg.get("git_commit"):
        lines.append(f"- Code: commit `{cfg['git_commit'][:10]}`")
    lines += ["", "## Recommendation", "", rec.get("text", "")]
    for w in rec.get("edge_warnings", []):
        lines.append(f"- **Warning:** {w}")
    if a.get("most_important"):
        lines += ["", f"Most influential hyperparameter: **{a['most_important']}** "
                      f"({100 * a['importance'][a['most_important']]:.0f}% of the variance of `{metric}`)."]
    lines += ["", "## Summary statistics (successful experiments)", "",
              _table([{"metric": m, **v} for m, v in a["summary"].items()], ["metric", "mean", "std", "min", "max"]),
              "## Top performers", "", _table(a["top"]), "## Bottom performers", "", _table(a["bottom"]),
              "## Effect of each hyperparameter", "",
              f"Mean `{metric}` per value, averaged over the other axes and seeds; ±95% confidence interval "
              "(Student t).", ""]
    for axis, rows in a["effects"].items():
        lines += [f"### {axis}", "", _table(rows, ["value", "mean", "ci95", "std", "n"])]
    if a["importance"]:
        lines += ["## Which hyperparameter matters most", "",
                  "Share of the variance of the metric explained by each axis alone (eta squared):", "",
                  _table([{"hyperparameter": k, "variance explained": v} for k, v in a["importance"].items()])]
    if a["failures"]:
        lines += ["## Failed experiments (never recommended)", "", _table(a["failures"])]
    if a.get("skipped_files"):
        lines += ["Skipped unreadable files: " + ", ".join(a["skipped_files"]), ""]
    if figures:
        lines += ["## Plots", ""]
        for f in figures:
            lines += [f"![{f.stem}]({f.name})", ""]
    return "\n".join(lines) + "\n"
