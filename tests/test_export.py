"""A study's table: results.csv (and .parquet) in every folder, one row per record; `export` to CSV, Parquet and
an Optuna storage that Optuna loads back."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moe_ablate.cli import main

from .helpers import write_study


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("export")
    cfg = write_study(tmp, cache_dir, steps=4, lrs="[0.01, 0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp / "out"), "--name", "s", "--no-progress"]) == 0
    folder = tmp / "out" / "s"
    return folder, [json.loads(p.read_text()) for p in sorted((folder / "experiments").glob("*.json"))]


def test_results_csv_has_one_row_per_record_with_settings_status_and_metrics(finished):
    folder, records = finished
    df = pd.read_csv(folder / "results.csv")
    assert len(df) == len(records) == 4
    assert set(df.experiment_id) == {r["experiment_id"] for r in records}
    for r in records:
        row = df.set_index("experiment_id").loc[r["experiment_id"]]
        assert row["train.muon_lr"] == r["config"]["train"]["muon_lr"] and row["status"] == r["status"]
        assert row["val_loss"] == pytest.approx(r["val_loss"]) and row["flops"] == r["flops"]
        assert row["stage"] == "grid" and row["seed"] == r["seed"]
    parquet = pd.read_parquet(folder / "results.parquet")
    assert list(parquet.columns) == list(df.columns) and parquet.experiment_id.tolist() == df.experiment_id.tolist()
    assert parquet["val_loss"].tolist() == pytest.approx(df["val_loss"].tolist())


def test_export_csv_and_parquet_to_a_chosen_file(finished, tmp_path, capsys):
    folder, records = finished
    assert main(["export", str(folder), "--format", "csv", "--output", str(tmp_path / "r.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(records)
    assert main(["export", str(folder), "--format", "parquet", "--output", str(tmp_path / "r.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "r.parquet").experiment_id.tolist() == \
        pd.read_csv(tmp_path / "r.csv").experiment_id.tolist()
    assert main(["export", str(tmp_path), "--format", "csv"]) == 2  # not a study folder: one line
    assert "moe-ablate: error:" in capsys.readouterr().err


@pytest.mark.extras
def test_export_optuna_is_a_storage_optuna_loads_back(finished, tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    folder, records = finished
    db = tmp_path / "s.db"
    assert main(["export", str(folder), "--format", "optuna", "--output", str(db)]) == 0
    storage = f"sqlite:///{db}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert len(study.trials) == len(records) and study.user_attrs["metric"] == "val_loss"
    best = min((r for r in records if r["status"] == "ok"), key=lambda r: r["val_loss"])
    assert study.best_value == pytest.approx(best["val_loss"])
    assert study.best_trial.params == {"train.muon_lr": best["config"]["train"]["muon_lr"],
                                       "train.weight_decay": best["config"]["train"]["weight_decay"]}
    curve = {e["step"]: e["loss"] for e in best["history"]["eval"]}
    assert study.best_trial.intermediate_values == pytest.approx(curve)
    assert main(["export", str(folder), "--format", "optuna", "--output", str(db)]) == 2  # never overwritten
