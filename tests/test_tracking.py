"""Live tracking: TensorBoard event files read back; W&B offline and MLflow's file store when installed."""


import pytest

from moe_ablate.cli import main
from moe_ablate.studies.engine.pipeline import run_study
from moe_ablate.studies.kinds import grid

from .helpers import write_study


def study(tmp_path, cache_dir, lrs="[0.05]"):
    return grid.make_study(str(write_study(tmp_path, cache_dir, steps=8, lrs=lrs)))  # 2 experiments


@pytest.mark.extras
def test_tensorboard_gets_every_metric_at_the_right_steps(tmp_path, cache_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    d = tmp_path / "tb_study"
    result = run_study(study(tmp_path, cache_dir), d, trackers=("tensorboard",), log=lambda m: None, progress=False)
    root = tmp_path / "tracking" / "tensorboard" / "tb_study"
    for rec in result.records:
        acc = EventAccumulator(str(root / rec["experiment_id"]))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/lr", "train/tokens_per_s", "val/loss", "val/accuracy", "val/perplexity",
                "routing/load_cv"} <= tags
        h = rec["history"]
        assert [e.step for e in acc.Scalars("train/loss")] == [t["step"] for t in h["train"]]
        assert [round(e.value, 5) for e in acc.Scalars("train/loss")] == [round(t["loss"], 5) for t in h["train"]]
        assert [e.step for e in acc.Scalars("val/loss")] == [e["step"] for e in h["eval"]]
        assert acc.Scalars("val/loss")[-1].value == pytest.approx(rec["val_loss"], rel=1e-6)
        assert "hparams/val_loss" in tags  # the HParams view: final metrics per run
    report = EventAccumulator(str(root / "_study"))
    report.Reload()
    assert report.Tags()["tensors"]  # report.md attached as text


def test_a_missing_tracker_package_is_one_line(tmp_path, cache_dir, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--tracker", "wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["moe-ablate: error: --tracker wandb needs the wandb package: pip install 'moe-ablate[wandb]'"]
    assert not (tmp_path / "o").exists()


@pytest.mark.extras
def test_a_failing_tracker_never_fails_the_experiment(tmp_path, cache_dir, monkeypatch):
    pytest.importorskip("tensorboard")
    from moe_ablate import tracking

    def broken(self, metrics, step):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tracking._TensorBoard, "log", broken)
    said = []
    result = run_study(study(tmp_path, cache_dir), tmp_path / "s", trackers=("tensorboard",), log=said.append,
                       progress=False)
    assert all(r["status"] == "ok" for r in result.records)
    assert sum("tracker tensorboard failed" in m for m in said) == 2  # once per run, then off


@pytest.mark.extras
def test_wandb_offline(tmp_path, cache_dir, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run_study(study(tmp_path, cache_dir), tmp_path / "w", trackers=("wandb",), log=lambda m: None,
                       progress=False)
    runs = sorted((tmp_path / "tracking" / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # one per experiment + the study's report
    assert all(r["status"] == "ok" for r in result.records)


@pytest.mark.extras
def test_mlflow_file_store_and_resume_without_duplicates(tmp_path, cache_dir, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    d = tmp_path / "m"
    run_study(study(tmp_path, cache_dir), d, trackers=("mlflow",), log=lambda m: None, progress=False)
    for f in (d / "experiments").glob("*.json"):
        f.unlink()  # as if killed: both experiments run again on resume
    run_study(None, d, resume=True, trackers=("mlflow",), log=lambda m: None, progress=False)
    client = mlflow.MlflowClient((tmp_path / "tracking" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("m")
    runs = client.search_runs([exp.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert names == ["m/exp_000", "m/exp_001", "m/study"]  # replaced, not duplicated
    run = next(r for r in runs if r.info.run_name == "m/exp_000")
    assert run.data.params["muon_lr"] == "0.05" and "val_loss" in run.data.metrics
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert steps == [4, 8]
