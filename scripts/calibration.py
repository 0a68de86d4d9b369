"""Does the analysis keep its promises? Simulate many studies whose truth is known and run each through
the same code the reports use (``moe_ablate.analysis.ranking.recommend``), then count.

A run's metric is  truth[configuration] + seed effect (shared by every configuration: same seed = same
batches and initial weights) + run noise,  with sd 1 for the run noise and ``--seed-sd`` for the seed
effect. Scenarios (each ``--studies`` times):

  null-K         K equal configurations x S seeds (K = 30, and 270 on 10 studies): every "significantly worse" is
                 a false positive
  alt-2sd        30 configurations, one better by 2 run-noise sd: power, and is the recommended one the best?
  unequal        30 equal configurations, seeds dropped at random (unequal seed sets): false positives and
                 backwards verdicts
  failures       30 configurations; some diverge on a seed, and the lucky survivor is not recommended
  confirmation   30 configurations whose truths differ a little (sd 0.5) with one grid seed, then a confirmation stage
  of K seeds for
                 the top 3 as the pipeline picks them: coverage of the reported 95% CI of the recommended one
  uneven         6 or 12 equal configurations, one at 7x or 10x the run noise (as near divergence): familywise
                 false alarms, simultaneous coverage, and how often the noisy one is called better than all
  power          6 configurations x 5 seeds, one quiet configuration 2 sd better, with and without a 7x-noise one
  crash          the 3 confirmed configurations all crashed (error) on one confirmation seed: is the answer
                 still one of them?
  partial div.   a configuration 3 sd better diverged on 1 of 4 seeds: is it called lower, never "indistinguishable"?
  low power      a 0.5 sd gap, 10 seeds: the verdicts, and the smallest difference the study says it could see
  interaction    LR x weight decay, 3 x 3 x 3 seeds: an interaction named when planted (power) and when not
                 (false alarm), through the two-way ANOVA the answer uses

Printed per scenario: the per-comparison and familywise false-positive rates (null), power and how often
the recommendation is truly best (alternative), CI coverage (confirmation, uneven), backwards verdicts (any: a
comparison whose printed difference points the other way from its verdict, or a difference outside its own
interval) and contradicting sentences ("not significantly" beside an interval that excludes zero,
"indistinguishable" with an interval wider than the practical tolerance). With ``--holm`` it also shows what
Holm over "best vs each" would have given, the reason the analysis uses Tukey-Kramer instead.

    python scripts/calibration.py              # about 90 s on 2 CPU cores (100 studies per scenario)
    python scripts/calibration.py --full       # 500 per scenario (100 of 270 configurations): about 10 minutes
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from moe_ablate.analysis import ranking

ALPHA = ranking.ALPHA


def frame(truth: np.ndarray, seeds: list[int], rng: np.random.Generator, seed_sd: float, stage: str = "grid",
          seed_effects: dict[int, float] | None = None, present=None) -> pd.DataFrame:
    """Runs of every configuration on ``seeds`` (``present[c, s]`` False drops a run)."""
    seed_effects = seed_effects if seed_effects is not None else {}
    for s in seeds:
        seed_effects.setdefault(s, rng.normal(0, seed_sd))
    rows = []
    for c, mu in enumerate(truth):
        for j, s in enumerate(seeds):
            if present is not None and not present[c, j]:
                continue
            rows.append({"experiment_id": f"c{c:03d}_s{s}", "config_id": f"c{c:03d}", "seed": s, "stage": stage,
                         "status": "ok", "val_loss": mu + seed_effects[s] + rng.normal(0, 1.0), "pruned_at_step": None})
    return pd.DataFrame(rows)


def backwards(rec: dict, table: pd.DataFrame | None = None) -> bool:
    """A verdict that points the other way from its own numbers."""
    for c in rec["comparisons"]:
        if c["direction"] == "worse" and not c["diff"] > 0:
            return True
        if c["direction"] == "better" and not c["diff"] < 0:
            return True
        if c["ci_low"] is not None and not (c["ci_low"] <= c["diff"] <= c["ci_high"]):
            return True
    return False


def holm_rejections(df: pd.DataFrame) -> int:
    """What Holm over "best vs each" (unadjusted model p-values) would reject."""
    rec = ranking.recommend(df, [], "val_loss", p_values=False)
    p = [c["p_unadjusted"] for c in rec["comparisons"] if c["p_unadjusted"] is not None]
    return int(multipletests(p, alpha=ALPHA, method="holm")[0].sum()) if p else 0


def null(k: int, seeds: int, studies: int, rng, seed_sd: float, holm: bool) -> dict:
    fp = fw = comps = back = holm_fw = 0
    for _ in range(studies):
        df = frame(np.zeros(k), list(range(seeds)), rng, seed_sd)
        rec = ranking.recommend(df, [], "val_loss", p_values=False)
        worse = sum(c["direction"] == "worse" for c in rec["comparisons"])
        fp, comps, fw = fp + worse, comps + len(rec["comparisons"]), fw + (worse > 0)
        back += backwards(rec)
        if holm:
            holm_fw += holm_rejections(df) > 0
    out = {"per_comparison_fp": fp / comps, "familywise_fp": fw / studies, "backwards": back}
    if holm:
        out["holm_familywise_fp"] = holm_fw / studies
    return out


def alternative(k: int, seeds: int, delta: float, studies: int, rng, seed_sd: float) -> dict:
    found = truly_best = back = hits = pairs = 0
    for _ in range(studies):
        truth = np.zeros(k)
        truth[0] = -delta
        rec = ranking.recommend(frame(truth, list(range(seeds)), rng, seed_sd), [], "val_loss", p_values=False)
        truly_best += rec["best"] == "c000"
        found += rec["best"] == "c000" and rec["verdict"] == "better"
        if rec["best"] == "c000":
            hits += sum(c["direction"] == "worse" for c in rec["comparisons"])
        pairs += k - 1
        back += backwards(rec)
    return {"power_per_comparison": hits / pairs, "power_better_than_all": found / studies,
            "recommended_is_truly_best": truly_best / studies, "backwards": back}


def unequal(k: int, seeds: int, studies: int, rng, seed_sd: float) -> dict:
    fw = back = 0
    for _ in range(studies):
        present = rng.random((k, seeds)) > 0.3
        present[:, 0] |= ~present.any(axis=1)  # every configuration keeps at least one seed
        rec = ranking.recommend(frame(np.zeros(k), list(range(seeds)), rng, seed_sd, present=present), [],
                                "val_loss", p_values=False)
        fw += any(c["direction"] == "worse" for c in rec["comparisons"])
        back += backwards(rec)
    return {"familywise_fp": fw / studies, "backwards": back}


def failures(k: int, seeds: int, studies: int, rng, seed_sd: float) -> dict:
    """Configuration 0 is truly equal to the others and diverges on 2 of 3 seeds; its survivor is lucky (-3 sd)."""
    recommended_unstable = back = 0
    for _ in range(studies):
        truth = np.zeros(k)
        df = frame(truth, list(range(seeds)), rng, seed_sd)
        rows = df.config_id == "c000"
        df.loc[rows, "val_loss"] = df.loc[rows, "val_loss"] - 3.0
        df.loc[rows & (df.seed > 0), ["status", "val_loss"]] = ["diverged", np.nan]
        rec = ranking.recommend(df, [], "val_loss", p_values=False)
        recommended_unstable += rec["best"] == "c000"
        back += backwards(rec)
    return {"recommended_a_partly_diverged_configuration": recommended_unstable / studies, "backwards": back}


def confirmation(k: int, confirm: int, top: int, studies: int, rng, seed_sd: float) -> dict:
    """One grid seed per configuration, then ``confirm`` fresh seeds for the ``top`` best (noise unknown:
    the pipeline's rule), recommended on the confirmation seeds only."""
    covered = with_ci = back = 0
    bias = []
    for _ in range(studies):
        truth = rng.normal(0, 0.5, k)  # configurations differ a little, as in a real grid
        effects: dict[int, float] = {}
        grid = frame(truth, [0], rng, seed_sd, seed_effects=effects)
        first = ranking.recommend(grid, [], "val_loss", p_values=False)
        allowed = [c for c in pd.Series(grid.groupby("config_id").val_loss.mean()).sort_values().index][:top]
        assert first["best"] == allowed[0]
        chosen = [int(c[1:]) for c in allowed]
        conf = frame(truth[chosen], list(range(1, confirm + 1)), rng, seed_sd, stage="confirm", seed_effects=effects)
        conf["config_id"] = [allowed[int(c[1:])] for c in conf.config_id]
        rec = ranking.recommend(pd.concat([grid, conf], ignore_index=True), [], "val_loss", p_values=False)
        best_truth = truth[int(rec["best"][1:])]
        if rec["ci95"] == rec["ci95"]:
            with_ci += 1
            covered += abs(rec["val_loss"] - best_truth) <= rec["ci95"]
        bias.append(rec["val_loss"] - best_truth)
        back += backwards(rec)
    return {"ci_coverage": covered / max(1, with_ci), "mean_bias_in_sd": float(np.mean(bias)), "backwards": back}


def contradicts(rec: dict) -> bool:
    """A sentence that disagrees with its numbers: "not significantly" beside an interval that excludes zero, or
    "indistinguishable" with an interval reaching past the stated practical tolerance."""
    text = rec.get("text", "")
    for c in rec["comparisons"]:
        if c["ci_low"] is not None and (c["ci_low"] > 0 or c["ci_high"] < 0) and c["direction"] == "indistinguishable":
            return True
    if "not significantly (" in text and any(c["significant"] for c in rec["comparisons"]):
        return True
    if rec["verdict"] == "indistinguishable":
        level = [c for c in rec["comparisons"] if c["direction"] == "indistinguishable"]
        if any(max(abs(c["ci_low"]), abs(c["ci_high"])) > rec["tolerance"] for c in level):
            return True
    return False


def uneven(k: int, seeds: int, noisy_sd: float, studies: int, rng, seed_sd: float, gap: float = 0.0) -> dict:
    """k configurations, the last with ``noisy_sd`` x the run noise (as near divergence). gap = 0: all equal, every
    significant comparison is a false alarm; gap > 0: configuration 1 (quiet) is truly better by gap sd."""
    fw = miss = noisy_better = found = back = contra = 0
    for _ in range(studies):
        truth = np.zeros(k)
        truth[1] -= gap
        df = frame(truth, list(range(seeds)), rng, seed_sd)
        noisy = df.config_id == f"c{k - 1:03d}"
        df.loc[noisy, "val_loss"] += rng.normal(0, math.sqrt(noisy_sd ** 2 - 1), int(noisy.sum()))
        rec = ranking.recommend(df, [], "val_loss", p_values=False)
        t = {f"c{i:03d}": truth[i] for i in range(k)}
        fw += gap == 0 and any(c["significant"] for c in rec["comparisons"])
        miss += any(not (c["ci_low"] <= t[c["config_id"]] - t[rec["best"]] <= c["ci_high"]) for c in rec["comparisons"])
        noisy_better += rec["best"] == f"c{k - 1:03d}" and rec["verdict"] == "better"
        found += gap > 0 and rec["best"] == "c001" and any(
            c["significant"] for c in rec["comparisons"] if c["config_id"] != f"c{k - 1:03d}")
        back += backwards(rec)
        contra += contradicts(rec)
    out = {"simultaneous_coverage": 1 - miss / studies, "noisy_called_better_than_all": noisy_better / studies,
           "backwards": back, "contradicting": contra}
    out.update({"familywise_fp": fw / studies} if gap == 0 else {"power_quiet_winner_found": found / studies})
    return out


def crash_in_confirmation(k: int, studies: int, rng, seed_sd: float) -> dict:
    """One grid seed; the 3 best confirmed on 2 seeds, of which seed 1 crashed (error) for all (a bad node)."""
    stays = back = 0
    for _ in range(studies):
        truth = rng.normal(0, 0.5, k)
        grid = frame(truth, [0], rng, seed_sd)
        top = list(grid.sort_values("val_loss").config_id[:3])
        conf = frame(truth[[int(c[1:]) for c in top]], [1, 2], rng, seed_sd, stage="confirm")
        conf["config_id"] = [top[int(c[1:])] for c in conf.config_id]
        conf.loc[conf.seed == 1, ["status", "val_loss"]] = ["error", np.nan]
        rec = ranking.recommend(pd.concat([grid, conf], ignore_index=True), [], "val_loss", p_values=False)
        stays += rec["best"] in top
        back += backwards(rec)
    return {"recommended_among_confirmed": stays / studies, "backwards": back}


def partial_divergence(studies: int, rng, seed_sd: float) -> dict:
    """A configuration 3 sd lower than 5 others diverges on 1 of 4 seeds: called lower, never 'indistinguishable'."""
    contra = back = said = 0
    for _ in range(studies):
        truth = np.zeros(6)
        truth[0] = -3.0
        df = frame(truth, list(range(4)), rng, seed_sd)
        df.loc[(df.config_id == "c000") & (df.seed == 3), ["status", "val_loss"]] = ["diverged", np.nan]
        rec = ranking.recommend(df, [], "val_loss", p_values=False)
        contra += contradicts(rec)
        back += backwards(rec)
        said += "c000 has a significantly lower" in rec["text"]
    return {"lower_but_failed_said": said / studies, "contradicting": contra, "backwards": back}


def low_power(studies: int, rng, seed_sd: float) -> dict:
    """A true gap of 0.5 run-noise sd, 10 seeds, 6 configurations: how often each verdict, and what it could see."""
    verdicts: dict[str, int] = {}
    contra = back = 0
    dd = []
    for _ in range(studies):
        truth = np.full(6, 0.5)
        truth[0] = 0.0
        rec = ranking.recommend(frame(truth, list(range(10)), rng, seed_sd), [], "val_loss", p_values=False)
        verdicts[rec["verdict"]] = verdicts.get(rec["verdict"], 0) + 1
        contra += contradicts(rec)
        back += backwards(rec)
        if rec.get("detectable_difference"):
            dd.append(rec["detectable_difference"])
    return {**{f"verdict_{v}": n / studies for v, n in sorted(verdicts.items())},
            "median_detectable_difference_sd": float(np.median(dd)) if dd else math.nan, "contradicting": contra,
            "backwards": back}


def interaction(studies: int, rng, seed_sd: float, planted: bool) -> dict:
    """LR x weight decay, 3 x 3 values x 3 seeds, through ``stats.anova_importance`` (the answer's source).
    ``planted``: the best LR moves with the weight decay (the interaction carries most of the variance): how
    often it is named. Otherwise additive bowls of the same size: how often an interaction is named falsely."""
    from moe_ablate.analysis.stats import anova_importance

    named = 0
    for _ in range(studies):
        seed_fx = rng.normal(0, seed_sd, 3)
        rows = []
        for i in range(3):
            for j in range(3):
                mean = (0.8 * (i - j) ** 2) if planted else (0.8 * (i - 1) ** 2 + 0.8 * (j - 1) ** 2)
                rows += [{"config_id": f"lr{i}_wd{j}", "seed": s, "lr": 10.0 ** -i, "wd": 0.1 * j,
                          "val_loss": mean + seed_fx[s] + rng.normal()} for s in range(3)]
        named += bool(anova_importance(pd.DataFrame(rows), ["lr", "wd"], "val_loss")["interactions"])
    return {("interaction_named (power)" if planted else "interaction_named (false alarm)"): named / studies}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=100, help="simulated studies per scenario (default 100)")
    p.add_argument("--full", action="store_true", help="500 studies per scenario (and 100 of 270 configurations)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration in the null scenarios (default 3)")
    p.add_argument("--seed-sd", type=float, default=0.5, help="sd of the shared seed effect, in run-noise sd")
    p.add_argument("--holm", action="store_true", help="also show Holm over best-vs-each (slower)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    n = 500 if a.full else a.studies
    se = lambda x: 1.96 * math.sqrt(max(x * (1 - x), 1e-9) / n)  # noqa: E731  (simulation error of a rate)
    print(f"calibration: {n} simulated studies per scenario, {a.seeds} seeds, seed-effect sd {a.seed_sd}, "
          f"alpha {ALPHA}, {ranking.CORRECTION}")
    rows = []
    t0 = time.perf_counter()
    for k in (30, 270):
        studies = n if k == 30 else (100 if a.full else 10)  # 270 configurations: about 1 s a study
        r = null(k, a.seeds, studies, rng, a.seed_sd, a.holm and k == 30)
        rows.append((f"null-{k} x {a.seeds} seeds ({studies} studies)", r))
    rows.append(("alt-2sd: 30 configurations, one 2 sd better, 3 seeds", alternative(30, 3, 2.0, n, rng, a.seed_sd)))
    rows.append(("alt-2sd: 30 configurations, one 2 sd better, 8 seeds", alternative(30, 8, 2.0, n, rng, a.seed_sd)))
    rows.append(("alt-2sd: 4 configurations, one 2 sd better, 3 seeds", alternative(4, 3, 2.0, n, rng, a.seed_sd)))
    rows.append(("unequal seed sets: 30 equal configurations, 4 seeds, 30% of runs missing",
                 unequal(30, 4, n, rng, a.seed_sd)))
    rows.append(("failures: a lucky survivor of 2 diverged seeds among 30", failures(30, 3, n, rng, a.seed_sd)))
    rows.append(("confirmation: 30 configurations x 1 seed, top 3 confirmed with 2 seeds",
                 confirmation(30, 2, 3, n, rng, a.seed_sd)))
    rows.append(("confirmation: 30 configurations x 1 seed, top 3 confirmed with 4 seeds",
                 confirmation(30, 4, 3, n, rng, a.seed_sd)))
    for k in (6, 12):
        for sd in (7.0, 10.0):
            rows.append((f"uneven noise: {k} equal configurations, one at {sd:g}x the noise, 3 seeds",
                         uneven(k, 3, sd, n, rng, a.seed_sd)))
    rows.append(("power: 6 configurations, 5 seeds, one quiet winner 2 sd better, all equal noise",
                 uneven(6, 5, 1.0, n, rng, a.seed_sd, gap=2.0)))
    rows.append(("power: the same with a 7x-noise configuration beside it", uneven(6, 5, 7.0, n, rng, a.seed_sd,
                                                                                   gap=2.0)))
    rows.append(("crash in confirmation: 10 configurations, seed 1 of 2 crashed for every confirmed one",
                 crash_in_confirmation(10, n, rng, a.seed_sd)))
    rows.append(("partial divergence: a 3 sd better configuration diverged on 1 of 4 seeds",
                 partial_divergence(n, rng, a.seed_sd)))
    rows.append(("low power: 6 configurations, a 0.5 sd gap, 10 seeds", low_power(n, rng, a.seed_sd)))
    rows.append(("interaction: LR x WD 3 x 3 x 3 seeds, the best LR moves with WD (0.8 sd bowls)",
                 interaction(n, rng, a.seed_sd, planted=True)))
    rows.append(("no interaction: LR x WD 3 x 3 x 3 seeds, additive bowls of the same size",
                 interaction(n, rng, a.seed_sd, planted=False)))
    total_back = total_contra = 0
    for name, r in rows:
        print(f"\n{name}")
        for key, v in r.items():
            if key in ("backwards", "contradicting"):
                total_back += v if key == "backwards" else 0
                total_contra += v if key == "contradicting" else 0
                print(f"  {key:<44} {v}")
            else:
                print(f"  {key:<44} {v:.3f}" + (f"  (+- {se(v):.3f})" if 0 <= v <= 1 else ""))
    print(f"\nbackwards verdicts in all simulated studies: {total_back}; contradicting sentences: {total_contra}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
