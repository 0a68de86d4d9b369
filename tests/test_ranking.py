"""Configurations, not runs: noise, paired significance, the near-optimal set, edges, LR transfer."""

import numpy as np
import pytest
from scipy import stats

from moe_ablate.analysis.stats import analyze


def runs(config, values, seeds=None, status="ok", **hp):
    """Records of one configuration, one per seed."""
    seeds = seeds or list(range(len(values)))
    return [{"experiment_id": f"{config}_s{s}", "config_id": config, "status": status if v is not None else "diverged",
             "hyperparameters": {**hp, "seed": s}, "val_loss": v} for s, v in zip(seeds, values)]


def rec(records):
    return analyze(records)["recommendation"]


def test_a_difference_far_below_wide_noise_is_cannot_tell_with_what_could_be_seen():
    """Not significant is not "indistinguishable": with intervals far wider than the practical tolerance the
    answer says it cannot tell, the smallest difference it could have seen, and the seeds that would see more."""
    noise = np.array([0.00, 0.05, -0.04, 0.03])  # seed-to-seed noise, different per configuration below
    r = rec(runs("a", list(3.0 + noise), lr=0.1) + runs("b", list(3.002 + noise[::-1]), lr=0.03))
    assert r["verdict"] == "cannot_tell" and set(r["near_optimal"]) == {"a", "b"}
    dd = r["detectable_difference"]
    c = r["comparisons"][0]
    assert dd > c["ci_high"] - c["diff"] > r["tolerance"]  # it could only have seen more than its interval's reach
    assert "cannot tell" in r["text"] and f"{dd:.3g}" in r["text"]
    assert f"{r['power']['seeds_for_tolerance']} seeds per configuration would see" in r["text"]


def test_a_difference_inside_a_narrow_interval_is_indistinguishable():
    noise = np.array([0.0, 0.001, -0.001, 0.0005])
    r = rec(runs("a", list(3.0 + noise), lr=0.1) + runs("b", list(3.001 + noise[::-1]), lr=0.03))
    c = r["comparisons"][0]
    assert max(abs(c["ci_low"]), abs(c["ci_high"])) < r["tolerance"] == pytest.approx(0.015, rel=1e-3)
    assert r["verdict"] == "indistinguishable" and "within the practical tolerance" in r["text"]


def test_a_clear_difference_is_significant_with_the_right_sign():
    r = rec(runs("good", [2.00, 2.03, 1.98], lr=0.1) + runs("bad", [2.50, 2.56, 2.47], lr=0.01))
    assert r["best"] == "good" and r["verdict"] == "better" and r["near_optimal"] == ["good"]
    c = r["comparisons"][0]
    assert c["config_id"] == "bad" and c["diff"] > 0 and c["ci_low"] > 0 and c["p"] < 0.05 and c["significant"]
    assert r["text"].startswith("good (lr=0.1): val_loss 2.0033")
    assert "is better than every other configuration" in r["text"]
    assert "the runner-up bad (lr=0.01) is worse by +0.5067" in r["text"]


def test_the_recommendation_is_the_best_mean_never_a_lucky_run():
    lucky = runs("lucky", [1.0, 3.0, 3.0], lr=0.3)  # the single best run, but a worse mean
    steady = runs("steady", [2.0, 2.1, 1.9], lr=0.1)
    r = rec(lucky + steady)
    assert r["best"] == "steady" and r["val_loss"] == pytest.approx(2.0)
    table = analyze(lucky + steady)["configurations"]
    assert [c["config_id"] for c in table] == ["steady", "lucky"] and table[0]["n"] == 3


def test_the_near_optimal_set_on_a_constructed_case():
    eps = [0.0, 0.02, -0.02, 0.01, -0.01]
    records = (runs("a", [1.00 + e for e in eps], lr=0.1) + runs("b", [1.005 + e for e in eps[::-1]], lr=0.3)
               + runs("c", [1.3 + e for e in eps], lr=0.03) + runs("d", [None] * 5, lr=1.0))
    a = analyze(records)
    r = a["recommendation"]
    assert r["best"] == "a" and set(r["near_optimal"]) == {"a", "b"}
    assert {c["config_id"]: c["significant"] for c in r["comparisons"]} == {"b": False, "c": True}
    assert "d" not in r["near_optimal"] and a["n_failed"] == 5  # failed runs never count, never recommended
    # b (lr 0.3) is near-optimal at the largest working LR tried... but d (lr 1.0) was tried above it
    assert not any("largest" in w for w in r["edge_warnings"])


def test_p_values_and_intervals_match_scipy():
    a, b = [2.0, 2.1, 1.95, 2.05], [2.2, 2.15, 2.1, 2.3]
    c = rec(runs("a", a, lr=0.1) + runs("b", b, lr=0.3))["comparisons"][0]
    ref = stats.ttest_rel(b, a)
    ci = ref.confidence_interval(0.95)
    # two configurations on shared seeds: the configuration + seed model is the paired t-test, and Tukey's
    # correction over a family of two changes nothing
    assert c["p"] == pytest.approx(ref.pvalue) and c["test"].startswith("configuration + seed model")
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((ci.low, ci.high))
    # no shared seeds: seed cannot be a block; each configuration takes the larger of its own variance and the
    # pooled one, and the difference is Welch's (Satterthwaite degrees of freedom, floored: one critical value
    # serves both the interval and the p-value, so they cannot disagree)
    c = rec(runs("a", a, seeds=[0, 1, 2, 3], lr=0.1) + runs("b", b, seeds=[4, 5, 6, 7], lr=0.3))["comparisons"][0]
    pooled = (np.var(a, ddof=1) + np.var(b, ddof=1)) / 2  # on 6 df; each own variance on 3
    (va, da), (vb, db) = [(max(np.var(x, ddof=1), pooled) / 4, 3 if np.var(x, ddof=1) > pooled else 6) for x in (a, b)]
    welch = (va + vb) ** 2 / (va ** 2 / da + vb ** 2 / db)
    dof, se = min(6, int(welch)), np.sqrt(va + vb)  # never more df than the model has
    diff = np.mean(b) - np.mean(a)
    assert c["dof"] == dof and c["se"] == pytest.approx(se) and c["test"].startswith("configuration model")
    assert c["p"] == pytest.approx(2 * stats.t.sf(diff / se, dof))
    half = stats.t.ppf(0.975, dof) * se
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((diff - half, diff + half))


def test_one_seed_and_no_noise_estimate_cannot_tell():
    r = rec(runs("a", [2.0], lr=0.1) + runs("b", [2.01], lr=0.3) + runs("c", [2.5], lr=0.03))
    assert r["verdict"] == "cannot_tell" and r["comparisons"][0]["p"] is None
    assert "cannot tell" in r["text"] and "better than" not in r["text"]


def test_a_single_seed_configuration_is_judged_against_the_pooled_noise():
    records = runs("a", [2.0, 2.02, 1.98], lr=0.1) + runs("b", [2.6], lr=0.3)
    c = rec(records)["comparisons"][0]
    assert c["test"].startswith("configuration model") and c["significant"] and c["direction"] == "worse"


def test_edge_notes_only_where_an_axis_can_be_bracketed():
    two = rec(runs("x", [1.0, 1.1], lr=0.1) + runs("y", [2.0, 2.1], lr=0.01))
    assert any("two values only" in w for w in two["edge_warnings"])
    assert not any("not bracketed" in w for w in two["edge_warnings"])
    three = rec(runs("x", [1.0, 1.1], lr=0.1) + runs("y", [2.0, 2.1], lr=0.03) + runs("z", [3.0, 3.1], lr=0.01))
    assert any("best lr = 0.1 is the largest value tried" in w for w in three["edge_warnings"])
    near = rec(runs("x", [1.0, 1.1, 0.9], lr=0.03) + runs("y", [1.01, 1.08, 0.93], lr=0.1)
               + runs("z", [3.0, 3.1, 2.9], lr=0.01))
    assert near["best"] == "x" and any("near-optimal configurations include lr = 0.1" in w
                                       for w in near["edge_warnings"])
    text = rec(runs("x", [1.0, 1.1], opt="adam") + runs("y", [2.0, 2.1], opt="sgd"))
    assert text["edge_warnings"] == []  # a text axis has no edges


def transfer(curves: dict):
    records, rng = [], np.random.default_rng(0)
    for width, losses in curves.items():
        for lr, loss in losses.items():
            values = loss if isinstance(loss, list) else list(loss + rng.normal(0, 0.01, 3))
            records += runs(f"w{width}_lr{lr}", values, muon_lr=lr, d_model=width)
    return analyze(records)["lr_transfer"]


def test_lr_transfer_says_whether_the_optimum_moved():
    moved = transfer({64: {0.01: 2.0, 0.1: 2.5, 1.0: 3.0}, 256: {0.01: 3.0, 0.1: 2.5, 1.0: 2.0}})
    assert moved["moved"] is True and "moved" in moved["text"]
    assert [r["best_lr"] for r in moved["rows"]] == [0.01, 1.0]
    same = transfer({64: {0.01: 2.5, 0.1: 2.0, 1.0: 2.6}, 256: {0.01: 2.4, 0.1: 1.9, 1.0: 2.5}})
    assert same["moved"] is False and "did not move" in same["text"]
    a, b = [2.00, 2.03, 1.97], [2.01, 2.02, 1.99]  # means 2.0 and 2.0067: within the seed noise
    close = transfer({64: {0.01: 2.5, 0.1: a, 1.0: b}, 256: {0.01: 2.5, 0.1: b, 1.0: a}})
    assert [r["best_lr"] for r in close["rows"]] == [0.1, 1.0]  # the argmin differs...
    assert close["moved"] is False and "no shift detectable" in close["text"]  # ...but that is not a shift


def test_lr_sensitivity_says_which_setting_is_more_forgiving():
    records = []
    for ratio, losses in {0.1: [2.0, 2.05, 2.1], 0.5: [2.0, 2.5, 3.0]}.items():
        for lr, loss in zip([0.01, 0.03, 0.1], losses):
            records += runs(f"r{ratio}_lr{lr}", [loss, loss + 0.01], muon_lr=lr, adamw_lr_ratio=ratio)
    sens = analyze(records)["lr_sensitivity"]
    per = {row["value"]: row["sensitivity"] for row in sens["per_axis"]["adamw_lr_ratio"]}
    assert per[0.1] == pytest.approx(0.05) and per[0.5] == pytest.approx(0.5)
