#!/usr/bin/env python
"""Training-step speed of a registry model on random tokens; the last line printed is one JSON object.

    python scripts/bench.py --baseline --matmul-peak                 # the small CPU bench model
    python scripts/bench.py --preset exp3 --device cuda --compile --matmul-peak --phases --profile prof.txt

A step is what the trainer does: forward, backward, gradient clipping, the Muon and AdamW steps.
``--preset seed|tiny|exp9|exp3`` takes the model (and its architecture: seed/tiny ``moe``, exp9
``deepseek_mlp``, exp3 ``deepseek_glm4_moe``), batch and sequence length of that preset.
Model FLOP/s = ``TransformerLM.flops_per_token(seq)`` x tokens / time: the one formula the records use
(6 x active parameters + 6 x layers x seq x attention width, Kaplan et al. 2020).

- ``--baseline`` also times, in the same process, the seed design: experts run by a Python loop with
  boolean masks and one Newton–Schulz call per matrix in fp32.
- ``--matmul-peak`` measures the device's matmul rate (bf16 on CUDA, fp32 on CPU; ``--matmul-n``, 8192
  on CUDA) so that the step's share of the *measured* peak is printed, not a datasheet number.
- ``--phases`` times forward+backward, clipping, Muon and AdamW separately (a synchronisation between
  phases, so only the shares are meaningful; the headline ms/step is timed without them).
- ``--sync-check`` runs one step under ``torch.cuda.set_sync_debug_mode("warn")`` and counts host syncs.
- ``--profile FILE`` writes a torch.profiler table (top ops by device time) and a summary by category.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe_ablate.config import PRESETS, ModelConfig, preset_config  # noqa: E402
from moe_ablate.models import MODEL_NAMES, build_model  # noqa: E402
from moe_ablate.optim import build_optimizers  # noqa: E402
from moe_ablate.training import amp_dtype_for  # noqa: E402
from moe_ablate.training.evaluate import autocast_context  # noqa: E402
from moe_ablate.utils import resolve_device  # noqa: E402

PRESET_MODEL = {"seed": "moe", "tiny": "moe", "exp9": "deepseek_mlp", "exp3": "deepseek_glm4_moe"}
# profiler op names -> the categories the GPU-readiness issue asks about (first match wins)
CATEGORIES = (("muon newton-schulz", ("muon",)), ("adamw", ("adamw",)),
              ("attention", ("attention", "sdpa", "flash", "efficient_attention", "cudnn_attention",
                             "softmax_backward")),
              ("experts grouped_mm", ("grouped_mm", "_grouped")),
              ("router", ("topk", "sort", "bincount", "cumsum", "scatter", "gather", "index")),
              ("matmul (dense)", ("mm", "gemm", "matmul", "linear", "bmm")))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_config(args) -> tuple[ModelConfig, int, int]:
    """(model config, batch, seq) from --preset, or from the explicit size flags."""
    if args.preset:
        cfg = preset_config(args.preset, args.model or PRESET_MODEL[args.preset])
        cfg.model.vocab_size = args.vocab or cfg.data.vocab_size
        return cfg.model, args.batch or cfg.train.batch_size, args.seq or cfg.train.seq_len
    batch, seq = args.batch or 8, args.seq or 128
    return ModelConfig(name=args.model or "moe", vocab_size=args.vocab or 1000, d_model=args.d_model,
                       n_heads=args.n_heads, n_layers=args.n_layers, d_ff=args.d_ff, num_experts=args.experts,
                       top_k=args.top_k, max_seq_len=seq), batch, seq


def build(cfg: ModelConfig, device: str, *, dispatch: str, plain_muon: bool, compile_model: bool):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**cfg.__dict__, "moe_dispatch": dispatch})
    model = build_model(cfg)
    model.init_weights()
    model = model.to(device).train()
    if compile_model:
        model.compile()  # in place: model.loss runs the compiled forward, as in train()
    opts = build_optimizers(model, 0.01, 0.1, 0.95, 0.1, device, plain_muon=plain_muon)
    return model, opts


def make_step(model, opts, amp, inp, tgt, device: str, phases: dict | None = None):
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=amp == torch.float16)
    names = ["muon" if type(o).__name__ == "Muon" else "adamw" for o in opts]

    def mark(name: str, t0: float) -> float:
        if phases is None:
            return t0
        sync(device)
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - t0
        return now

    def step() -> None:
        t0 = mark("start", time.perf_counter()) if phases is not None else 0.0
        with torch.profiler.record_function("forward_backward"):
            with autocast_context(device, amp):
                loss, _, _ = model.loss(inp, tgt)
            scaler.scale(loss).backward()
        t0 = mark("forward+backward", t0)
        with torch.profiler.record_function("clip"):
            for o in opts:
                scaler.unscale_(o)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        t0 = mark("clip", t0)
        for name, o in zip(names, opts):
            with torch.profiler.record_function(name):
                scaler.step(o)
                o.zero_grad(set_to_none=True)
            t0 = mark(name, t0)
        scaler.update()
        model.after_optimizer_step()

    return step


def time_steps(cfg: ModelConfig, args, device: str, batch: int, seq: int, *, dispatch: str, plain_muon: bool,
               compile_model: bool = False) -> dict:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    model, opts = build(cfg, device, dispatch=dispatch, plain_muon=plain_muon, compile_model=compile_model)
    amp = amp_dtype_for(device, args.amp)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=gen).to(device)
    inp, tgt = x[:, :-1], x[:, 1:]
    step = make_step(model, opts, amp, inp, tgt, device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    tokens = batch * seq
    counts = model.param_counts()
    flops = model.flops_per_token(seq) * tokens
    out = {"ms_per_step": ms, "ms_spread": (max(times) - min(times)) * 1e3, "tokens_per_s": tokens / (ms / 1e3),
           "model_gflops_per_s": flops / (ms / 1e3) / 1e9, "flops_per_step": flops,
           "params_total": counts["total"], "params_active": counts["active"], "warmup_s": warmup_s}
    if device.startswith("cuda"):
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    if args.phases:
        phases: dict[str, float] = {}
        timed = make_step(model, opts, amp, inp, tgt, device, phases)
        for _ in range(max(3, args.steps // 2)):
            timed()
        phases.pop("start", None)
        total = sum(phases.values())
        out["phase_share"] = {k: v / total for k, v in phases.items()}
    if args.sync_check and device.startswith("cuda"):
        out["host_syncs_per_step"] = count_syncs(step)
    if args.profile:
        out["profile_summary"] = profile(step, device, Path(args.profile), args.profile_steps)
    return out


def count_syncs(step) -> int:
    """Host synchronisations in one step, as torch's sync debug mode reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def profile(step, device: str, path: Path, steps: int) -> dict:
    """torch.profiler over ``steps`` steps: the top-25 table to ``path`` and device time by category."""
    from torch.profiler import ProfilerActivity

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    sync(device)
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    cuda = device.startswith("cuda")
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    path.write_text(events.table(sort_by=sort, row_limit=25, max_name_column_width=60))
    by_cat: dict[str, float] = {}
    busy = 0.0
    for e in events:
        us = getattr(e, key, 0.0) or 0.0
        if us <= 0 or e.key in ("forward_backward", "clip", "muon", "adamw") or e.key.startswith("ProfilerStep"):
            continue
        busy += us
        name = e.key.lower()
        cat = next((c for c, pats in CATEGORIES if any(p in name for p in pats)), "other")
        by_cat[cat] = by_cat.get(cat, 0.0) + us
    # the optimizer's own kernels, by the record_function ranges around them (their device time)
    ranges = {e.key: getattr(e, "device_time_total" if cuda else "cpu_time_total", 0.0) for e in events
              if e.key in ("forward_backward", "clip", "muon", "adamw")}
    wall_us = wall * 1e6
    return {"wall_ms_per_step": wall * 1e3 / steps, "device_busy_share": busy / wall_us if wall_us else None,
            "host_gap_share": max(0.0, 1 - busy / wall_us) if wall_us else None,
            "by_category_ms_per_step": {k: v / 1e3 / steps for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
            "ranges_ms_per_step": {k: v / 1e3 / steps for k, v in ranges.items()}, "table": str(path)}


def matmul_peak(device: str, n: int, reps: int = 10) -> float:
    """The device's matmul GFLOP/s on random data (bf16 on CUDA, fp32 on CPU): the median of ``reps``."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a preset's model, batch and seq_len")
    p.add_argument("--model", choices=MODEL_NAMES, help="architecture (default: the preset's, else moe)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--vocab", type=int, help="vocabulary (default: the preset's data.vocab_size, else 1000)")
    p.add_argument("--batch", type=int, help="batch (default: the preset's, else 8)")
    p.add_argument("--seq", type=int, help="sequence length (default: the preset's, else 128)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", help="CUDA only: auto | bf16 | fp16 | off")
    p.add_argument("--dispatch", default="auto", help="MoE dispatch: auto | grouped | sorted | masked")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--baseline", action="store_true", help="also time the plain seed design; report speedup")
    p.add_argument("--matmul-peak", action="store_true", help="also measure the device's matmul GFLOP/s")
    p.add_argument("--matmul-n", type=int, help="matmul size for --matmul-peak (default 8192 on CUDA, 2048 on CPU)")
    p.add_argument("--phases", action="store_true", help="share of each phase of the step (synchronised)")
    p.add_argument("--sync-check", action="store_true", help="CUDA: count host syncs in one step")
    p.add_argument("--profile", help="write a torch.profiler table here and add a summary by category")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--json", help="also write the JSON object to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg, batch, seq = model_config(args)
    out = {"preset": args.preset, "model": cfg.name, "device": device,
           "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "amp": str(amp_dtype_for(device, args.amp) or "fp32").replace("torch.", ""),
           "batch": batch, "seq": seq, "steps": args.steps, "compiled": args.compile}
    out.update(time_steps(cfg, args, device, batch, seq, dispatch=args.dispatch, plain_muon=False,
                          compile_model=args.compile))
    print(f"{args.preset or cfg.name}: {out['ms_per_step']:.1f} ms/step, {out['tokens_per_s']:,.0f} tok/s, "
          f"{out['model_gflops_per_s']:.1f} model GFLOP/s")
    if args.baseline:
        args.phases = args.sync_check = False
        args.profile = None
        base = time_steps(cfg, args, device, batch, seq, dispatch="masked", plain_muon=True)
        out["baseline_ms_per_step"] = base["ms_per_step"]
        out["speedup"] = base["ms_per_step"] / out["ms_per_step"]
        print(f"baseline (mask loop, per-matrix Newton-Schulz): {base['ms_per_step']:.1f} ms/step")
    if args.matmul_peak:
        n = args.matmul_n or (8192 if device.startswith("cuda") else 2048)
        peak = matmul_peak(device, n)
        out.update(matmul_n=n, matmul_peak_gflops=peak, share_of_peak=out["model_gflops_per_s"] / peak)
        print(f"matmul peak ({'bf16' if device.startswith('cuda') else 'fp32'} {n}^3): {peak:.1f} GFLOP/s; "
              f"the step reaches {out['share_of_peak']:.1%} of it")
    line = json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()})
    if args.json:
        Path(args.json).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
