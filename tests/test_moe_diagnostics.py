"""What MoE researchers look at: routing health with planted loads, the z-loss's gradient, Muon's LR
scaling against torch's own, compute accounting, and the diagnostics in a real run's record."""

import math

import pytest
import torch

from moe_ablate.config import apply_overrides
from moe_ablate.models import build_model
from moe_ablate.models.base import DEAD_FRACTION, RoutingLoad
from moe_ablate.optim import Muon
from moe_ablate.training import train

from .helpers import run_optimizer, small_model_cfg


def test_maxvio_dead_experts_and_entropy_on_planted_loads():
    layer = RoutingLoad(4).train()
    ids = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)  # expert 3 gets nothing
    layer.record(ids, probs=torch.full((100, 4), 0.25))  # a uniform router distribution
    w = layer.take_window()
    assert w["maxvio"] == pytest.approx(0.7 * 4 - 1)  # max load / mean load - 1
    assert w["dead"] == 1 and DEAD_FRACTION / 4 < 0.10  # expert 3; expert 2's 10% is above the threshold
    assert w["entropy"] == pytest.approx(1.0)  # uniform = ln E, normalised to 1
    layer.record(torch.tensor([0, 1, 2, 3]), probs=torch.eye(4))  # the window was reset; one-hot router
    w = layer.take_window()
    assert w["maxvio"] == pytest.approx(0.0) and w["dead"] == 0 and w["entropy"] == pytest.approx(0.0, abs=1e-6)
    layer.eval()
    layer.record(ids)  # evaluation tokens do not count
    assert layer.take_window()["maxvio"] is None


def test_match_rms_adamw_equals_torch_muon(problem):  # noqa: F811
    ref = run_optimizer(torch.optim.Muon, *problem, adjust_lr_fn="match_rms_adamw")
    ours = run_optimizer(Muon, *problem, ns_dtype=torch.bfloat16, adjust_lr_fn="match_rms_adamw")
    original = run_optimizer(Muon, *problem, ns_dtype=torch.bfloat16, adjust_lr_fn="original")
    for a, b, c in zip(ref, ours, original):
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", ["moe", "deepseek_glm4_moe"])
def test_router_z_loss_gradient_reaches_the_router(name):
    def router_grad(z):
        cfg = small_model_cfg(name)
        cfg.aux_loss_weight, cfg.router_z_loss_weight, cfg.router_noise = 0.0, z, 0.0
        torch.manual_seed(0)
        model = build_model(cfg).train()
        _, aux = model(torch.randint(0, cfg.vocab_size, (2, 8)))
        if not aux.requires_grad:
            return 0.0
        aux.backward()
        return sum(float(p.grad.abs().sum()) for n, p in model.named_parameters()
                   if ("router" in n or "gate.weight" in n) and p.grad is not None)

    assert router_grad(0.0) == 0.0 and router_grad(1e-2) > 0


def test_flops_per_token_is_the_documented_formula_and_active_d_ff_equalises_top_k():
    cfg = small_model_cfg("moe")
    model = build_model(cfg)
    active = model.param_counts()["active"]
    assert model.flops_per_token(32) == 3 * (2 * active + 2 * cfg.n_layers * 32 * cfg.d_model)
    counts = []
    for k in (1, 2, 4):
        c = small_model_cfg("moe")
        c.num_experts, c.top_k, c.active_d_ff = 8, k, 128
        counts.append(build_model(c).param_counts())
    assert len({c["active"] for c in counts}) == 1  # equal active parameters whatever top-k
    assert counts[0]["total"] > counts[2]["total"]  # fewer, wider experts hold more parameters


def test_a_run_records_routing_health_and_compute(small_cfg, small_data):
    cfg = apply_overrides(small_cfg, {"model.bias_update_rate": 0.01, "model.name": "deepseek_glm4_moe"})
    result, _ = train(cfg, small_data, log=lambda m: None, progress=False)
    windows = result["history"]["routing"]
    assert [w["step"] for w in windows] == [e["step"] for e in result["history"]["eval"]]
    assert len(windows[0]["layers"]) == cfg.model.n_layers
    assert {"maxvio", "dead", "entropy", "bias_norm", "load_fraction"} <= set(windows[-1]["layers"][0])
    assert result["routing_maxvio"] >= 0 and 0 < result["routing_entropy"] <= 1
    assert result["routing_bias_norm"] > 0  # the aux-loss-free bias moved
    assert result["routing_maxvio_peak"] >= result["routing_maxvio"]
    assert result["flops"] == result["flops_per_token"] * result["tokens"] and result["tokens"] > 0
    assert result["params_active"] < result["params_total"]
    assert math.isfinite(result["val_loss"])


def _moe_run(config, seed, loss, maxvio, dead, fpt, experts):
    ev = [{"step": s, "tokens": 1000 * s, "loss": loss + 2.0 / s} for s in (10, 20, 30)]
    return {"experiment_id": f"{config}_s{seed}", "config_id": config, "status": "ok", "stage": "grid",
            "hyperparameters": {"num_experts": experts, "seed": seed}, "val_loss": loss + 2.0 / 30,
            "routing_maxvio": maxvio, "routing_maxvio_peak": maxvio + 0.5, "routing_dead_experts": dead,
            "routing_entropy": 0.8, "flops_per_token": fpt, "tokens": 30000, "flops": fpt * 30000,
            "history": {"eval": ev}}


def test_the_report_names_unhealthy_routing_and_compares_at_equal_compute():
    from moe_ablate.analysis.report import render
    from moe_ablate.analysis.stats import analyze

    records = []
    for s in range(2):
        records += [_moe_run("e4", s, 3.00 + 0.01 * s, 0.2, 0, 100, 4),
                    _moe_run("e16", s, 2.90 + 0.01 * s, 1.8, 3, 200, 16)]  # twice the compute, 3 dead experts
    a = analyze(records)
    r = a["routing"]
    assert [f["config_id"] for f in r["flagged"]] == ["e16"] and r["matched"] is False
    assert r["budget_flops"] == 100 * 30000  # what every configuration reached
    at = {row["config_id"]: row["val_loss_at_budget"] for row in r["equal_compute"]}
    # e16 reached 3,000,000 FLOPs at 15,000 tokens: between its evaluations at steps 10 and 20
    assert at["e16"] == pytest.approx(2.905 + (2.0 / 10 + 2.0 / 20) / 2) and at["e4"] == pytest.approx(3.005 + 2 / 30)
    a["answer"] = a["recommendation"]["text"]
    text = render("s", "t", "", {}, a, [], [])
    assert "## Routing health (MoE)" in text and "e16 (val_loss 2.9717, MaxVio 1.80, 3 dead)" in text
    assert "**not** matched in active compute (100 to 200 training FLOPs per token)" in text
