"""The CUDA-only choices, checked on CPU by faking what torch.cuda reports."""

import pytest
import torch

from moe_ablate.models import build_model
from moe_ablate.models.moe import grouped_mm_supported
from moe_ablate.optim import Muon, build_optimizers
from moe_ablate.training import amp_dtype_for

from .helpers import small_model_cfg


@pytest.mark.parametrize("bf16, amp, expected", [
    (True, "auto", torch.bfloat16), (False, "auto", torch.float16), (True, "fp16", torch.float16),
    (True, "off", None), (False, "bf16", torch.bfloat16),
])
def test_amp_dtype_on_cuda(monkeypatch, bf16, amp, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert amp_dtype_for("cuda", amp) == expected


def test_cpu_always_trains_in_fp32():
    assert amp_dtype_for("cpu", "bf16") is None and amp_dtype_for("cpu", "auto") is None


def test_cuda_optimizers_use_bf16_newton_schulz_and_fused_adamw(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    model = build_model(small_model_cfg("moe"))
    muon, adamw = build_optimizers(model, 0.01, 0.1, 0.95, 0.1, "cuda")
    assert isinstance(muon, Muon) and muon.ns_dtype == torch.bfloat16
    assert adamw.defaults["fused"] is True
    muon_cpu, adamw_cpu = build_optimizers(model, 0.01, 0.1, 0.95, 0.1, "cpu")
    assert muon_cpu.ns_dtype == torch.float32 and not adamw_cpu.defaults["fused"]


def test_grouped_mm_is_used_on_cuda_only_in_bf16_on_recent_gpus(monkeypatch):
    assert grouped_mm_supported(torch.device("cpu"), torch.float32)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert grouped_mm_supported(torch.device("cuda"), torch.bfloat16)
    assert not grouped_mm_supported(torch.device("cuda"), torch.float32)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert not grouped_mm_supported(torch.device("cuda"), torch.bfloat16)
