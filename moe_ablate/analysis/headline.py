"""The answer a researcher reads in ten seconds: the action in one sentence ("Use muon_lr 0.1; adamw_lr_ratio made
no detectable difference between 0.1 and 0.5."), the evidence in one sentence with a labelled interval and where
its seeds came from, then the caveats. Every number it prints is stored in ``analysis["headline"]``, rounded to what
the noise supports (two significant digits of the interval's half-width), so the report and ``analysis.json``
agree to the digit. The full statistics (``recommendation["text"]``) follow in the report.
"""

from __future__ import annotations

import math
from typing import Any


def _decimals(half_width: float | None) -> int:
    """Decimals that show the interval's half-width to two significant digits (2 to 6)."""
    if not half_width or not math.isfinite(half_width) or half_width <= 0:
        return 4
    return max(2, min(6, 1 - math.floor(math.log10(half_width))))


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _setting(row: dict, axes: list[str]) -> str:
    return ", ".join(f"{a} {_value(row[a])}" for a in axes) if axes else row["config_id"]


def headline(a: dict) -> dict[str, Any]:
    rec, metric, axes = a["recommendation"], a["metric"], a["axes"]
    if rec.get("best") is None:
        return {"action": "Nothing to recommend: no configuration finished.", "evidence": "", "caveats": [],
                "text": "Nothing to recommend: no configuration finished."}
    rows = {c["config_id"]: c for c in a["configurations"]}
    best = rows[rec["best"]]
    comps = rec.get("comparisons") or []
    level = [c["config_id"] for c in comps if c.get("direction") in ("indistinguishable", "cannot tell")]
    near = [best] + [rows[c] for c in level if c in rows]
    free = [x for x in axes if len({str(r[x]) for r in near}) > 1]
    fixed_axes = [x for x in axes if x not in free]
    verdict = rec.get("verdict")
    setting = _setting(best, fixed_axes) if free and fixed_axes else _setting(best, axes)
    if verdict == "better":
        action = f"Use {_setting(best, axes)}: every other configuration tried is worse."
    elif verdict == "single":
        action = f"Use {_setting(best, axes)}, the only configuration to compare."
    elif rec.get("noise_std") is None:
        action = (f"Best so far: {_setting(best, axes)}, but with one run per configuration this study cannot tell "
                  "it from the others; add seeds (--seeds 2) or confirmation (--confirm 2).")
    else:
        word = "practical" if verdict == "indistinguishable" else "detectable"
        if free:
            between = "; ".join(f"{x} made no {word} difference between "
                                f"{' and '.join(_value(v) for v in sorted({r[x] for r in near}, key=str))}"
                                for x in free)
            action = (f"Use {setting}; {between}." if fixed_axes else
                      f"Use {_setting(best, axes)}, the lowest estimate; {between}, so the {len(near)} are as good as "
                      "each other as far as this study can tell.")
        else:
            action = (f"Use {_setting(best, axes)}; {len(level)} other configuration(s) could not be told from it "
                      "(listed below).")
    value, half = rec.get(metric), rec.get("ci95")
    d = _decimals(half)
    out: dict[str, Any] = {"config_id": rec["best"], "verdict": verdict, "value": round(value, d), "n": rec["n"],
                           "decimals": d}
    if half is not None and math.isfinite(half):
        out["ci95_low"], out["ci95_high"] = round(value - half, d), round(value + half, d)
        interval = f", 95% CI {out['ci95_low']:.{d}f} to {out['ci95_high']:.{d}f}"
    else:
        interval = ""
    seeds = (f"{rec['n']} fresh confirmation seeds that did not select it" if rec.get("confirmed") else
             f"{rec['n']} seeds" if rec["n"] > 1 else "one seed")
    evidence = (f"{metric} {out['value']:.{d}f}{interval}, on {seeds}." if interval else
                f"{metric} {out['value']:.{d}f} on one run (no interval without a second seed).")
    caveats = list(rec.get("edge_warnings", []))
    if a.get("n_failed"):
        caveats.append(f"{a['n_failed']} run(s) failed (diverged, out of memory or crashed); they are never "
                       "recommended (see Failed experiments).")
    pw = rec.get("power") or {}
    if verdict == "cannot_tell" and pw.get("detectable_difference") is not None:
        out["detectable_difference"] = float(f"{pw['detectable_difference']:.2g}")
        caveats.append(f"Differences under {out['detectable_difference']:g} {metric} could not be seen (80% power).")
    out.update(action=action, evidence=evidence, caveats=caveats, text=f"{action} {evidence}")
    return out


HELD = ("muon_lr", "adamw_lr_ratio", "momentum", "weight_decay", "grad_clip", "muon_adjust_lr", "aux_loss_weight")


def settings(base: dict, records: list[dict], axes: list[str], data: dict) -> list[tuple[str, str]]:
    """What the answer holds for: model and size, run length, schedule, the hyperparameters held fixed, data and
    seeds. ``base`` is the study's base config (``to_dict``); a setting that is an axis is said to vary."""
    m, t = base["model"], base["train"]
    ok = [r for r in records if r.get("status") == "ok" and r.get("params_total")]
    totals = sorted({r["params_total"] for r in ok})
    actives = sorted({r["params_active"] for r in ok})
    size = (f"{totals[0] / 1e6:.2f} M parameters, {actives[0] / 1e6:.2f} M active per token" if len(totals) == 1
            else f"{totals[0] / 1e6:.2f}-{totals[-1] / 1e6:.2f} M parameters (varies)" if totals else "")
    experts = f", {m['num_experts']} experts top-{m['top_k']}" if m["name"] != "deepseek_mlp" else ""
    layers = f"{m['n_layers']} layer{'s' if m['n_layers'] != 1 else ''}"
    out = [("model", f"{m['name']}: d_model {m['d_model']}, {layers}, {m['n_heads']} heads, d_ff "
                     f"{m['d_ff']}{experts}" + (f"; {size}" if size else ""))]
    steps = sorted({r["config"]["train"]["steps"] for r in records if r.get("config")}) or [t["steps"]]
    tokens = t["batch_size"] * t["seq_len"] * t["grad_accum"]
    out.append(("run", f"{'/'.join(map(str, steps))} steps x batch {t['batch_size']} x sequence {t['seq_len']}"
                       + (f" x {t['grad_accum']} accumulation" if t["grad_accum"] > 1 else "")
                       + f" = {tokens * steps[-1]:,} training tokens per run"))
    warm = f"{t['warmup_steps']} warmup steps" if t["warmup_steps"] else f"warmup {t['warmup_frac']:g} of the steps"
    decay = f" to {t['min_lr_frac']:g} of the peak" if t["schedule"] != "constant" else ""
    out.append(("schedule", f"{t['schedule']}, {warm}{decay}"))
    held = [f"{k} {_value(t.get(k, m.get(k)))}" for k in HELD if k not in axes and (k in t or k in m)]
    out.append(("held fixed", ", ".join(held)))
    for d in data.values():
        out.append(("data", f"{d.get('source')}: {d.get('num_tokens', 0):,} tokens (train {d.get('train_tokens', 0):,}"
                            f" / validation {d.get('val_tokens', 0):,}, disjoint), vocabulary {d.get('vocab_size')}"))
    grid = sorted({r.get("seed") for r in records if r.get("stage", "grid") != "confirm"} - {None})
    conf = sorted({r.get("seed") for r in records if r.get("stage") == "confirm"} - {None})
    out.append(("seeds", f"grid {', '.join(map(str, grid))}" + (f"; confirmation {', '.join(map(str, conf))}"
                                                                  if conf else "")))
    devices = sorted({f"{r.get('device')} {r.get('amp')}" for r in ok})
    if devices:
        out.append(("hardware", ", ".join(devices)))
    return out
