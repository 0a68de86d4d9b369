"""Routing health and compute of MoE studies: what MoE researchers read beside the loss.

Per configuration (means over its successful seeds): MaxVio at the end of training and its peak,
dead experts, router entropy and the aux-loss-free bias norm, from the records' ``routing_*`` fields
(``training.routing_summary``); configurations with dead experts or severe imbalance are named next to
their loss. Compute: whether the configurations were matched in FLOPs per token (active parameters
and attention, ``TransformerLM.flops_per_token``) and, where they were not, each configuration's
validation loss at the training FLOPs every one of them reached (read off its validation curve by
linear interpolation), so that a MoE setting is not credited for compute it spent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..record import config_id

SEVERE_MAXVIO = 1.0  # the busiest expert got more than twice its fair share of the window's tokens
MATCHED = 0.01  # FLOPs per token within 1% count as matched

COLUMNS = ["routing_maxvio", "routing_maxvio_peak", "routing_dead_experts", "routing_entropy", "routing_bias_norm"]


def analyze_routing(records: list[dict], table: pd.DataFrame, axes: list[str], metric: str) -> dict[str, Any] | None:
    ok = [r for r in records if r.get("status") == "ok"]
    if not any(r.get("routing_maxvio") is not None for r in ok):
        return None
    df = pd.DataFrame([{"config_id": config_id(r),
                        **{c: r.get(c) for c in COLUMNS}} for r in ok])
    per = df.groupby("config_id")[[c for c in COLUMNS if df[c].notna().any()]].mean()
    loss = table.set_index("config_id")["mean"]
    rows = []
    for c in table.config_id:
        if c not in per.index:
            continue
        row = {"config_id": c, **{a: table.set_index("config_id").loc[c, a] for a in axes}, metric: loss.get(c),
               **{k.removeprefix("routing_"): v for k, v in per.loc[c].items()}}
        rows.append(row)
    flagged = [r for r in rows if (r.get("dead_experts") or 0) > 0 or (r.get("maxvio") or 0) > SEVERE_MAXVIO]
    return {"rows": rows, "flagged": flagged, "severe_maxvio": SEVERE_MAXVIO, **compute_matching(ok, metric)}


def compute_matching(ok: list[dict], metric: str) -> dict[str, Any]:
    """Whether FLOPs per token were matched, and if not, the loss of each configuration at equal FLOPs."""
    fpt = {config_id(r): r.get("flops_per_token") for r in ok if r.get("flops_per_token")}
    if not fpt:
        return {"matched": None}
    lo, hi = min(fpt.values()), max(fpt.values())
    out: dict[str, Any] = {"matched": hi <= lo * (1 + MATCHED), "flops_per_token_range": [lo, hi]}
    if out["matched"]:
        return out
    budget = min(r["flops"] for r in ok if r.get("flops"))
    at_budget: dict[str, list[float]] = {}
    for r in ok:
        ev = r.get("history", {}).get("eval", [])
        if not ev or not r.get("flops_per_token"):
            continue
        flops = np.array([e["tokens"] * r["flops_per_token"] for e in ev], float)
        losses = np.array([e["loss"] for e in ev], float)
        if flops[0] > budget:  # its first evaluation is already past the budget: no reading
            continue
        at_budget.setdefault(config_id(r), []).append(float(np.interp(budget, flops, losses)))
    rows = sorted(({"config_id": c, "flops_per_token": fpt[c], "val_loss_at_budget": float(np.mean(v)), "n": len(v)}
                   for c, v in at_budget.items()), key=lambda row: row["val_loss_at_budget"])
    out.update(budget_flops=budget, equal_compute=rows)
    return out


def routing_text(r: dict[str, Any], metric: str) -> list[str]:
    """The report's routing section."""
    lines = ["## Routing health (MoE)", "",
             "Per configuration, means over its successful seeds, measured over the training tokens since the "
             "last evaluation: `maxvio` = max expert load / mean load - 1 at the end of training (Wang et al. "
             "2024; 0 = perfectly balanced) and its peak over training, `dead_experts` = experts (summed over "
             "layers) that got under 10% of their fair share, `entropy` = mean router entropy / ln E (1 = "
             "uniform), `bias_norm` = norm of the aux-loss-free router bias.", ""]
    if r["flagged"]:
        lines.append("Configurations with dead experts or severe imbalance (MaxVio > "
                     f"{r['severe_maxvio']:g}): " + "; ".join(
                         f"{f['config_id']} ({metric} {f[metric]:.4f}, MaxVio {f['maxvio']:.2f}, "
                         f"{int(f.get('dead_experts') or 0)} dead)" for f in r["flagged"]) + ".")
    else:
        peaks = [x.get("maxvio_peak") for x in r["rows"] if x.get("maxvio_peak") is not None]
        peak = max(peaks, default=None)
        lines.append(f"No configuration ended training with dead experts or a MaxVio above {r['severe_maxvio']:g}"
                     + (f" (the highest peak during training: {peak:.2f}, in the table)" if peak is not None and
                        peak > r["severe_maxvio"] else "") + ".")
    lines.append("")
    if r.get("matched") is not None:
        lo, hi = r["flops_per_token_range"]
        if r["matched"]:
            lines += [f"Compute: the configurations were matched in active compute ({lo:,.0f} training FLOPs per "
                      "token).", ""]
        else:
            lines += [f"Compute: the configurations were **not** matched in active compute ({lo:,.0f} to {hi:,.0f} "
                      "training FLOPs per token). At equal training compute (the "
                      f"{r['budget_flops']:.3g} FLOPs every configuration reached), read off each validation "
                      "curve:", ""]
    return lines
