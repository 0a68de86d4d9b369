import math

import pytest
import torch

from moe_ablate.models import build_model
from moe_ablate.optim import Muon, lr_factor, newton_schulz, split_params

from .helpers import run_optimizer, small_model_cfg


def test_muon_matches_torch_muon_in_bf16(problem):
    ref = run_optimizer(torch.optim.Muon, *problem)
    ours = run_optimizer(Muon, *problem, ns_dtype=torch.bfloat16)
    for a, b in zip(ref, ours):
        assert torch.equal(a, b)


def test_muon_fp32_matches_torch_muon_up_to_bf16_rounding(problem):
    weights, _ = problem
    ref = run_optimizer(torch.optim.Muon, *problem)
    ours = run_optimizer(Muon, *problem, ns_dtype=torch.float32)
    for a, b, w in zip(ref, ours, weights):
        step = (a - w).abs().max()
        assert (a - b).abs().max() < 0.05 * step


def test_newton_schulz_fp32_vs_fp64():
    g = torch.randn(48, 80, dtype=torch.float64)
    assert torch.allclose(newton_schulz(g.float()).double(), newton_schulz(g, dtype=torch.float64), atol=1e-4)


def test_3d_expert_tensor_is_orthogonalised_per_expert(problem):
    torch.manual_seed(1)
    experts = torch.randn(4, 64, 32)
    grads = [[torch.randn(4, 64, 32)] for _ in range(2)]
    stacked = run_optimizer(Muon, [experts], grads)[0]
    for e in range(4):
        single = run_optimizer(Muon, [experts[e]], [[g[0][e]] for g in grads])[0]
        assert torch.allclose(stacked[e], single, atol=1e-6)
    unbatched = run_optimizer(Muon, [experts], grads, batched=False)[0]
    assert torch.allclose(stacked, unbatched, atol=1e-6)


@pytest.mark.parametrize("name", ["moe", "deepseek_glm4_moe", "deepseek_mlp"])
def test_split_sends_hidden_matrices_to_muon_and_the_rest_to_adamw(name):
    model = build_model(small_model_cfg(name))
    muon, adamw = split_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for p in muon}
    adamw_names = {names[id(p)] for p in adamw}
    assert "token_embedding.weight" in adamw_names
    assert all(p.ndim in (2, 3) for p in muon)
    assert not any("router" in n or ".gate.weight" in n or "norm" in n for n in muon_names)
    assert all(p.ndim == 1 or "embedding" in names[id(p)] or "router" in names[id(p)]
               or names[id(p)].endswith("gate.weight") for p in adamw)
    if name != "deepseek_mlp":
        assert any(p.ndim == 3 for p in muon)
    assert len(muon) + len(adamw) == len(list(model.parameters()))


def test_schedule_warmup_then_cosine_to_ten_percent():
    total = 100
    assert lr_factor(0, total) == pytest.approx(1 / 5)
    assert lr_factor(4, total) == pytest.approx(1.0)
    assert lr_factor(5, total) == pytest.approx(1.0)
    mid = 5 + (total - 5) // 2
    assert lr_factor(mid, total) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (mid - 5) / 95)))
    assert lr_factor(total, total) == pytest.approx(0.1)


@pytest.mark.parametrize("shape", [(128, 512), (3, 40, 130), (96, 200)])
def test_gram_space_newton_schulz_equals_the_standard_iteration(shape):
    g = torch.randn(*shape, dtype=torch.float64)
    standard = newton_schulz(g, dtype=torch.float64, gram=False)
    assert torch.allclose(newton_schulz(g, dtype=torch.float64, gram=True), standard, atol=1e-10)
    assert torch.allclose(newton_schulz(g.float(), gram=True).double(), standard, atol=1e-5)
