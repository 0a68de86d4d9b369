import pytest
import torch

from moe_ablate.config import preset_config
from moe_ablate.models import MODEL_NAMES, build_model
from moe_ablate.models.moe import MoEFeedForward

from .helpers import small_model_cfg


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_future_tokens_never_change_the_past(name):
    torch.manual_seed(0)
    model = build_model(small_model_cfg(name, router_noise=0.0)).eval()
    x = torch.randint(0, 97, (2, 24))
    for t in (0, 7, 22):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 97, y[:, t + 1:].shape)
        a, _ = model(x)
        b, _ = model(y)
        assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5), f"position <= {t} saw the future"
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-5)


def test_router_weights_sum_to_one_and_uniform_aux_is_analytic():
    cfg = small_model_cfg("moe", router_noise=0.0, aux_loss_weight=0.25)
    ffn = MoEFeedForward(cfg)
    torch.nn.init.normal_(ffn.w1, std=0.02)
    torch.nn.init.normal_(ffn.w2, std=0.02)
    torch.nn.init.normal_(ffn.router.weight)
    x = torch.randn(64, cfg.d_model)
    top_w = ffn.router(x).float().topk(cfg.top_k, -1).values.softmax(-1)
    assert torch.allclose(top_w.sum(-1), torch.ones(64))
    # uniform routing probabilities: E · Σ f_e · (1/E) = 1, times the weight
    torch.nn.init.zeros_(ffn.router.weight)
    _, aux = ffn(x)
    assert aux.item() == pytest.approx(0.25, rel=1e-6)
    # a skewed router gives a larger balance loss
    with torch.no_grad():
        ffn.router.weight[0] = 1.0
    _, aux_skewed = ffn(torch.ones(64, cfg.d_model))
    assert aux_skewed.item() > 0.25


def test_fast_dispatch_matches_the_plain_loop():
    torch.manual_seed(0)
    cfg = small_model_cfg("moe", router_noise=0.0, num_experts=8, top_k=2)
    ffn = MoEFeedForward(cfg)
    for w in (ffn.w1, ffn.w2, ffn.router.weight):
        torch.nn.init.normal_(w, std=0.2)
    x = torch.randn(3, 50, cfg.d_model)
    outs, grads = {}, {}
    for mode in ("masked", "sorted", "grouped"):
        ffn.dispatch = mode
        ffn.zero_grad()
        xi = x.clone().requires_grad_()
        y, aux = ffn(xi)
        (y.square().sum() + aux).backward()
        outs[mode], grads[mode] = y.detach(), (xi.grad, ffn.w1.grad.clone(), ffn.w2.grad.clone())
    for mode in ("sorted", "grouped"):
        assert torch.allclose(outs[mode], outs["masked"], atol=1e-5)
        for g, ref in zip(grads[mode], grads["masked"]):
            assert torch.allclose(g, ref, atol=1e-4)


def _by_hand(name, preset, V=49152):
    c = preset_config(preset, name).model
    d, L, f, E, k = c.d_model, c.n_layers, c.d_ff, c.num_experts, c.top_k
    H = c.n_heads
    qk = c.qk_nope_head_dim + c.qk_rope_head_dim
    mla = (d * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * H * qk  # q_a, q norm, q_b
           + d * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank  # kv_a, kv norm
           + c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim) + H * c.v_head_dim * d)  # kv_b, o
    norms = 2 * d
    if name == "moe":
        per_layer, inactive = 4 * d * d + norms + E * 2 * d * f + d * E, (E - k) * 2 * d * f
    elif name == "deepseek_mlp":
        per_layer, inactive = mla + norms + 3 * d * f, 0
    else:
        per_layer = mla + norms + E * 3 * d * f + 3 * d * f * c.n_shared_experts + E * d
        inactive = (E - k) * 3 * d * f
    total = V * d + L * per_layer + d  # tied embedding/head + final norm
    return total, total - L * inactive


@pytest.mark.parametrize("name, preset", [("moe", "seed"), ("deepseek_mlp", "exp9"), ("deepseek_glm4_moe", "exp3")])
def test_parameter_counts_match_a_hand_calculation(name, preset):
    cfg = preset_config(preset, name).model
    cfg.vocab_size = 49152
    with torch.device("meta"):
        counts = build_model(cfg).param_counts()
    total, active = _by_hand(name, preset)
    assert counts == {"total": total, "active": active}


def test_glm4_bias_steers_routing_and_update_lowers_overloaded_expert():
    torch.manual_seed(0)
    model = build_model(small_model_cfg("deepseek_glm4_moe", bias_update_rate=0.01)).train()
    layer = model.moe_layers()[0]
    gate = layer.moe.gate
    x = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        gate.e_score_correction_bias[2] = 10.0  # a large bias on expert 2
    model.reset_routing_load()
    model(x)
    assert layer.load[2].item() == x.numel()  # every token went to expert 2
    before = gate.e_score_correction_bias.clone()
    model.after_optimizer_step()
    delta = gate.e_score_correction_bias - before
    assert delta[2].item() == pytest.approx(-0.01, rel=1e-4)  # over-loaded: lowered by gamma
    least = int(layer.load.argmin())
    assert delta[least].item() == pytest.approx(0.01, rel=1e-4)  # under-loaded: raised
    assert model.routing_stats()["cv"] > 0


@pytest.mark.parametrize("top_k", [2, 4])
def test_the_moe_backward_is_bitwise_reproducible_on_cpu_whatever_the_threads(top_k):
    """The resume tests compare a killed-and-resumed study with an uninterrupted one bit for bit, and seeds of one
    configuration are its repeats: a run must be a function of its settings. Before, each token's k gradient rows
    were added by ``index_put_(accumulate=True)`` (the backward of ``x[token_of]``), which on CPU uses atomic float
    adds across threads: for k >= 3 their order, so the rounding, changed from call to call (5 distinct input
    gradients in 40 identical passes; 5 distinct training curves in 6 identical runs)."""
    from dataclasses import replace

    cfg = replace(preset_config("tiny").model, top_k=top_k, router_noise=0.0)
    torch.manual_seed(0)
    layer = MoEFeedForward(cfg)
    for p in layer.parameters():
        torch.nn.init.normal_(p, 0.0, 0.02)
    x0 = torch.randn(8, 128, cfg.d_model)  # above ATen's grain size, so the parallel path is taken

    def grad(threads: int) -> bytes:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            x = x0.clone().requires_grad_(True)
            out, aux = layer(x)
            (out.square().sum() + aux).backward()
            return x.grad.numpy().tobytes()
        finally:
            torch.set_num_threads(before)

    serial = grad(1)
    assert all(grad(2) == serial for _ in range(20))
