"""WSD schedules and branched horizons: a branch equals a dedicated run of its length, metric for metric,
and a study killed in its trunk or in a branch resumes to the same records."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from moe_ablate.cli import main
from moe_ablate.config import ExperimentConfig, apply_overrides
from moe_ablate.optim import decay_start, lr_factor
from moe_ablate.studies.engine import branching
from moe_ablate.studies.spec.file import ExperimentSpec

from .helpers import kill_resume, write_study, wsd_study

COMPARED = ("status", "steps", "val_loss", "best_val_loss", "best_step", "final_train_loss", "val_accuracy",
            "final_lr", "tokens_seen", "flops", "early_stopped")





def test_wsd_schedule_shape():
    T = 100
    assert decay_start(T, 0.2) == 80 and decay_start(40, 0.2) == 32 and decay_start(10, 0.01) == 9
    f = lambda s, **kw: lr_factor(s, T, 0.05, 0.0, schedule="wsd", warmup_steps=4, decay_frac=0.2, **kw)  # noqa: E731
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert all(f(s) == 1.0 for s in range(4, 81))  # stable through the decay start
    assert f(90) == pytest.approx(1 - math.sqrt(0.5)) and f(90, decay_shape="linear") == pytest.approx(0.5)
    assert f(100) == 0.0 and f(99) > 0
    assert lr_factor(50, T, 0.05, 0.1, schedule="constant") == 1.0
    # the horizons of a study share every factor up to the shorter one's decay start
    short = lambda s: lr_factor(s, 40, 0.05, 0.0, schedule="wsd", warmup_steps=4)  # noqa: E731
    assert all(short(s) == f(s) for s in range(33)) and short(33) < f(33)


def _cfg(steps, **kw):
    return apply_overrides(ExperimentConfig(), {"train.steps": steps, "train.schedule": "wsd", **kw})


def test_families_need_a_shared_warmup():
    specs = [ExperimentSpec(f"e{i}", {"train.steps": T}) for i, T in enumerate((40, 80, 120))]
    shared = {s.id: _cfg(s.overrides["train.steps"], **{"train.warmup_steps": 4}) for s in specs}
    (fam,) = branching.families(specs, shared)
    assert fam.trunk.id == "e2" and [(s.id, p) for s, p in fam.branches] == [("e0", 32), ("e1", 64)]
    notes = []
    by_fraction = {s.id: _cfg(s.overrides["train.steps"]) for s in specs}  # 5% of 40, 80, 120: three warmups
    assert branching.families(specs, by_fraction, notes.append) == [] and "warmup_steps" in notes[0]
    cosine = {s.id: _cfg(s.overrides["train.steps"], **{"train.schedule": "cosine"}) for s in specs}
    assert branching.families(specs, cosine) == []


def _records(d):
    return {p.stem: json.loads(p.read_text()) for p in (d / "experiments").glob("*.json")}


def _same(a: dict, b: dict) -> list[str]:
    out = [f"{m}: {a.get(m)} != {b.get(m)}" for m in COMPARED if a.get(m) != b.get(m)]
    for part, keys in (("train", ("step", "loss", "accuracy", "lr", "tokens")), ("eval", ("step", "loss", "accuracy"))):
        if [[h[k] for k in keys] for h in a["history"][part]] != [[h[k] for k in keys] for h in b["history"][part]]:
            out.append(f"history {part} differs")
    return out


def test_branched_horizons_equal_dedicated_wsd_runs(tmp_path, cache_dir):
    """Horizons {40, 80, 120} as branches of one trunk give the records of three dedicated WSD runs."""
    cfg = wsd_study(tmp_path, cache_dir, (40, 80, 120), lrs="[0.01, 0.05]", wds="[0.0, 0.1]")
    text = cfg.read_text()
    common = ["--output-dir", str(tmp_path), "--no-progress"]
    assert main(["run", "--config", str(cfg), "--name", "branched", *common]) == 0
    got = _records(tmp_path / "branched")
    assert len(got) == 3 * 4  # 3 horizons x 2 LRs x 2 weight decays
    for T in (40, 80, 120):  # each horizon alone: no family, a dedicated run
        one = tmp_path / f"h{T}.toml"
        one.write_text(text.replace("steps = [40, 80, 120]", f"steps = [{T}]"))
        assert main(["run", "--config", str(one), "--name", f"dedicated_{T}", *common]) == 0
    dedicated = {}
    for T in (40, 80, 120):
        for r in _records(tmp_path / f"dedicated_{T}").values():
            dedicated[(T, r["hyperparameters"]["muon_lr"], r["hyperparameters"]["weight_decay"])] = r
    branched = 0
    for r in got.values():
        hp = r["hyperparameters"]
        ref = dedicated[(hp["steps"], hp["muon_lr"], hp["weight_decay"])]
        assert _same(r, ref) == [], (r["experiment_id"], _same(r, ref))
        if hp["steps"] < 120:
            assert r["branched_from"]["step"] == decay_start(hp["steps"], 0.2)  # 32 and 64: between log steps
            branched += 1
        else:
            assert "branched_from" not in r
    assert branched == 8
    b = json.loads((tmp_path / "branched" / "branching.json").read_text())
    assert b["separate_steps"] == 4 * (40 + 80 + 120) and b["trained_steps"] == 4 * (120 + 8 + 16)
    assert not (tmp_path / "branched" / "checkpoints").exists()  # every branch point is gone at the end
    a = json.loads((tmp_path / "branched" / "analysis.json").read_text())
    assert a["lr_by_horizon"]["axis"] == "steps" and len(a["lr_by_horizon"]["rows"]) == 3
    assert not any("steps" in w for w in a["recommendation"]["edge_warnings"])  # a budget, not an edge
    report = (tmp_path / "branched" / "report.md").read_text()
    assert "## Token horizons from one trunk (WSD)" in report and "40% saved" in report
    assert "## Does the optimal muon_lr move with steps?" in report


def test_a_diverging_trunk_leaves_its_horizons_to_dedicated_runs(tmp_path, cache_dir):
    cfg = wsd_study(tmp_path, cache_dir, (20, 40), lrs="[0.02, 1000.0]")
    assert main(["run", "--config", str(cfg), "--name", "d", "--output-dir", str(tmp_path), "--no-progress"]) == 0
    recs = {(r["hyperparameters"]["steps"], r["hyperparameters"]["muon_lr"]): r
            for r in _records(tmp_path / "d").values()}
    assert recs[(20, 1000.0)]["status"] == recs[(40, 1000.0)]["status"] == "diverged"
    assert not recs[(20, 1000.0)].get("branched_from")  # its trunk diverged before step 16: a dedicated run
    assert recs[(20, 0.02)]["branched_from"] == {"experiment_id": "exp_002", "step": 16}


def _study_cmd(cfg, out):
    return [sys.executable, "-m", "moe_ablate", "run", "--config", str(cfg), "--output-dir", str(out), "--name", "s",
            "--no-progress"]


def _kill_after(cmd, marker: str, delay: float) -> str:
    """Start ``cmd``, SIGKILL it ``delay`` seconds after a log line containing ``marker``; return the log."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return "".join(seen)


@pytest.mark.slow
def test_sigkill_in_the_trunk_and_in_a_branch_then_resume(tmp_path, cache_dir):
    # a model big enough that a trunk segment and a branch take a second or more on two cores
    cfg = wsd_study(tmp_path, cache_dir, (40, 80, 120), width=(128, 512))
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    assert subprocess.run(_study_cmd(cfg, ref_out), capture_output=True, timeout=600).returncode == 0
    study = out / "s"
    log = _kill_after(_study_cmd(cfg, out), "trunk to step 64", 0.3)  # inside the trunk's second segment
    assert "exp_000 [" in log and not (study / "experiments" / "exp_001.json").exists()
    assert not (study / "checkpoints" / "exp_002" / "checkpoint_step_64.pt").exists(), "the kill should land mid-trunk"
    resume = _study_cmd(cfg, out)[:4] + ["--resume", str(study), "--no-progress"]
    log = _kill_after(resume, "branching off exp_002 at step 64", 0.2)  # inside the branch of horizon 80
    assert not (study / "experiments" / "exp_001.json").exists(), "the kill should land mid-branch"
    assert (study / "checkpoints" / "exp_002" / "checkpoint_step_64.pt").exists()
    done = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ref, got = _records(ref_out / "s"), _records(study)
    assert sorted(ref) == sorted(got) == ["exp_000", "exp_001", "exp_002"]
    for k in ref:
        assert _same(got[k], ref[k]) == [], (k, _same(got[k], ref[k]))
    assert not (study / "checkpoints").exists()


def test_halving_and_lr_search_take_a_wsd_schedule(tmp_path, cache_dir):
    """A WSD run is a schedule like any other: halving's survivors equal the full grid, lr-search runs it."""
    cfg = write_study(tmp_path, cache_dir, steps=20, lrs="[0.01, 0.05]")
    common = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--no-progress", "--eval-every", "5",
              "--schedule", "wsd", "--warmup-steps", "2", "--decay-frac", "0.3", "--confirm", "0"]
    assert main(common + ["--name", "full"]) == 0
    assert main(common + ["--name", "half", "--halving", "2", "--min-steps", "10"]) == 0
    full, half = _records(tmp_path / "full"), _records(tmp_path / "half")
    survivors = [k for k, r in half.items() if r["status"] == "ok"]
    assert len(survivors) == 2
    for k in survivors:
        assert _same(half[k], full[k]) == []
        lrs = [h["lr"] for h in half[k]["history"]["train"]]
        assert lrs[0] == lrs[2] and lrs[-1] < lrs[2]  # stable, then the decay over the last 30%
    assert main(["lr-search", "--exp", "9", "--lrs", "0.01", "0.03", "0.1", "--steps", "6", "--eval-every", "3",
                 "--schedule", "wsd", "--warmup-steps", "1", "--output-dir", str(tmp_path / "lr"), "--confirm", "0",
                 *kill_resume.SMALL, "--cache-dir", str(cache_dir)]) == 0
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "lr").glob("*/experiments/lr_0.03.json")]
    lrs = [h["lr"] for h in rec["history"]["train"]]
    assert rec["config"]["train"]["schedule"] == "wsd" and lrs[-1] == pytest.approx(0.1 * lrs[0])  # decayed to 10%
