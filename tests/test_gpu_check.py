"""The GPU measurement script cannot rot: its CPU dry run (the same steps, tiny sizes) runs in the slow tier."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_check_dry_run_measures_every_step_and_fits_the_device_file_limit(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "PY": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["env"]["ok"] and s["env"]["matmul_peak_gflops"] > 0
    assert "skipped" in s["tests"]["summary"] and s["tests"]["exit"] == 0  # no CUDA here: the tier skips
    (row,) = s["bench"]
    assert row["exit"] == 0 and row["ms_per_step"] > 0 and 0 < row["share_of_measured_peak"] < 1
    assert set(row["phase_share"]) == {"forward+backward", "clip", "muon", "adamw"}
    assert row["profile_summary"]["by_category_ms_per_step"] and (out / "profile_tiny_eager_b2.txt").exists()
    g = s["grid"]
    assert g["sequential"]["records"] == 2 and g["parallel"]["records"] == 4
    assert g["estimate_270_sequential_min"] > 0 and g["estimate_270_parallel_min"] > 0
    assert (out / "summary.md").read_text().startswith("# gpu_check")
    assert len(list(out.iterdir())) <= 8  # what one device call returns
