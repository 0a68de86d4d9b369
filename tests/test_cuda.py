"""The CUDA tier (`pytest -m cuda`): what only a GPU can show, skipped without one.

The one time this code met a GPU, every resume failed (the CPU RNG state had been mapped to the device) while
every CPU test passed. These tests run the real code paths on CUDA: exact resume, successive-halving
survivors, WSD branches, the MoE dispatch and Newton–Schulz in bf16, the fp16 + GradScaler path, one compile
per study, OOM as a record, and no host sync inside a training step. ``scripts/gpu_check.sh`` runs them first.

Tolerances. In fp32 with ``torch.use_deterministic_algorithms`` a resumed run must equal the uninterrupted one
bit for bit. Under bf16 autocast kernels may pick other reduction orders between processes, so runs are
compared within BF16_TOL in loss (bf16 has 8 bits of mantissa: 2^-8 relative is about 0.02 at a loss of 6).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from moe_ablate.cli import main
from moe_ablate.config import apply_overrides
from moe_ablate.training import train

from .helpers import small_model_cfg, write_study, wsd_study

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the GPU tier)")]
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism, before its first handle

QUIET = dict(progress=False, log=lambda m: None)
BF16_TOL = 0.02
CUDA = ["--device", "cuda"]


def _losses(r: dict, part: str = "train") -> list[float]:
    return [h["loss"] for h in r["history"][part]]


def _cuda(cfg, **kw):
    return apply_overrides(cfg, {"train.device": "cuda", **kw})


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("model", ["moe", "deepseek_glm4_moe", "deepseek_mlp"])
def test_fp32_resume_on_cuda_is_bit_exact(small_cfg, small_data, tmp_path, model, deterministic):
    cfg = _cuda(small_cfg, **{"model.name": model, "train.amp": "off", "train.steps": 10, "train.log_every": 1})
    straight, _ = train(cfg, small_data, **QUIET)
    train(cfg, small_data, checkpoint_dir=tmp_path, stop_at=5, **QUIET)
    resumed, _ = train(cfg, small_data, resume_from=tmp_path / "checkpoint_step_5.pt", **QUIET)
    assert resumed["status"] == straight["status"] == "ok"
    assert _losses(resumed) == _losses(straight)
    assert _losses(resumed, "eval") == _losses(straight, "eval")


@pytest.mark.parametrize("model", ["moe", "deepseek_glm4_moe"])
def test_bf16_resume_on_cuda_lands_within_bf16_tolerance(small_cfg, small_data, tmp_path, model):
    cfg = _cuda(small_cfg, **{"model.name": model, "train.amp": "bf16", "train.steps": 10, "train.log_every": 1})
    straight, _ = train(cfg, small_data, **QUIET)
    train(cfg, small_data, checkpoint_dir=tmp_path, stop_at=5, **QUIET)
    resumed, _ = train(cfg, small_data, resume_from=tmp_path / "checkpoint_step_5.pt", **QUIET)
    assert resumed["amp"] == "bfloat16" and resumed["steps"] == 10
    assert _losses(resumed)[:5] == _losses(straight)[:5]  # before the checkpoint: the same run
    assert max(abs(a - b) for a, b in zip(_losses(resumed), _losses(straight))) < BF16_TOL
    assert abs(resumed["val_loss"] - straight["val_loss"]) < BF16_TOL


def test_halving_survivors_match_the_full_grid_on_cuda(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=20, lrs="[0.003, 0.01, 0.05, 0.1]")
    common = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--no-progress", "--eval-every", "5", *CUDA]
    assert main(common + ["--name", "full"]) == 0
    assert main(common + ["--name", "half", "--halving", "2", "--min-steps", "5"]) == 0
    recs = lambda d: {p.stem: json.loads(p.read_text()) for p in (tmp_path / d / "experiments").glob("*.json")}  # noqa: E731
    full, half = recs("full"), recs("half")
    survivors = [k for k, r in half.items() if r["status"] == "ok"]
    assert len(survivors) == 2 and all(half[k]["device"].startswith("cuda") for k in survivors)
    for k in survivors:  # continued from CUDA checkpoints
        assert half[k]["steps"] == full[k]["steps"] == 20
        assert abs(half[k]["val_loss"] - full[k]["val_loss"]) < BF16_TOL, k


def test_a_wsd_branch_matches_its_dedicated_run_on_cuda(tmp_path, cache_dir):
    cfg = wsd_study(tmp_path, cache_dir, (20, 40))
    common = ["--output-dir", str(tmp_path), "--no-progress", *CUDA]
    assert main(["run", "--config", str(cfg), "--name", "branched", *common]) == 0
    one = tmp_path / "h20.toml"
    one.write_text(cfg.read_text().replace("steps = [20, 40]", "steps = [20]"))
    assert main(["run", "--config", str(one), "--name", "dedicated", *common]) == 0
    pick = lambda d: next(json.loads(p.read_text()) for p in (tmp_path / d / "experiments").glob("*.json")  # noqa: E731
                          if json.loads(p.read_text())["config"]["train"]["steps"] == 20)
    branch, dedicated = pick("branched"), pick("dedicated")
    assert branch["branched_from"]["step"] == 16
    assert abs(branch["val_loss"] - dedicated["val_loss"]) < BF16_TOL


def test_grouped_mm_dispatch_matches_the_masked_loop_in_bf16():
    from moe_ablate.models.moe import MoEFeedForward


    torch.manual_seed(0)
    cfg = small_model_cfg("moe", router_noise=0.0, num_experts=8, top_k=2)
    ffn = MoEFeedForward(cfg).cuda()
    for w in (ffn.w1, ffn.w2, ffn.router.weight):
        torch.nn.init.normal_(w, std=0.2)
    x = torch.randn(4, 64, cfg.d_model, device="cuda")
    out = {}
    for mode in ("masked", "grouped"):
        ffn.dispatch = mode
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out[mode] = ffn(x)[0].float()
    rel = (out["grouped"] - out["masked"]).norm() / out["masked"].norm()
    assert rel < 1e-2, rel  # bf16 operands: 1e-3 to 1e-2


def test_bf16_newton_schulz_matches_fp32():
    from moe_ablate.optim import newton_schulz

    G = torch.randn(8, 128, 512, device="cuda")
    ref = newton_schulz(G.double(), dtype=torch.float64)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        got = newton_schulz(G, dtype=dtype).double()
        rel = ((got - ref).norm() / ref.norm()).item()
        assert rel < tol, (dtype, rel)


def test_fp16_with_grad_scaler_trains(small_cfg, small_data):
    cfg = _cuda(small_cfg, **{"train.amp": "fp16", "train.steps": 20, "train.eval_every": 10})
    result, _ = train(cfg, small_data, **QUIET)
    assert result["status"] == "ok" and result["amp"] == "float16"
    losses = _losses(result)
    assert all(v == v for v in losses) and losses[-1] < losses[0]


def test_one_compile_serves_every_experiment_of_a_study(small_cfg, small_data):
    from torch._dynamo.utils import counters

    from moe_ablate.studies.engine.runner import Job, ModelCache, run_one
    from moe_ablate.studies.spec.file import ExperimentSpec

    cache = ModelCache()
    graphs = []
    for lr in (0.01, 0.02, 0.05):
        cfg = _cuda(small_cfg, **{"train.compile": True, "train.muon_lr": lr})
        record = run_one(Job(ExperimentSpec(f"lr{lr}", {}), cfg, small_data), log=lambda m: None, progress=False,
                         cache=cache)
        assert record["status"] == "ok" and record["compiled"], record.get("error")
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[2] == graphs[1] == graphs[0], graphs  # the 2nd and 3rd experiment compiled nothing new


def test_an_oversized_batch_is_recorded_as_oom_and_the_study_goes_on(small_cfg, small_data):
    from moe_ablate.studies.engine.runner import Job, ModelCache, run_one
    from moe_ablate.studies.spec.file import ExperimentSpec

    free, _ = torch.cuda.mem_get_info()
    # logits alone (batch x seq x vocab floats, and their gradient) are several times the free memory
    batch = int(4 * free / (32 * small_data.vocab_size * 4)) + 1
    cache = ModelCache()
    big = _cuda(small_cfg, **{"train.batch_size": batch})
    record = run_one(Job(ExperimentSpec("big", {}), big, small_data), log=lambda m: None, progress=False, cache=cache)
    assert record["status"] == "oom", record.get("error")
    torch.cuda.empty_cache()
    after = run_one(Job(ExperimentSpec("small", {}), _cuda(small_cfg), small_data), log=lambda m: None,
                    progress=False, cache=cache)
    assert after["status"] == "ok"


@pytest.mark.parametrize("model", ["moe", "deepseek_glm4_moe", "deepseek_mlp"])
def test_a_training_step_never_waits_for_the_host(small_cfg, model):
    """forward, backward, clipping, Muon, AdamW and the router-bias update under sync debug mode "error"."""
    from moe_ablate.models import build_model
    from moe_ablate.optim import build_optimizers

    cfg = apply_overrides(small_cfg, {"model.name": model}).model
    cfg.vocab_size = 512
    m = build_model(cfg).cuda().train()
    m.init_weights()
    opts = build_optimizers(m, 0.01, 0.1, 0.95, 0.1, "cuda")
    x = torch.randint(0, 512, (4, 33), device="cuda")
    params = [p for p in m.parameters() if p.requires_grad]

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _, _ = m.loss(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        m.after_optimizer_step()

    step()  # first call: lazy state, allocations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
