import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from moe_ablate.analysis.stats import analyze, load_records
from moe_ablate.cli import main
from moe_ablate.errors import UserError
from moe_ablate.studies.engine.outputs import analyze_folder
from moe_ablate.studies.spec.file import expand, load_spec, spanning_subset

from .helpers import write_study


def test_lr_grid_expands_to_270_and_quick_to_the_4():
    spec = load_spec("lr_ablation")
    assert len(expand(spec.grid)) == 270
    quick = expand(spec.quick)
    combos = {(e.overrides["train.muon_lr"], e.overrides["train.adamw_lr_ratio"],
               e.overrides["train.momentum"], e.overrides["train.weight_decay"]) for e in quick}
    assert combos == {(m, r, 0.95, 0.1) for m in (0.01, 0.1) for r in (0.1, 0.5)}
    base = spec.base_config()
    assert (base.train.steps, base.train.batch_size, base.train.eval_every, base.model.d_model) == (50, 16, 5, 384)


@pytest.mark.parametrize("n", [6, 7, 20, 31])
def test_max_experiments_spans_every_axis_value(n):
    spec = load_spec("lr_ablation")
    chosen = spanning_subset(expand(spec.grid), spec.grid, n, seed=3)
    assert len(chosen) == n and len({e.id for e in chosen}) == n
    assert chosen == spanning_subset(expand(spec.grid), spec.grid, n, seed=3)  # deterministic
    for axis, values in spec.grid.items():
        counts = Counter(e.overrides[axis] for e in chosen)
        assert set(counts) == set(values)  # n >= the largest axis: every value appears
        assert max(counts.values()) - min(counts.values()) <= 1  # as evenly as n allows
    assert chosen != expand(spec.grid)[:n]


def test_seeds_repeat_each_experiment():
    spec = load_spec("lr_ablation")
    exps = expand(spec.quick, seeds=3, base_seed=10)
    assert len(exps) == 12 and {e.overrides["train.seed"] for e in exps} == {10, 11, 12}





@pytest.mark.slow
def test_sigkill_mid_study_then_resume_loses_and_duplicates_nothing(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=60)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "moe_ablate", "run", "--config", str(cfg), "--output-dir", str(out),
           "--name", "s", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    exp_dir = out / "s" / "experiments"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(exp_dir.glob("exp_*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {f.name: f.stat().st_mtime_ns for f in exp_dir.glob("exp_*.json")}
    assert 2 <= len(before) < 6, "the kill should land mid-study"
    resumed = subprocess.run(cmd[:4] + ["--resume", str(out / "s"), "--no-progress"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    files = sorted(f.name for f in exp_dir.glob("exp_*.json"))
    assert files == [f"exp_{i:03d}.json" for i in range(6)]
    for name, mtime in before.items():  # finished before the kill: kept, not rerun
        assert (exp_dir / name).stat().st_mtime_ns == mtime
    final = json.loads((out / "s" / "final_results.json").read_text())
    assert sorted(r["experiment_id"] for r in final["results"]) == [f"exp_{i:03d}" for i in range(6)]
    assert not list(exp_dir.glob(".*tmp"))  # no half-written files left behind


def test_resume_with_a_different_config_is_refused(tmp_path, cache_dir, capsys):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.01]")
    args = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "r", "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--resume", str(tmp_path / "r"), "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps: the study has 2, this command gives 3" in err[0]


def test_diverging_experiment_is_recorded_and_the_study_goes_on(tmp_path, cache_dir, capsys):
    cfg = write_study(tmp_path, cache_dir, steps=6, lrs="[0.05, 1e30]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "d", "--no-progress",
                 "--grad-clip", "0"]) == 0
    recs = [json.loads(f.read_text()) for f in sorted((tmp_path / "d" / "experiments").glob("*.json"))]
    assert len(recs) == 4
    assert Counter(r["status"] for r in recs) == {"ok": 2, "diverged": 2}
    analysis = json.loads((tmp_path / "d" / "analysis.json").read_text())
    assert analysis["n_failed"] == 2
    assert analysis["recommendation"]["best_config"]["muon_lr"] == 0.05
    assert analysis["recommendation"]["best"] not in {f["config_id"] for f in analysis["failures"]}
    for f in ("final_results.json", "comprehensive_report.json", "report.md", "report.html", "results.csv",
              "top_performers_analysis.png"):
        assert (tmp_path / "d" / f).exists(), f


def _fake(exp_dir, i, lr, ratio, loss, status="ok"):
    rec = {"experiment_id": f"exp_{i:03d}", "status": status, "hyperparameters": {"muon_lr": lr,
                                                                                  "adamw_lr_ratio": ratio},
           "val_loss": loss if status == "ok" else None, "val_accuracy": 0.5, "val_perplexity": 3.0,
           "final_train_loss": loss, "train_time_s": 1.0}
    (exp_dir / f"exp_{i:03d}.json").write_text(json.dumps(rec))


def test_analysis_of_a_hand_made_folder(tmp_path):
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    # loss is lowest at the largest muon_lr (edge) and at the middle ratio (bracketed)
    i = 0
    for lr, lr_pen in ((0.01, 0.6), (0.03, 0.3), (0.1, 0.0)):
        for ratio, r_pen in ((0.05, 0.2), (0.1, 0.0), (0.5, 0.25)):
            _fake(exp_dir, i, lr, ratio, 3.0 + lr_pen + r_pen)
            i += 1
    _fake(exp_dir, i, 0.001, 0.1, None, status="diverged")  # failed: must never be recommended
    (exp_dir / "exp_999.json").write_text("{not json")  # corrupt: reported and skipped
    before = {f.name: f.read_bytes() for f in exp_dir.iterdir()}
    (tmp_path / "report.md").write_text("the user's own notes")
    with pytest.raises(UserError, match="is not a study folder"):  # analyze writes into study folders only
        analyze_folder(tmp_path, log=lambda m: None)
    assert (tmp_path / "report.md").read_text() == "the user's own notes"
    records, bad = load_records(tmp_path)
    result = {**analyze(records), "skipped_files": bad}
    rec = result["recommendation"]
    assert rec["best_config"] == {"muon_lr": 0.1, "adamw_lr_ratio": 0.1}
    assert rec["margin"] == pytest.approx(0.2)
    warnings = " ".join(rec["edge_warnings"])
    assert "muon_lr" in warnings and "largest" in warnings and "adamw_lr_ratio" not in warnings
    assert result["n_failed"] == 1 and result["skipped_files"] == ["exp_999.json"]
    assert result["most_important"] == "muon_lr"
    assert {f.name: f.read_bytes() for f in exp_dir.iterdir()} == before  # never modified


def _study_folder(d):
    (d / "experiments").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"study": {"kind": "grid", "name": "s", "base": {}, "experiments": []}}))


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "results folder not found"),
    (lambda d: d.mkdir(), "is not a study folder: no config.json there"),
    (lambda d: _study_folder(d), "no experiment results"),
    (lambda d: _study_folder(d) or (d / "experiments" / "a.json").write_text("{"), "no readable experiment results"),
    (lambda d: d.mkdir() or (d / "config.json").write_text("[1, 2]"), "is not a moe-ablate study file"),
])
def test_analyze_bad_input(tmp_path, capsys, setup, message):
    d = tmp_path / "study"
    setup(d)
    assert main(["analyze", "--results-dir", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
