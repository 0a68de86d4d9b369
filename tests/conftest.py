"""Shared fixtures: a very small model config and a small cached builtin dataset."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from moe_ablate.config import ExperimentConfig, apply_overrides, preset_config

torch.set_num_threads(2)


def pytest_configure(config):
    """Tests that give no --cache-dir use a cache of their own, never the user's shared one
    (``$MOE_ABLATE_CACHE`` or ~/.cache/moe-ablate); subprocesses inherit it."""
    os.environ["MOE_ABLATE_CACHE"] = tempfile.mkdtemp(prefix="moe_ablate_test_cache_")

SMALL = {
    "model.d_model": 32, "model.n_heads": 2, "model.n_layers": 1, "model.d_ff": 64,
    "model.num_experts": 4, "model.top_k": 2, "model.max_seq_len": 32,
    "model.q_lora_rank": 16, "model.kv_lora_rank": 16, "model.qk_rope_head_dim": 8,
    "model.qk_nope_head_dim": 8, "model.v_head_dim": 16,
    "train.steps": 10, "train.batch_size": 4, "train.seq_len": 32, "train.eval_every": 5,
    "train.eval_batches": 2, "train.log_every": 5, "train.device": "cpu",
    "data.num_documents": 300, "data.max_tokens": 60_000, "data.vocab_size": 512,
}


def small_config(cache_dir, **overrides) -> ExperimentConfig:
    cfg = apply_overrides(preset_config("tiny"), {**SMALL, "data.cache_dir": str(cache_dir)})
    return apply_overrides(cfg, overrides)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="session")
def small_data(cache_dir):
    from moe_ablate.data import prepare_data

    return prepare_data(small_config(cache_dir).data, log=lambda m: None)


@pytest.fixture
def small_cfg(cache_dir):
    return small_config(cache_dir)


@pytest.fixture
def problem():
    torch.manual_seed(0)
    weights = [torch.randn(64, 32), torch.randn(32, 96), torch.randn(64, 32)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(3)]
    return weights, grads
