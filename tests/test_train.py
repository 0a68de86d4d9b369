import math

import pytest
import torch

from moe_ablate.config import apply_overrides
from moe_ablate.training import train

QUIET = dict(progress=False, log=lambda m: None)


def test_loss_falls_on_builtin_data(small_cfg, small_data):
    cfg = apply_overrides(small_cfg, {"train.steps": 40, "train.eval_every": 10, "train.muon_lr": 0.05})
    result, _ = train(cfg, small_data, **QUIET)
    evals = [e["loss"] for e in result["history"]["eval"]]
    assert result["status"] == "ok"
    assert evals[-1] < evals[0] - 0.5
    assert result["val_loss"] < math.log(small_data.vocab_size) - 1.0
    assert result["params"]["active"] < result["params"]["total"]
    assert result["routing"]["load_fraction"] and abs(sum(result["routing"]["load_fraction"]) - 1) < 1e-3
    assert result["data"]["train_range"][1] <= result["data"]["val_range"][0]  # disjoint


def test_nan_producing_lr_ends_as_diverged(small_cfg, small_data):
    cfg = apply_overrides(small_cfg, {"train.muon_lr": 1e30, "train.grad_clip": 0.0, "train.steps": 20,
                                      "train.log_every": 1})
    result, _ = train(cfg, small_data, **QUIET)
    assert result["status"] == "diverged"
    assert result["steps"] < 20


def test_early_stopping_really_stops(small_cfg, small_data):
    # a tiny LR makes no progress: patience 2 must end the run long before 200 steps
    cfg = apply_overrides(small_cfg, {"train.muon_lr": 1e-9, "train.steps": 200, "train.eval_every": 2,
                                      "train.patience": 2, "train.min_delta": 0.01})
    result, _ = train(cfg, small_data, **QUIET)
    assert result["early_stopped"] and result["steps"] <= 8


@pytest.mark.parametrize("model", ["moe", "deepseek_glm4_moe"])
def test_resume_reproduces_the_uninterrupted_run(small_cfg, small_data, tmp_path, model):
    cfg = apply_overrides(small_cfg, {"model.name": model, "train.steps": 10, "train.log_every": 1,
                                      "train.eval_every": 5, "model.dropout": 0.1})
    straight, _ = train(cfg, small_data, **QUIET)
    half, _ = train(cfg, small_data, checkpoint_dir=tmp_path, stop_at=5, **QUIET)
    assert half["steps"] == 5
    resumed, _ = train(cfg, small_data, resume_from=tmp_path / "checkpoint_step_5.pt", **QUIET)

    def losses(r):
        return [h["loss"] for h in r["history"]["train"]]

    assert losses(resumed) == losses(straight)
    assert [e["loss"] for e in resumed["history"]["eval"]] == [e["loss"] for e in straight["history"]["eval"]]


def test_a_reused_model_trains_exactly_like_a_fresh_one(small_cfg, small_data):
    fresh, model = train(small_cfg, small_data, **QUIET)
    train(apply_overrides(small_cfg, {"train.muon_lr": 0.05}), small_data, model=model, **QUIET)  # dirty it
    reused, _ = train(small_cfg, small_data, model=model, **QUIET)
    assert [h["loss"] for h in reused["history"]["train"]] == [h["loss"] for h in fresh["history"]["train"]]


def test_out_of_memory_ends_as_oom_and_the_model_stays_usable(small_cfg, small_data, monkeypatch):
    from moe_ablate.models.base import TransformerLM

    real_loss, calls = TransformerLM.loss, {"n": 0}

    def loss(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_loss(self, x, y)

    monkeypatch.setattr(TransformerLM, "loss", loss)
    result, model = train(small_cfg, small_data, **QUIET)
    assert result["status"] == "oom" and "out of memory" in result["error"]
    monkeypatch.setattr(TransformerLM, "loss", real_loss)
    again, _ = train(small_cfg, small_data, model=model, **QUIET)
    fresh, _ = train(small_cfg, small_data, **QUIET)
    assert again["status"] == "ok" and again["val_loss"] == fresh["val_loss"]


def test_resumed_run_reports_the_routing_load_of_the_whole_run(small_cfg, small_data, tmp_path):
    straight, _ = train(small_cfg, small_data, **QUIET)
    train(small_cfg, small_data, checkpoint_dir=tmp_path, stop_at=5, **QUIET)
    resumed, _ = train(small_cfg, small_data, resume_from=tmp_path / "checkpoint_step_5.pt", **QUIET)
    assert resumed["routing"]["load_fraction"] == straight["routing"]["load_fraction"]
