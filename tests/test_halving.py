"""Successive halving with exact continuation: survivors equal the full grid, pruned runs are never
recommended, checkpoints are gone at the end, and a killed halving study resumes to the same result."""

import json
import random

import pytest

from moe_ablate.cli import main

from .helpers import kill_resume, write_study

METRICS = ("val_loss", "best_val_loss", "final_train_loss", "val_accuracy", "steps")


def recs(d):
    return {p.stem: json.loads(p.read_text()) for p in (d / "experiments").glob("*.json")}


def test_survivors_equal_the_full_grid_and_pruned_runs_are_never_recommended(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=20, lrs="[0.003, 0.01, 0.05, 0.1]")  # 8 configurations
    common = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--no-progress", "--eval-every", "5"]
    assert main(common + ["--name", "full"]) == 0
    assert main(common + ["--name", "half", "--halving", "2", "--min-steps", "5"]) == 0
    full, half = recs(tmp_path / "full"), recs(tmp_path / "half")
    assert sorted(full) == sorted(half)
    survivors = [k for k, r in half.items() if r["status"] == "ok"]
    pruned = [k for k, r in half.items() if r["status"] == "pruned"]
    assert len(survivors) == 2 and len(pruned) == 6  # 8 configurations at step 5, 4 at step 10, 2 finish at 20
    for k in survivors:  # continued from checkpoints, they finish exactly as in the full grid
        for m in METRICS:
            assert half[k][m] == full[k][m], (k, m)
        assert [h["loss"] for h in half[k]["history"]["train"]] == [h["loss"] for h in full[k]["history"]["train"]]
    for k in pruned:
        assert half[k]["pruned_at_step"] in (5, 10) and half[k]["steps"] == half[k]["pruned_at_step"]
    a = json.loads((tmp_path / "half" / "analysis.json").read_text())
    assert a["recommendation"]["best"] in survivors and not set(a["recommendation"]["near_optimal"]) & set(pruned)
    assert a["n_pruned"] == 6 and a["n_failed"] == 0
    h = json.loads((tmp_path / "half" / "halving.json").read_text())
    assert [r["steps"] for r in h["rungs"]] == [5, 10, 20]
    assert h["trained_steps"] == 8 * 5 + 4 * 5 + 2 * 10 and h["share_of_full_grid"] == 0.5
    assert h["peak_checkpoint_bytes"] > 0
    ckpts = tmp_path / "half" / "checkpoints"
    assert not ckpts.exists() or not list(ckpts.rglob("*.pt"))
    report = (tmp_path / "half" / "report.md").read_text()
    assert "## Successive halving" in report and (tmp_path / "half" / "halving_rungs.png").exists()


@pytest.mark.slow
def test_a_killed_halving_study_resumes_to_the_same_result(tmp_path, cache_dir):
    fresh, resume = kill_resume.commands("run", tmp_path, tmp_path / "ref", 20, cache_dir)
    fresh += ["--halving", "2", "--min-steps", "5", "--confirm", "0"]
    env = dict(__import__("os").environ)
    ref, _, seconds = kill_resume.run_to_end(fresh, resume, tmp_path / "ref", env)
    fresh = [a if a != str(tmp_path / "ref") else str(tmp_path / "killed") for a in fresh]
    got, landed, _ = kill_resume.run_to_end(fresh, resume, tmp_path / "killed", env, 2, random.Random(5), seconds)
    assert landed >= 1
    assert kill_resume.compare(ref, got) == []
    assert not list((got / "checkpoints").rglob("*.pt")) if (got / "checkpoints").exists() else True
