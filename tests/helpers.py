"""Helpers the test modules share, in one place (test modules import from here, never from each other).

The small study TOMLs live with ``scripts/kill_resume.py``, which the suite also drives; the scripts the suite
tests (``fuzz.py``, ``scaling_check.py``) are imported here once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from moe_ablate.config import apply_overrides, preset_config

from .conftest import SMALL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fuzz  # noqa: E402
import kill_resume  # noqa: E402
import scaling_check  # noqa: E402

__all__ = ["fuzz", "kill_resume", "run_optimizer", "scaling_check", "small_model_cfg", "write_study", "wsd_study"]


def write_study(tmp_path, cache_dir, steps=8, lrs="[0.01, 0.05, 0.1]", confirm=0, extra=""):
    path = tmp_path / "small.toml"
    path.write_text(kill_resume.study_toml(steps, lrs, confirm, str(cache_dir), name="small") + extra)
    return path


def wsd_study(tmp_path, cache_dir, horizons, lrs="[0.02]", wds="[0.1]", eval_every=10, width=(32, 64)):
    """The suite's small study with WSD, a shared 4-step warmup and a grid over the horizon."""
    text = write_study(tmp_path, cache_dir, steps=horizons[0], lrs=lrs).read_text()
    text = text.replace(f"steps = {horizons[0]}\n", 'schedule = "wsd"\nwarmup_steps = 4\nmin_lr_frac = 0.0\n')
    text = text.replace("[grid.train]\n", f"[grid.train]\nsteps = {list(horizons)}\n")
    text = text.replace("weight_decay = [0.0, 0.1]", f"weight_decay = {wds}")
    text = text.replace("eval_every = 4", f"eval_every = {eval_every}").replace("log_every = 4", "log_every = 5")
    text = text.replace("d_model = 32", f"d_model = {width[0]}").replace("d_ff = 64", f"d_ff = {width[1]}")
    path = tmp_path / "wsd.toml"
    path.write_text(text)
    return path


def small_model_cfg(name, **kw):
    """The suite's tiny model (one layer, width 32, vocabulary 97) of architecture ``name``."""
    cfg = apply_overrides(preset_config("tiny", name), SMALL).model
    cfg.vocab_size = 97
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def run_optimizer(opt_cls, weights, grads, **kw):
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = opt_cls(params, lr=0.02, weight_decay=0.1, momentum=0.95, **kw)
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi.clone()
        opt.step()
    return params
