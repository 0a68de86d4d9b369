"""The Ray executor on a local CPU cluster. Skipped when the optional Ray extra is not installed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .helpers import write_study

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.extras]  # separate processes and a local cluster



def run(args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "moe_ablate"] + args, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def records(study):
    return {p.stem: json.loads(p.read_text()) for p in sorted((study / "experiments").glob("exp_*.json"))}


@pytest.fixture(autouse=True)
def no_stray_ray():
    yield
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"],
                   capture_output=True, timeout=120)


def test_ray_gives_the_same_experiments_and_metrics_as_local(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=6)
    base = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--no-progress"]
    # one thread each, so floating-point reductions happen in the same order
    local = run(base + ["--name", "local"], env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr[-2000:]
    remote = run(base + ["--name", "ray", "--executor", "ray", "--cpus-per-experiment", "1"])
    assert remote.returncode == 0, remote.stderr[-2000:]
    a, b = records(tmp_path / "local"), records(tmp_path / "ray")
    assert sorted(a) == sorted(b) == [f"exp_{i:03d}" for i in range(6)]
    for k in a:
        assert b[k]["executor"]["kind"] == "ray"
        for metric in ("val_loss", "val_accuracy", "final_train_loss", "best_val_loss"):
            assert a[k][metric] == b[k][metric], (k, metric)
    assert (tmp_path / "ray" / "report.md").exists()


@pytest.mark.parametrize("first, then", [("ray", "local"), ("local", "ray")])
def test_killed_driver_resumes_with_the_other_executor(tmp_path, cache_dir, first, then):
    cfg = write_study(tmp_path, cache_dir, steps=60)
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "moe_ablate", "run", "--config", str(cfg), "--output-dir", str(tmp_path),
           "--name", "s", "--no-progress", "--executor", first]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "experiments").glob("exp_*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"], capture_output=True)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "experiments").glob("exp_*.json")}
    assert 2 <= len(before) < 6
    resumed = run(["run", "--resume", str(out), "--no-progress", "--executor", then])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = sorted(p.name for p in (out / "experiments").glob("*.json"))
    assert after == [f"exp_{i:03d}.json" for i in range(6)]
    for name, mtime in before.items():
        assert (out / "experiments" / name).stat().st_mtime_ns == mtime


def test_a_killed_worker_is_retried_once(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=4)
    marker = tmp_path / "crashed-once"
    res = run(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "w", "--no-progress",
               "--executor", "ray"], env={"MOE_ABLATE_TEST_CRASH": f"exp_002:{marker}"}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert marker.exists()  # the worker really died once
    recs = records(tmp_path / "w")
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values())


def test_a_worker_that_keeps_dying_is_an_error_record_not_a_hang(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=4)
    res = run(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "e", "--no-progress",
               "--executor", "ray"], env={"MOE_ABLATE_TEST_CRASH": "exp_001"}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = records(tmp_path / "e")
    assert len(recs) == 6
    assert recs["exp_001"]["status"] == "error" and "worker failed after a retry" in recs["exp_001"]["error"]
    assert all(r["status"] == "ok" for k, r in recs.items() if k != "exp_001")


def test_removing_a_node_mid_study_reschedules_its_experiments(tmp_path, cache_dir):
    """Two worker nodes (no shared filesystem needed: the driver alone writes the folder); one is
    removed mid-study; its experiments run again on the other and the study ends complete."""
    import threading

    from ray.cluster_utils import Cluster

    from moe_ablate.studies.engine.pipeline import run_study
    from moe_ablate.studies.engine.ray_executor import RayExecutor
    from moe_ablate.studies.kinds import grid

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        study = grid.make_study(str(write_study(tmp_path, cache_dir, steps=40)))
        d = tmp_path / "n"

        def remove_one_node_after_the_first_record():
            deadline = time.time() + 300
            while time.time() < deadline and not list((d / "experiments").glob("*.json")):
                time.sleep(0.05)
            cluster.remove_node(nodes[0])

        remover = threading.Thread(target=remove_one_node_after_the_first_record)
        remover.start()
        result = run_study(study, d, executor=RayExecutor(address=cluster.address), log=lambda m: None,
                           progress=False)
        remover.join()
        assert len(result.records) == 6 and all(r["status"] == "ok" for r in result.records)
        assert len(list((d / "experiments").glob("*.json"))) == 6
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
