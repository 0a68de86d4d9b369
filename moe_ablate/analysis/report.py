"""``report.md``: the answer first, in a few sentences a researcher can act on, then the evidence.
Every number it states is in ``analysis.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .plots import figure_caption
from .routing import routing_text

MAX_ROWS = 20


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if abs(v) < 1e-12:  # a float sum's residue (a std of 1.4e-17 over equal values) is zero
            return "0"
        return f"{v:.4g}"
    if v is None:
        return "n/a"
    return str(v)


def table(rows: list[dict], cols: list[str] | None = None) -> str:
    if not rows:
        return "_none_\n"
    df = pd.DataFrame(rows)
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    return df.map(_fmt).to_markdown(index=False) + "\n"


def _data_lines(stored: dict) -> list[str]:
    out = []
    for d in stored.get("data", {}).values():
        out.append(f"- Data: `{d.get('source')}`, {d.get('num_tokens', 0):,} tokens (train "
                   f"{d.get('train_tokens', 0):,} "
                   f"/ val {d.get('val_tokens', 0):,}, disjoint), tokenizer `{d.get('tokenizer')}` (vocab "
                   f"{d.get('vocab_size')}, sha256 {str(d.get('tokenizer_sha256', ''))[:12]})")
    return out


def render(name: str, title: str, description: str, stored: dict, a: dict, figures: list[Path],
           extra: list[str], in_progress: str | None = None) -> str:
    rec = a["recommendation"]
    lines = [f"# {title}: {name}", ""]
    if description:
        lines += [description, ""]
    if in_progress:
        lines += [f"**In progress: {in_progress}.** This report is refreshed as experiments finish; the answer "
                  "may change.", ""]
    head = a.get("headline") or {"text": a["answer"], "caveats": rec.get("edge_warnings", [])}
    lines += ["## Answer", "", head["text"], ""]
    lines += [f"- **Caveat:** {w}" for w in head.get("caveats", [])]
    conf = a.get("confirmation") or {}
    if conf.get("runs"):
        share = 100 * conf["seconds"] / conf["grid_seconds"] if conf.get("grid_seconds") else float("nan")
        lines.append(f"- Confirmation stage: {conf['runs']} extra runs of {', '.join(conf['configurations'])} "
                     f"({conf['seconds']:.1f} s of training, {share:.0f}% on top of the grid's "
                     f"{conf['grid_seconds']:.1f} s).")
    if a.get("settings"):
        lines += ["", "## What this holds for", "", *[f"- **{k}**: {v}" for k, v in a["settings"]]]
    if head["text"] != a["answer"]:
        lines += ["", "## The statistics behind it", "", a["answer"]]
    shown = {f.name: f for f in figures}

    def fig(*names: str) -> list[str]:
        """Figures next to the section they support, each with the line that says what to read from it."""
        out = []
        for n in names:
            if shown.pop(n, None) is not None:
                out += [f"![{n[:-4]}]({n})", "", f"_{figure_caption(n)}_", ""]
        return out

    lines += ["", *extra, *_evidence(stored, a), *fig("validation_curves.png"), *_configurations(a),
              *fig("top_performers_analysis.png", "loss_vs_lr.png", "heatmap.png"), *_routing_and_compute(a),
              *fig("routing.png", "halving_rungs.png"), *_lr_sections(a), *_effects_and_tail(a),
              *fig("conditional_effects.png")]
    if shown:
        lines += ["## More figures", "", *fig(*shown)]
    return "\n".join(lines) + "\n"


def _evidence(stored: dict, a: dict) -> list[str]:
    """Run counts, metric, corrections, noise, data and code: what the numbers rest on."""
    metric, rec = a["metric"], a["recommendation"]
    lines = []
    lines += ["## Evidence", "",
              f"- Experiments: {a['n_ok']} ok, {a['n_failed']} failed, {a['n_experiments']} recorded of "
              f"{a.get('n_expected', a['n_experiments'])} planned, in {a['n_configurations']} configurations",
              f"- Metric: `{metric}` on held-out validation tokens (lower is better); configurations are ranked by "
              "their seed-adjusted mean (least-squares mean of the model `metric ~ configuration + seed`: same seed = "
              "same batches and initial weights)",
              f"- Many comparisons: {rec.get('correction', 'none')} over the {rec.get('family_size', 'n/a')} "
              f"configurations compared, familywise level {rec.get('alpha', 0.05)}; every difference, interval and "
              "verdict comes from the same model",
]
    if rec.get("failure_rule"):
        lines.append(f"- Failures: {rec['failure_rule']}; pruned configurations (successive halving) are listed at "
                     "the rung they reached and are not failures")
    if rec.get("confirmed"):
        lines.append(f"- Recommended among the {len(rec['confirmed'])} confirmed configurations, estimated on their "
                     "confirmation seeds only (the grid seed that selected them is left out: no winner's curse)")
    noise = rec.get("noise_std")
    lines.append(f"- Run-to-run noise (pooled std of one run over seeds): {noise:.4f} ({rec['noise_dof']} degrees of "
                 "freedom)" if noise is not None else "- Run-to-run noise: unknown (no configuration ran twice)")
    lines += _data_lines(stored)
    epochs = [c.get("epochs") for c in a["configurations"] if c.get("epochs") == c.get("epochs") and c.get("epochs")]
    if epochs and max(epochs) > 1:
        lines.append(f"- **Warning:** runs read their training data up to {max(epochs):.1f} times (epochs column): "
                     "losses on repeated data flatter the model; use more data or fewer steps")
    if stored.get("git_commit"):
        lines.append(f"- Code: commit `{stored['git_commit'][:10]}`")
    return lines


def _configurations(a: dict) -> list[str]:
    """The configuration table and the comparisons with the best."""
    metric, rec, lines = a["metric"], a["recommendation"], []
    axes = a["axes"]
    configs = ordered_configurations(a)
    lines += ["", "## Configurations (seeds folded in)", "",
              f"`mean` is the seed-adjusted mean of `{metric}` (the estimate every comparison uses), `raw_mean` the "
              "plain mean of the successful seeds with its std and 95% confidence interval (Student t); "
              "`failure_rate` = failed seeds / seeds tried; pruned configurations show the step and metric they "
              "reached. The recommended configuration first, then by `mean`" + (
                  f"; the first {MAX_ROWS} of {len(configs)}" if len(configs) > MAX_ROWS else "") + ".", "",
              *_how_decided(a, configs),
              table(configs[:MAX_ROWS], ["", "config_id", *axes, "n", "mean", "raw_mean", "std", "ci95", "n_failed",
                                         "failure_rate", "n_pruned", "pruned_at_step", "rung_metric", "epochs"])]
    if rec.get("comparisons"):
        known = rec.get("noise_std") is not None
        lines += ["## Is the best really better?", "",
                  f"Difference of each configuration from the best ({rec['best']}) in the model's estimates; positive "
                  f"= worse. Intervals are simultaneous 95% intervals and `p` is adjusted ({rec.get('correction')} "
                  f"over {rec.get('family_size')} configurations); `p_unadjusted` is the single comparison's.", "",
                  table([{"config_id": c["config_id"], "difference": c["diff"], "ci95_low": c["ci_low"],
                          "ci95_high": c["ci_high"], "p": c["p"], "p_unadjusted": c.get("p_unadjusted"),
                          "verdict": c.get("direction")} for c in rec["comparisons"][:MAX_ROWS]]),
                  (f"Near-optimal set (not significantly worse than the best): {', '.join(rec['near_optimal'])}."
                   if known else "Near-optimal set: cannot tell (no configuration ran twice, so the noise is "
                                 "unknown)."), ""]
    return lines


def ordered_configurations(a: dict) -> list[dict]:
    """The configurations as every table and figure shows them: the recommended one first (marked), then by the
    seed-adjusted mean; ``seeds`` says which runs each number pools."""
    best = a["recommendation"].get("best")
    rows = [{"": "recommended" if c["config_id"] == best else "", **c} for c in a["configurations"]]
    return sorted(rows, key=lambda c: c["config_id"] != best)


def _how_decided(a: dict, configs: list[dict]) -> list[str]:
    """When confirmation decided, why a configuration may read lower in the table than the recommended one."""
    rec, metric = a["recommendation"], a["metric"]
    if not rec.get("confirmed") or rec.get("best") is None:
        return []
    lower = [c for c in configs[1:] if c.get("mean") is not None and c["mean"] < configs[0]["mean"]]
    text = (f"How this was decided: {rec['best']} was chosen on the grid seed, then recommended among the "
            f"{len(rec['confirmed'])} confirmed configurations on their confirmation seeds alone ({metric} "
            f"{rec[metric]:.4g}; the grid seed that selected it is left out, so it carries no winner's curse). The "
            "table's `mean` pools every seed, grid and confirmation")
    if lower:
        text += (f", so {', '.join(c['config_id'] for c in lower[:3])} can read lower here without being "
                 "better on the fresh seeds")
    return [text + ".", ""]


def _routing_and_compute(a: dict) -> list[str]:
    """MoE routing health, successive halving and WSD branching, when the study has them."""
    metric, axes, lines = a["metric"], a["axes"], []
    rt = a.get("routing")
    if rt:
        lines += routing_text(rt, metric)
        if rt.get("equal_compute"):
            lines.append(table(rt["equal_compute"], ["config_id", "flops_per_token", "val_loss_at_budget", "n"]))
        lines.append(table(rt["rows"][:MAX_ROWS], ["config_id", *axes, metric, "maxvio", "maxvio_peak",
                                                   "dead_experts", "entropy", "bias_norm"]))
    h = a.get("halving")
    if h:
        lines += ["## Successive halving", "",
                  f"eta {h['eta']}: {h['trained_steps']:,} training steps against {h['full_grid_steps']:,} for the "
                  f"full "
                  f"grid ({100 * h['share_of_full_grid']:.0f}%)" + (", survivors rerun from step 0 (--halving-restart)"
                                                                   if h["restart"] else
                                                                   f"; peak checkpoint disk "
                                                                   f"{h['peak_checkpoint_bytes'] / 2**20:.1f} MiB")
                  + ". Pruned runs are never recommended.", "",
                  table([{"rung": r["rung"], "step": r["steps"], "configurations": r["configurations"],
                          "kept": ", ".join(r["kept"]),
                          "rank corr. with final (survivors only)": r.get("rank_correlation_with_final")}
                         for r in h["rungs"]])]
        lines += [f"- **Warning:** {w}" for w in h.get("warnings", [])] + [""]
    b = a.get("branching")
    if b:
        lines += ["## Token horizons from one trunk (WSD)", "",
                  f"Horizons that differ only in `steps` share a warmup-stable trunk; each shorter horizon branches "
                  f"off "
                  f"it where its decay starts and equals a dedicated run of its length. {b['trained_steps']:,} "
                  f"training "
                  f"steps against {b['separate_steps']:,} for separate runs ({100 * b['saved_share']:.0f}% saved).", "",
                  table([{"trunk": f["trunk"], "horizons": len(f["horizons"]), "branched": len(f["branched"]),
                          "branch points": ", ".join(str(p) for p in f["branch_points"].values()),
                          "steps trained": f["trained_steps"], "separate runs": f["separate_steps"]}
                         for f in b["families"][:MAX_ROWS]])]
    return lines


def _lr_sections(a: dict) -> list[str]:
    """Whether the optimal LR moves (with width, with the horizon) and how forgiving the LR is."""
    lines = []
    for tr in (a.get("lr_transfer"), a.get("lr_by_horizon")):
        if not tr or tr.get("superseded_by"):  # a scaling study answers it with its law
            continue
        lines += [f"## Does the optimal {tr['lr_axis']} move with {tr['axis']}?", "",
                  tr["text"][0].upper() + tr["text"][1:]
                  + ".", "", table([{tr["axis"]: r[tr["axis"]], "best LR": r.get("best_lr"), "mean": r.get("mean"),
                                     "ci95": r.get("ci95"), "n": r.get("n"),
                                     "near-optimal LRs": ", ".join(f"{x:g}" for x in r.get("near_optimal_lrs", [])),
                                     "bracketed": r.get("bracketed")} for r in tr["rows"]])]
    sens = a.get("lr_sensitivity")
    if sens:
        pruned = (f" {sens['left_out_pruned']} configuration(s) pruned by successive halving have no final loss "
                  "and are left out." if sens.get("left_out_pruned") else "")
        def num(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        def ci(c: list | None) -> str:
            return "n/a" if not c else f"[{c[0]:.4f}, {c[1]:.4f}]"

        n_lrs = len({c.get(sens["axis"]) for c in a["configurations"]})
        caveat = (f" **Caveat:** only {n_lrs} {sens['axis']} values were tried: the sensitivity rests on "
                  "them alone and is a rough number." if n_lrs < 3 else "")
        lines += ["## Learning-rate sensitivity", "",
                  f"Loss above the best, averaged over the {sens['axis']} values tried (Wortsman et al. 2023; each "
                  f"failed seed counts at {sens['cap']:.3f}, the loss of a uniform prediction, within its "
                  f"configuration's mean). Lower = more forgiving. Overall: {sens['overall']:.4f}, 95% CI "
                  f"{ci(sens.get('overall_ci95'))} (bias-corrected: on a nearly flat curve it sits below the plug-in); "
                  f"cross-fitted {num(sens.get('overall_corrected'))} (the loss "
                  "above the LR the other seeds chose: zero on a flat curve, where the plug-in reads above zero; "
                  f"n/a where the LRs of a setting share fewer than 2 seeds). {sens.get('method', '')}.{pruned}"
                  f"{caveat}", ""]
        for axis, rows in sens["per_axis"].items():
            order = sens.get("order", {}).get(axis)
            lines += [f"### per {axis}", "", table([{"value": r["value"], "sensitivity": r["sensitivity"],
                                                     "95% CI": ci(r.get("ci95")),
                                                     "cross-fitted": num(r.get("corrected"))}
                                                    for r in rows], ["value", "sensitivity", "95% CI", "cross-fitted"])]
            if order:
                lines += ["", order["text"] + "."]
    return lines


def _effects_and_tail(a: dict) -> list[str]:
    """Per-axis effects, importance, summary statistics, failures and figures."""
    metric, lines = a["metric"], []
    if a["effects"]:
        lines += ["## Effect of each hyperparameter", "",
                  f"Mean `{metric}` per value, pooled over the other axes and seeds of the configurations that "
                  "reached the final metric (pruned ones are left out; so it mixes the other axes' effects, the "
                  "configuration table above does not); ±95% CI.", ""]
        for axis, rows in a["effects"].items():
            lines += [f"### {axis}", "", table(rows, ["value", "mean", "ci95", "std", "n"])]
    if a["importance"]:
        lines += ["## Which hyperparameter matters most", "",
                  f"Share of the variance of the metric explained by each term ({a.get('importance_method')}; "
                  "`a:b` is an interaction: the effect of a depends on b):", "",
                  table([{"term": k, "variance explained": v} for k, v in a["importance"].items()])]
        if a.get("conditional_effects"):
            lines += ["### Conditional effects (the other axes at the recommended values)", ""]
            for axis, rows in a["conditional_effects"].items():
                lines += [f"`{axis}`: " + ", ".join(f"{r['value']} → {r['mean']:.4f} (n={r['n']})" for r in rows), ""]
    if a["summary"]:
        lines += ["## Summary statistics (successful runs)", "",
                  table([{"metric": m, **v} for m, v in a["summary"].items()], ["metric", "mean", "std", "min", "max"])]
    if a["failures"]:
        lines += ["## Failed experiments (never recommended)", "", table(a["failures"])]
    if a.get("skipped_files"):
        lines += ["Skipped unreadable files: " + ", ".join(a["skipped_files"]), ""]
    return lines

