"""``--dry-run``: the plan of a study, nothing written, and the runs it announces are the runs the study makes."""

from __future__ import annotations

import json
import re

import pytest

from moe_ablate.cli import main

from .helpers import kill_resume, write_study


def plan_numbers(out: str) -> dict[str, int]:
    grid = int(re.search(r"runs\s+(\d+) in the grid", out).group(1))
    more = re.search(r"\+ up to (\d+) confirmation runs", out)
    done = re.search(r"(\d+) of them already finished", out)
    return {"grid": grid, "confirm": int(more.group(1)) if more else 0, "finished": int(done.group(1)) if done else 0}


def records(folder):
    return [json.loads(p.read_text()) for p in (folder / "experiments").glob("*.json")]


@pytest.mark.parametrize("confirm", [0, 2])
def test_a_dry_run_writes_nothing_and_counts_the_runs_the_study_makes(tmp_path, cache_dir, capsys, confirm):
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.01, 0.05]", confirm=confirm)
    out_dir = tmp_path / "out"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["run", "--config", str(cfg), "--output-dir", str(out_dir), "--name", "s", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    plan = plan_numbers(out)
    assert "configurations  4" in out and "train.muon_lr 0.01, 0.05" in out and "ETA" in out
    assert re.search(r"measured\s+\d+ ms per step", out)
    assert main(["run", "--config", str(cfg), "--output-dir", str(out_dir), "--name", "s", "--no-progress"]) == 0
    capsys.readouterr()
    recs = records(out_dir / "s")
    grid = [r for r in recs if r.get("stage") != "confirm"]
    assert len(grid) == plan["grid"] == 4
    assert len(recs) - len(grid) <= plan["confirm"] == (2 * 3 if confirm else 0)
    # on the finished study, the plan says everything is done and nothing more will run
    assert main(["run", "--resume", str(out_dir / "s"), "--dry-run", "--no-measure"]) == 0
    again = plan_numbers(capsys.readouterr().out)
    assert again["finished"] == again["grid"] == len(recs) and again["confirm"] == 0


def test_a_dry_run_of_every_kind_exits_0_and_writes_nothing(tmp_path, cache_dir, capsys):
    for kind in ("scaling", "lr-search", "expert-search", "batch-seqlen"):
        fresh, _ = kill_resume.commands(kind, tmp_path, tmp_path / "out", 4, cache_dir)
        assert main([*fresh, "--dry-run", "--no-measure"]) == 0, kind
        out = capsys.readouterr().out
        assert "runs            " in out and "training FLOPs" in out, kind
    assert not (tmp_path / "out").exists()
