#!/usr/bin/env python
"""Training-step speed of a registry model on random tokens; the last line printed is one JSON object.

    python scripts/bench.py --baseline --matmul-peak

A step is what the trainer does: forward, backward, gradient clipping, the Muon and AdamW steps.
``--baseline`` also times, in the same process, the seed design: experts run by a Python loop
with boolean masks (``moe_dispatch="masked"``) and one Newton–Schulz call per matrix in fp32
(``Muon(batched=False)``). Model FLOP/s = (6 × active parameters + 12 × layers × d_model × seq)
× tokens / time (the PaLM appendix-B count: attention without a causal discount).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe_ablate.config import ModelConfig  # noqa: E402
from moe_ablate.evaluate import autocast_context  # noqa: E402
from moe_ablate.models import MODEL_NAMES, build_model  # noqa: E402
from moe_ablate.optim import build_optimizers  # noqa: E402
from moe_ablate.train import amp_dtype_for  # noqa: E402
from moe_ablate.utils import resolve_device  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(cfg: ModelConfig, args, device: str, *, dispatch: str, plain_muon: bool,
               compile_model: bool = False) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**cfg.__dict__, "moe_dispatch": dispatch})
    model = build_model(cfg).to(device).train()
    if compile_model:
        model.compile()  # in place: model.loss runs the compiled forward
    opts = build_optimizers(model, 0.01, 0.1, 0.95, 0.1, device, plain_muon=plain_muon)
    amp = amp_dtype_for(device, args.amp)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=gen).to(device)
    inp, tgt = x[:, :-1], x[:, 1:]

    def step() -> None:
        with autocast_context(device, amp):
            loss, _, _ = model.loss(inp, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    tokens = args.batch * args.seq
    counts = model.param_counts()
    flops = (6 * counts["active"] + 12 * cfg.n_layers * cfg.d_model * args.seq) * tokens
    return {"ms_per_step": ms, "tokens_per_s": tokens / (ms / 1e3), "model_gflops_per_s": flops / (ms / 1e3) / 1e9,
            "params_total": counts["total"], "params_active": counts["active"]}


def matmul_peak(device: str, n: int = 2048, reps: int = 10) -> float:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="moe", choices=MODEL_NAMES)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", help="CUDA only: auto | bf16 | fp16 | off")
    p.add_argument("--dispatch", default="auto", help="MoE dispatch: auto | grouped | sorted | masked")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--baseline", action="store_true", help="also time the plain seed design; report speedup")
    p.add_argument("--matmul-peak", action="store_true", help="also measure the device's matmul GFLOP/s")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig(name=args.model, vocab_size=args.vocab, d_model=args.d_model, n_heads=args.n_heads,
                      n_layers=args.n_layers, d_ff=args.d_ff, num_experts=args.experts, top_k=args.top_k,
                      max_seq_len=args.seq)
    out = {"model": args.model, "device": device, "threads": torch.get_num_threads(),
           "amp": str(amp_dtype_for(device, args.amp) or "fp32").replace("torch.", ""),
           "batch": args.batch, "seq": args.seq, "steps": args.steps, "compiled": args.compile}
    out.update(time_steps(cfg, args, device, dispatch=args.dispatch, plain_muon=False, compile_model=args.compile))
    print(f"fast: {out['ms_per_step']:.1f} ms/step, {out['tokens_per_s']:,.0f} tok/s, "
          f"{out['model_gflops_per_s']:.1f} GFLOP/s")
    if args.baseline:
        base = time_steps(cfg, args, device, dispatch="masked", plain_muon=True)
        out["baseline_ms_per_step"] = base["ms_per_step"]
        out["speedup"] = base["ms_per_step"] / out["ms_per_step"]
        print(f"baseline (mask loop, per-matrix Newton-Schulz): {base['ms_per_step']:.1f} ms/step")
    if args.matmul_peak:
        peak = matmul_peak(device)
        out["matmul_peak_gflops"] = peak
        out["share_of_peak"] = out["model_gflops_per_s"] / peak
        print(f"matmul peak ({'bf16' if device.startswith('cuda') else 'fp32'} 2048^3): {peak:.1f} GFLOP/s")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
