"""A real tiny study with seeds and a confirmation stage, and a kill during confirmation."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from moe_ablate.cli import main

from .helpers import write_study


def test_seeds_and_confirmation_end_to_end(tmp_path, cache_dir, capsys):
    cfg = write_study(tmp_path, cache_dir, steps=8)
    assert main(["run", "--config", str(cfg), "--seeds", "2", "--confirm", "2", "--output-dir", str(tmp_path),
                 "--name", "c", "--no-progress"]) == 0
    d = tmp_path / "c"
    recs = [json.loads(p.read_text()) for p in (d / "experiments").glob("*.json")]
    grid = [r for r in recs if r["stage"] == "grid"]
    confirm = [r for r in recs if r["stage"] == "confirm"]
    assert len(grid) == 12 and 2 <= len(confirm) <= 6 and len(confirm) % 2 == 0
    for r in confirm:  # new seeds, after the two each configuration already had
        assert r["config"]["train"]["seed"] in (44, 45) and r["experiment_id"].endswith(("_s2", "_s3"))
    a = json.loads((d / "analysis.json").read_text())
    rec = a["recommendation"]
    best_runs = [r for r in recs if r["config_id"] == rec["best"]]
    assert len(best_runs) == 4 and rec["best"] in rec["confirmed"]  # the best was confirmed...
    assert rec["n"] == 2 and rec["estimated_on"] == "confirmation seeds"  # ...and is reported on the fresh seeds only
    assert rec["val_loss"] == pytest.approx(sum(r["val_loss"] for r in best_runs if r["stage"] == "confirm") / 2)
    assert rec["noise_std"] > 0 and rec["verdict"] in ("better", "indistinguishable", "cannot_tell")
    assert a["confirmation"]["runs"] == len(confirm) and a["confirmation"]["seconds"] > 0
    report = (d / "report.md").read_text()
    assert report.index("## Answer") < report.index("## Evidence")
    for text in ("Run-to-run noise (pooled std", "Is the best really better?", "Near-optimal set", "familywise level "
                                                                                                   "0.05",
                 "Confirmation stage:", "loss_vs_lr.png", "validation_curves.png"):
        assert text in report, text


@pytest.mark.slow
def test_sigkill_during_confirmation_then_resume_loses_nothing(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=40, confirm=2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "moe_ablate", "run", "--config", str(cfg), "--output-dir", str(out), "--name", "k",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    exp_dir = out / "k" / "experiments"
    deadline = time.time() + 300
    while time.time() < deadline and not list(exp_dir.glob("*_s1.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {f.name: f.read_bytes() for f in exp_dir.glob("*.json")}
    assert len(before) >= 7, "the kill should land during confirmation"
    stored = json.loads((out / "k" / "config.json").read_text())["study"]["experiments"]
    planned = [e["id"] for e in stored]
    assert len(planned) > 6 and len(before) < len(planned)
    resumed = subprocess.run(cmd[:4] + ["--resume", str(out / "k"), "--no-progress"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = {f.name: f.read_bytes() for f in exp_dir.glob("*.json")}
    assert sorted(after) == sorted(f"{i}.json" for i in planned)  # each planned experiment exactly once
    assert all(after[name] == data for name, data in before.items())  # finished before the kill: untouched
    restored = json.loads((out / "k" / "config.json").read_text())["study"]["experiments"]
    assert [e["id"] for e in restored] == planned  # confirmation was not chosen twice
    assert not [p for p in (out / "k").rglob("*.tmp")]
