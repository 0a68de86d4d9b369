"""Does the analysis keep its promises? Simulate many studies whose truth is known and run each through
the same code the reports use (``moe_ablate.analysis.ranking.recommend``), then count.

A run's metric is  truth[configuration] + seed effect (shared by every configuration: same seed = same
batches and initial weights) + run noise,  with sd 1 for the run noise and ``--seed-sd`` for the seed
effect. Scenarios (each ``--studies`` times):

  null-K         K equal configurations x S seeds: every "significantly worse" is a false positive
  alt-2sd        30 configurations, one better by 2 run-noise sd: power, and is the recommended one the best?
  unequal        30 equal configurations, seeds dropped at random (unequal seed sets): false positives and
                 backwards verdicts
  failures       30 configurations; some diverge on a seed, and the lucky survivor is not recommended
  confirmation   30 equal-but-one configurations with one grid seed, then a confirmation stage of K seeds for
                 the top 3 as the pipeline picks them: coverage of the reported 95% CI of the recommended one

Printed per scenario: the per-comparison and familywise false-positive rates (null), power and how often
the recommendation is truly best (alternative), CI coverage (confirmation), backwards verdicts (any: a
comparison whose printed difference points the other way from its verdict, or a "better" configuration
whose estimate is not the lowest). With ``--holm`` it also shows what Holm over "best vs each" would have
given, the reason the analysis uses Tukey-Kramer instead.

    python scripts/calibration.py              # about a minute on 2 CPU cores
    python scripts/calibration.py --studies 1000 --holm
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
    """Configuration 0 is truly worse (+1 sd) and diverges on 2 of 3 seeds; its survivor is lucky (-3 sd)."""
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=200, help="simulated studies per scenario (default 200)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration in the null scenarios (default 3)")
    p.add_argument("--seed-sd", type=float, default=0.5, help="sd of the shared seed effect, in run-noise sd")
    p.add_argument("--holm", action="store_true", help="also show Holm over best-vs-each (slower)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    n = a.studies
    se = lambda x: 1.96 * math.sqrt(max(x * (1 - x), 1e-9) / n)  # noqa: E731  (simulation error of a rate)
    print(f"calibration: {n} simulated studies per scenario, {a.seeds} seeds, seed-effect sd {a.seed_sd}, "
          f"alpha {ALPHA}, {ranking.CORRECTION}")
    rows = []
    t0 = time.perf_counter()
    for k in (30, 270):
        studies = n if k == 30 else max(20, n // 2)
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
    total_back = 0
    for name, r in rows:
        print(f"\n{name}")
        for key, v in r.items():
            if key == "backwards":
                total_back += v
                print(f"  {key:<44} {v}")
            else:
                print(f"  {key:<44} {v:.3f}" + (f"  (+- {se(v):.3f})" if 0 <= v <= 1 else ""))
    print(f"\nbackwards verdicts in all simulated studies: {total_back}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
