"""Answers that hold under the conditions of a real LR sweep (issue 31): planted truths, simulated many times
through the same ``analyze`` the reports use. Each test failed on the code before the change it guards."""

import json

import numpy as np
import pytest

from moe_ablate.analysis.stats import analyze
from moe_ablate.cli import main

from .helpers import write_study


def run(config, seed, value, status="ok", stage="grid", **hp):
    return {"experiment_id": f"{config}_{stage}_s{seed}", "config_id": config, "status": status, "stage": stage,
            "hyperparameters": {**hp, "seed": seed}, "val_loss": value if status == "ok" else None}


def test_a_crash_on_a_confirmation_seed_never_moves_the_answer_off_the_confirmed_configurations():
    """10 configurations on one grid seed; the 3 best are confirmed on seeds 1 and 2; seed 1 crashed (a bad node)
    for every confirmed configuration. Before: a crash counted as a failure, every confirmed configuration was
    ineligible, and an unconfirmed one chosen on one grid seed was recommended in every study."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        truth = rng.normal(0, 1, 10)
        grid = truth + rng.normal(0, 0.3, 10)
        records = [run(f"c{i}", 0, grid[i], lr=10.0 ** -i) for i in range(10)]
        top = [f"c{i}" for i in np.argsort(grid)[:3]]
        for c in top:
            records.append(run(c, 1, None, status="error", stage="confirm", lr=1.0))
            records.append(run(c, 2, truth[int(c[1:])] + rng.normal(0, 0.3), stage="confirm", lr=1.0))
        rec = analyze(records)["recommendation"]
        assert rec["best"] in top and rec["confirmed"] and set(rec["confirmed"]) <= set(top)
        assert rec["estimated_on"] == "confirmation seeds" and not rec["ineligible"]


def test_when_every_confirmation_run_crashed_the_answer_says_so_and_stays_with_the_chosen():
    records = [run("a", 0, 1.0, lr=0.1), run("b", 0, 1.2, lr=0.01), run("lucky", 0, 0.5, lr=1.0)]
    records += [run(c, s, None, status="error", stage="confirm", lr=0.0) for c in ("a", "b") for s in (1, 2)]
    rec = analyze(records)["recommendation"]
    assert rec["best"] == "a"  # not "lucky", which was never chosen for confirmation
    assert rec["confirmation_incomplete"]["chosen"] == ["a", "b"]
    assert "Confirmation could not be completed" in rec["text"] and "4 error" in rec["text"]


def test_a_significantly_lower_configuration_that_failed_a_seed_is_called_lower_with_the_reason():
    """Before: 'indistinguishable ... not significantly (simultaneous 95% CI [-6.22, -0.16] ...)'."""
    rng = np.random.default_rng(1)
    contradicted = 0
    for _ in range(30):
        records = [run("steady", s, 3.0 + rng.normal(0, 0.05), lr=0.01) for s in range(4)]
        records += [run("fragile", s, 2.0 + rng.normal(0, 0.05), lr=0.1) for s in range(3)]
        records += [run("fragile", 3, None, status="diverged", lr=0.1)]
        rec = analyze(records)["recommendation"]
        assert rec["best"] == "steady" and rec["ineligible"] == ["fragile"]
        (c,) = rec["comparisons"]
        assert c["direction"] == "better" and c["ci_high"] < 0
        contradicted += "not significantly" in rec["text"] or "indistinguishable" in rec["text"]
        assert "fragile has a significantly lower val_loss" in rec["text"]
        assert "1 of 4 of its seeds failed" in rec["text"]
    assert contradicted == 0


def test_without_power_the_answer_says_cannot_tell_and_what_it_could_have_seen():
    """A true gap of 0.5 run-noise sd, 10 seeds, 6 configurations. Before: 99.5% of answers said
    'indistinguishable ... pick by another criterion' while their intervals reached 4x the true gap."""
    rng = np.random.default_rng(2)
    truth = np.array([0.0, 0.5, 0.5, 0.5, 0.5, 0.5]) * 0.02 + 3.0  # run noise sd 0.02: gap 0.01
    wrong = 0
    dds = []
    for _ in range(40):
        seed_fx = rng.normal(0, 0.02, 10)
        records = [run(f"c{i}", s, truth[i] + seed_fx[s] + rng.normal(0, 0.02), lr=10.0 ** -i)
                   for i in range(6) for s in range(10)]
        rec = analyze(records)["recommendation"]
        level = [c for c in rec["comparisons"] if c["direction"] == "indistinguishable"]
        reach = max((max(abs(c["ci_low"]), abs(c["ci_high"])) for c in level), default=0)
        if rec["verdict"] == "indistinguishable":
            wrong += reach > rec["tolerance"]  # an "indistinguishable" whose interval is wider than the tolerance
        if rec["verdict"] == "cannot_tell":
            assert "could not be seen" in rec["text"]
        dds.append(rec["detectable_difference"])
    assert wrong == 0
    # what it could see: about (critical + t_0.8) x sd x sqrt(2/10); a 0.01 gap is well under it
    assert np.median(dds) == pytest.approx((3.0 + 0.85) * 0.02 * np.sqrt(2 / 10), rel=0.35) and min(dds) > 0.01


def test_a_crashed_run_is_retried_in_the_study(tmp_path, cache_dir, monkeypatch):
    import moe_ablate.training as train_mod

    real, calls = train_mod.train, {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*a, **kw)

    monkeypatch.setattr(train_mod, "train", flaky)
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.01]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "s", "--no-progress"]) == 0
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "s" / "experiments").glob("*.json"))]
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert recs[0]["retried"] == 1 and "illegal memory access" in recs[0]["first_error"]


def test_resume_reruns_a_crashed_experiment_and_keeps_its_record(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.01]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "s", "--no-progress"]) == 0
    path = tmp_path / "s" / "experiments" / "exp_001.json"
    crashed = {**json.loads(path.read_text()), "status": "error", "error": "worker died", "val_loss": None}
    path.write_text(json.dumps(crashed))  # as a crash in an earlier process left it
    assert main(["run", "--resume", str(tmp_path / "s"), "--no-progress"]) == 0
    assert json.loads(path.read_text())["status"] == "ok"
    kept = list((tmp_path / "s" / "experiments" / "crashed").glob("exp_001.*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["error"] == "worker died"


def test_an_interaction_that_carries_the_variance_is_named_and_said():
    """LR x weight decay where the best LR moves with the weight decay (the planted optimum: lr index = wd index).
    Before: one-way shares per axis (0.17, 0.07) and not a word about the interaction."""
    rng = np.random.default_rng(3)
    lrs, wds = [0.01, 0.03, 0.1], [0.0, 0.1, 0.5]
    records = []
    for i, lr in enumerate(lrs):
        for j, wd in enumerate(wds):
            for s in range(3):
                records.append(run(f"lr{lr}_wd{wd}", s, 3.0 + 0.2 * (i - j) ** 2 + rng.normal(0, 0.01),
                                   muon_lr=lr, weight_decay=wd))
    a = analyze(records)
    imp = a["importance"]
    assert "muon_lr:weight_decay" in imp and imp["muon_lr:weight_decay"] > max(imp["muon_lr"], imp["weight_decay"])
    assert a["interactions"][0]["term"] == "muon_lr:weight_decay" and "anova_lm" in a["importance_method"]
    assert "the best muon_lr depends on weight_decay" in a["recommendation"]["text"]
    best = a["recommendation"]["best_config"]
    cond = a["conditional_effects"]["muon_lr"]  # at the recommended weight decay: the planted bowl, not a blur
    assert min(cond, key=lambda r: r["mean"])["value"] == lrs[wds.index(best["weight_decay"])]


def test_one_run_per_cell_leaves_interactions_out_and_says_so():
    records = [run(f"lr{lr}_wd{wd}", 0, 3.0 + lr + wd, muon_lr=lr, weight_decay=wd)
               for lr in (0.01, 0.1) for wd in (0.0, 0.1)]
    a = analyze(records)
    assert not any(":" in k for k in a["importance"])


def test_270_configurations_keep_the_answer_short():
    """Before: the first sentence listed all 269 near-optimal configurations (21,350 characters)."""
    import itertools

    rng = np.random.default_rng(4)
    axes = dict(muon_lr=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3], adamw_lr_ratio=[0.01, 0.05, 0.1, 0.2, 0.5],
                momentum=[0.9, 0.95, 0.99], weight_decay=[0.01, 0.1, 0.5])
    records = [run(f"exp_{i:03d}", s, 3.0 + 0.05 * (np.log10(hp[0]) + 1.5) ** 2 + rng.normal(0, 0.02),
                   **dict(zip(axes, hp)))
               for i, hp in enumerate(itertools.product(*axes.values())) for s in range(2)]
    rec = analyze(records)["recommendation"]
    assert len(rec["comparisons"]) == 269 and len(rec["near_optimal"]) > 20
    assert len(rec["text"]) < 1200, len(rec["text"])
    assert sum(c["p"] is not None for c in rec["comparisons"]) == 20  # integrated only where a table prints them


def test_one_noisy_configuration_does_not_make_false_alarms():
    """6 equal configurations x 3 seeds, one at 7x the run noise (as near divergence). Before, with one pooled
    variance: 17.5% familywise false alarms and 76-82% simultaneous coverage."""
    from moe_ablate.analysis import ranking

    rng = np.random.default_rng(5)
    alarms = misses = 0
    n = 150
    for _ in range(n):
        seed_fx = rng.normal(0, 0.5, 3)
        records = [run(f"c{i}", s, seed_fx[s] + rng.normal(0, 7.0 if i == 5 else 1.0), lr=10.0 ** -i)
                   for i in range(6) for s in range(3)]
        rec = analyze(records)["recommendation"]
        alarms += any(c["significant"] for c in rec["comparisons"])
        misses += any(not c["ci_low"] <= 0 <= c["ci_high"] for c in rec["comparisons"])  # every true difference is 0
        assert "Games-Howell" in rec["comparisons"][0]["test"] and rec["variance_method"] == ranking.VARIANCE_METHOD
    assert alarms / n <= 0.08 and 1 - misses / n >= 0.92, (alarms, misses)


# ---------------------------------------------------------------- lr-search (issue 31)
def lr_run(lr, seed, best, final=None, stage="grid", status="ok"):
    from moe_ablate.studies.kinds import lr_search

    cid = lr_search.lr_id(lr)
    return {"experiment_id": f"{cid}_{stage}_s{seed}", "config_id": cid, "status": status, "stage": stage,
            "hyperparameters": {"muon_lr": lr, "seed": seed}, "best_val_loss": best if status == "ok" else None,
            "val_loss": (best if final is None else final) if status == "ok" else None,
            "config": {"train": {"muon_lr": lr}, "model": {"name": "deepseek_mlp"}}}


def lr_recommendation(records):
    from moe_ablate.config import ExperimentConfig
    from moe_ablate.studies.kinds import lr_search
    from moe_ablate.studies.spec.stored import Study

    study = Study("lr_search", "s", ExperimentConfig(), [], params={"exp": 9}, metric="best_val_loss")
    return lr_search.KIND.recommendation(study, records, analyze(records, "best_val_loss"))


LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]


def test_lr_search_brackets_with_an_lr_the_confirmation_left_out_when_it_is_far_worse():
    """A bowl over 5 LRs on one grid seed, the 3 best confirmed on 2 fresh seeds (the default). The lowest LR is
    ~50 noise sd worse but was never confirmed. Before: it was never tested, and 'not bracketed on the low side'
    was warned in about half of the studies. Now it is tested on every seed against the best."""
    rng = np.random.default_rng(7)
    warned = 0
    for _ in range(30):
        truth = 3.0 + 0.05 * (np.log10(LRS) + 2.5) ** 2 * 4  # minimum between 3e-3 and 1e-2's neighbours
        truth[0] = truth.min() + 0.5  # 50 sd of run noise 0.01 above the best
        seed_fx = rng.normal(0, 0.01, 3)
        grid = truth + seed_fx[0] + rng.normal(0, 0.01, 5)
        records = [lr_run(lr, 0, grid[i]) for i, lr in enumerate(LRS)]
        for i in np.argsort(grid)[:3]:
            records += [lr_run(LRS[i], s, truth[i] + seed_fx[s] + rng.normal(0, 0.01), stage="confirm") for s in (1, 2)]
        r = lr_recommendation(records)
        assert r["best_learning_rate"] != LRS[0]
        warned += "not bracketed on the low side" in r.get("warning", "")
    assert warned == 0


def test_lr_search_with_one_seed_never_claims_a_bracket_on_gaps_it_cannot_test():
    """One seed per LR, the losses 0.001 apart. Before: 'bracketed' while saying it cannot tell whether the
    differences are real."""
    r = lr_recommendation([lr_run(lr, 0, v) for lr, v in zip(LRS, [3.002, 3.001, 3.000, 3.001, 3.002], strict=True)])
    assert r["bracketed"] is None and r["verdict"] == "cannot_tell"
    assert "cannot tell whether the optimum is bracketed" in r["warning"]


def test_lr_search_says_when_its_best_run_ended_far_worse_and_what_it_ranked_by():
    """The best LR by best validation loss became unstable after its best step and ended 1.1 nats above the
    runner-up's final loss. Before: 'better than every other', without a word."""
    rng = np.random.default_rng(8)
    records = []
    for s in range(3):
        records += [lr_run(1e-3, s, 3.20 + rng.normal(0, 0.01)), lr_run(3e-3, s, 3.10 + rng.normal(0, 0.01)),
                    lr_run(1e-2, s, 3.00 + rng.normal(0, 0.01), final=4.3 + rng.normal(0, 0.01)),
                    lr_run(3e-2, s, None, status="diverged")]
    r = lr_recommendation(records)
    assert r["best_learning_rate"] == 1e-2
    assert r["ended_worse"]["final_val_loss"] - r["ended_worse"]["runner_up_final_val_loss"] > 1.0
    assert "ended at a validation loss of" in r["recommendation"] and "prefer the runner-up" in r["recommendation"]
    assert "ranked by each run's best validation loss" in r["recommendation"] and r["ranked_by"].startswith("best_val")
    assert r["bracketed"] is True  # 3e-3 tested worse on 3 seeds, 3e-2 diverged


# ---------------------------------------------------------------- LR sensitivity (issue 31)
def sensitivity_study(rng, curves: dict, seeds: int = 4, noise: float = 0.02):
    """Records of a ratio x LR grid: ``curves`` {ratio: true loss per LR}, seed offsets shared by a seed's runs."""
    seed_fx = rng.normal(0, 0.02, seeds)
    return [run(f"r{ratio}_lr{i}", s, loss + seed_fx[s] + rng.normal(0, noise), muon_lr=10.0 ** -i,
                adamw_lr_ratio=ratio)
            for ratio, losses in curves.items() for i, loss in enumerate(losses) for s in range(seeds)]


def test_lr_sensitivity_of_a_flat_curve_is_corrected_towards_zero_and_its_interval_reaches_it():
    """Before: a flat curve read 0.012 (the minimum of noisy means), with no interval."""
    rng = np.random.default_rng(11)
    raw, corrected, reaches_zero = [], [], 0
    for _ in range(25):
        sens = analyze(sensitivity_study(rng, {0.1: [3.0] * 5}))["lr_sensitivity"]
        raw.append(sens["overall"])
        corrected.append(sens["overall_corrected"])
        reaches_zero += sens["overall_ci95"][0] <= 0.003  # within a fifth of the run noise of zero
    assert np.mean(raw) > 0.01 and np.mean(corrected) < 0.5 * np.mean(raw)
    assert reaches_zero >= 22


def test_lr_sensitivity_never_orders_two_settings_with_the_same_true_curve():
    """Two settings with identical true curves. Before: their sensitivities swapped order in 38 of 100 studies,
    and the report listed them as if the order meant something."""
    rng = np.random.default_rng(12)
    curve = [3.0 + 0.05 * (i - 2) ** 2 for i in range(5)]
    ordered = 0
    for _ in range(25):
        sens = analyze(sensitivity_study(rng, {0.1: curve, 0.5: curve}))["lr_sensitivity"]
        order = sens["order"]["adamw_lr_ratio"]
        ordered += order["more_forgiving"] is not None
        if order["more_forgiving"] is None:
            assert order["text"].startswith("cannot tell which adamw_lr_ratio")
    assert ordered <= 3  # a 95% interval: about 1 in 20 by chance


def test_lr_sensitivity_tells_a_real_difference_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(13)
    steep, gentle = [3.0 + 0.2 * (i - 2) ** 2 for i in range(5)], [3.0 + 0.02 * (i - 2) ** 2 for i in range(5)]
    truth = np.mean([v - min(steep) for v in steep])
    told = covered = 0
    for _ in range(25):
        sens = analyze(sensitivity_study(rng, {0.1: gentle, 0.5: steep}))["lr_sensitivity"]
        told += sens["order"]["adamw_lr_ratio"]["more_forgiving"] == 0.1
        row = next(r for r in sens["per_axis"]["adamw_lr_ratio"] if r["value"] == 0.5)
        covered += row["ci95"][0] <= truth <= row["ci95"][1]
    assert told >= 23 and covered >= 20


def test_lr_sensitivity_never_averages_a_cross_fitted_value_over_part_of_the_settings():
    """The quick study printed 'Overall: 0.9510 corrected, 95% CI [1.1876, 1.2038]': the overall cross-fitted
    value was the one setting that had one (its LRs shared 3 seeds), beside an interval for all settings."""
    rng = np.random.default_rng(14)
    records = [run(f"r0.1_lr{i}", 0, 3.0 + 0.1 * i + rng.normal(0, 0.01), muon_lr=10.0 ** -i, adamw_lr_ratio=0.1)
               for i in range(3)]
    records += [run(f"r0.5_lr{i}", s, 3.0 + 0.05 * i + rng.normal(0, 0.01), muon_lr=10.0 ** -i, adamw_lr_ratio=0.5)
                for i in range(3) for s in range(3)]
    sens = analyze(records)["lr_sensitivity"]
    per = {r["value"]: r for r in sens["per_axis"]["adamw_lr_ratio"]}
    assert per[0.1]["corrected"] is None and per[0.5]["corrected"] is not None
    assert sens["overall_corrected"] is None
    lo, hi = sens["overall_ci95"]
    assert lo <= sens["overall"] <= hi  # the interval is the plug-in's, and holds it
