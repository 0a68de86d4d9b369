"""Full grid vs successive halving on the same 27 configurations (3 x 3 x 3, tiny preset, 60 steps).

    python scripts/halving_check.py [--out DIR]

Runs both studies through the CLI (no confirmation stage, so the comparison is of the grids alone)
and prints: each study's recommendation, whether halving's answer is the full grid's or in its
near-optimal set, and the training steps each used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
[study]
name = "halving_check"
preset = "tiny"
description = "3 x 3 x 3 grid for the successive-halving check"

[base.train]
steps = 60
eval_every = 5
log_every = 5

[grid.train]
muon_lr = [0.01, 0.03, 0.1]
adamw_lr_ratio = [0.05, 0.1, 0.5]
momentum = [0.9, 0.95, 0.99]
"""


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moe_ablate", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="keep the two study folders here (default: a temporary folder)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp())
    cfg = out / "halving_check.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(GRID)
    common = ["run", "--config", str(cfg), "--output-dir", str(out), "--no-progress", "--confirm", "0"]
    t_full = run(common + ["--name", "full"])
    t_half = run(common + ["--name", "halving", "--halving", "3"])
    full = json.loads((out / "full" / "analysis.json").read_text())["recommendation"]
    half = json.loads((out / "halving" / "analysis.json").read_text())["recommendation"]
    h = json.loads((out / "halving" / "halving.json").read_text())
    same = half["best"] == full["best"]
    in_near = half["best"] in full["near_optimal"]
    print(json.dumps({
        "full_best": full["best"], "full_config": full["best_config"], "full_val_loss": full["val_loss"],
        "full_near_optimal": full["near_optimal"], "full_verdict": full["verdict"],
        "halving_best": half["best"], "halving_val_loss": half["val_loss"],
        "same_recommendation": same, "halving_answer_in_full_near_optimal_set": in_near,
        "rungs": [(r["steps"], r["configurations"]) for r in h["rungs"]],
        "training_steps": {"full": h["full_grid_steps"], "halving": h["trained_steps"],
                           "share": round(h["share_of_full_grid"], 3)},
        "peak_checkpoint_mib": round(h["peak_checkpoint_bytes"] / 2**20, 2),
        "wall_s": {"full": round(t_full, 1), "halving": round(t_half, 1)}, "folders": str(out)}, indent=1))
    return 0 if (same or in_near) and h["share_of_full_grid"] <= 0.4 else 1


if __name__ == "__main__":
    sys.exit(main())
