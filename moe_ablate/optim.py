"""Optimizers: the Muon/AdamW split, a batched Muon, and the LR schedules (cosine, WSD, constant).

Why our own Muon and not ``torch.optim.Muon``: torch's runs Newton–Schulz in bf16 only (about
50x slower than fp32 on many CPUs: 11 s for one 512x2048 step), accepts only 2-D parameters,
and orthogonalises one matrix at a time. This class follows torch's algorithm exactly
(Nesterov momentum via lerp, the same quintic coefficients and 5 steps, ``adjust_lr_fn``,
decoupled weight decay) and differs only in that it

- runs Newton–Schulz in a chosen dtype (fp32 on CPU, bf16 on CUDA);
- accepts 3-D expert tensors (experts × out × in) and orthogonalises each expert;
- stacks all matrices of one shape into one batched call.

``tests/test_optim.py`` checks it against ``torch.optim.Muon`` on 2-D weights.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from functools import partial

import torch
import torch.nn as nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the coefficients torch.optim.Muon uses
_ROUTER = re.compile(r"(^|\.)(router|gate)\.(weight|bias)$")


def newton_schulz(G: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  dtype: torch.dtype = torch.float32, gram: bool | None = None) -> torch.Tensor:
    """Orthogonalise each matrix of a (..., m, n) batch: the quintic iteration of torch.optim.Muon.

    ``gram`` (default: for fp32 and matrices at least twice as wide as tall) runs the same
    iteration in the m×m Gram space: each step is X ← Q·X with Q = aI + bA + cA², a polynomial in
    A = XXᵀ, so A ← Q·A·Q and the product P = ∏Q can be tracked without touching X, which is
    multiplied once at the end (X ← P·X₀). Identical in exact arithmetic; for a 128×512 expert it
    needs 117 instead of 189 MFLOP. Kept off for bf16, where the extra products lose accuracy.
    """
    a, b, c = coefficients
    X = G.to(dtype)
    transpose = X.size(-2) > X.size(-1)
    if transpose:
        X = X.mT
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    m, n = X.shape[-2:]
    if gram if gram is not None else (dtype != torch.bfloat16 and n >= 2 * m):
        A = X @ X.mT
        eye = torch.eye(m, dtype=X.dtype, device=X.device).expand_as(A)
        P = None
        for _ in range(steps):
            Q = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.ndim == 3 else torch.addmm(A, A, A, beta=b, alpha=c)
            Q = Q + a * eye
            P = Q if P is None else Q @ P
            A = Q @ A @ Q
        X = P @ X
        return X.mT if transpose else X
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.ndim == 3 else torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a) if X.ndim == 3 else torch.addmm(X, B, X, beta=a)
    return X.mT if transpose else X


def adjusted_lr(lr: float, shape: torch.Size, adjust_lr_fn: str | None) -> float:
    """torch.optim.Muon's shape scaling, applied per matrix (the last two dims)."""
    A, B = shape[-2], shape[-1]
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1.0, A / B))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(A, B))
    return lr


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None,
                 ns_dtype: torch.dtype = torch.float32, batched: bool = True, gram: bool | None = None):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        self.ns_dtype, self.batched, self.gram = ns_dtype, batched, gram
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim not in (2, 3):
                    raise ValueError(f"Muon takes 2-D or 3-D parameters, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
            by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                by_shape[(tuple(p.shape[-2:]), p.device)].append((p, update))
            ns = partial(newton_schulz, steps=group["ns_steps"], eps=group["eps"],
                         coefficients=group["ns_coefficients"], dtype=self.ns_dtype, gram=self.gram)
            for (shape, _), items in by_shape.items():
                params = [p for p, _ in items]
                if self.batched:
                    stacked = torch.cat([u.reshape(-1, *shape) for _, u in items])
                    orth = ns(stacked).split([p.numel() // (shape[0] * shape[1]) for p in params])
                else:  # one call per matrix (the plain design; used by the benchmark baseline)
                    orth = [ns(u) if u.ndim == 2 else torch.stack([ns(m) for m in u]) for _, u in items]
                scale = adjusted_lr(lr, torch.Size(shape), group["adjust_lr_fn"])
                for p, o in zip(params, orth, strict=True):
                    p.mul_(1 - lr * wd)
                    p.add_(o.reshape(p.shape).to(p.dtype), alpha=-scale)
        return loss


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(muon, adamw): 2-D/3-D hidden weights → Muon; embeddings, tied head, norms, biases and
    router weights → AdamW."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    muon, adamw, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if p.ndim in (2, 3) and id(p) not in embedding_ids and not _ROUTER.search(name):
            muon.append(p)
        else:
            adamw.append(p)
    return muon, adamw


def build_optimizers(model: nn.Module, muon_lr: float, adamw_lr_ratio: float, momentum: float,
                     weight_decay: float, device: str, plain_muon: bool = False,
                     adjust_lr: str = "original") -> list[torch.optim.Optimizer]:
    """Muon for hidden matrices, AdamW (lr = muon_lr × ratio) for the rest. ``adjust_lr`` is Muon's
    per-matrix LR scaling, torch.optim.Muon's ``adjust_lr_fn`` ("original" | "match_rms_adamw").

    ``plain_muon``: one standard Newton–Schulz call per matrix (the seed design; benchmark baseline).
    """
    muon_params, adamw_params = split_params(model)
    cuda = str(device).startswith("cuda")
    ns_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    opts: list[torch.optim.Optimizer] = []
    if muon_params:
        opts.append(Muon(muon_params, lr=muon_lr, momentum=momentum, weight_decay=weight_decay,
                         ns_dtype=ns_dtype, batched=not plain_muon, gram=False if plain_muon else None,
                         adjust_lr_fn=adjust_lr))
    if adamw_params:
        opts.append(torch.optim.AdamW(adamw_params, lr=muon_lr * adamw_lr_ratio, betas=(0.9, 0.95),
                                      weight_decay=weight_decay, fused=cuda or None))
    return opts


def warmup_length(total_steps: int, warmup_frac: float, warmup_steps: int = 0) -> int:
    """Warmup steps: ``warmup_steps`` when set (horizons of a WSD study share it), else a fraction of the run."""
    if warmup_steps > 0:
        return warmup_steps
    return max(1, int(total_steps * warmup_frac)) if warmup_frac > 0 else 0


def decay_start(total_steps: int, decay_frac: float) -> int:
    """The last step of a WSD run's stable phase: its decay covers the final ``decay_frac`` of the steps
    (rounded, at least one step). A shorter horizon branches off a longer run's trunk here."""
    return total_steps - max(1, int(total_steps * decay_frac + 0.5))


def lr_factor(step: int, total_steps: int, warmup_frac: float = 0.05, min_frac: float = 0.1, *,
              schedule: str = "cosine", warmup_steps: int = 0, decay_frac: float = 0.2,
              decay_shape: str = "1-sqrt") -> float:
    """The LR multiplier after ``step`` optimizer steps (LambdaLR's convention).

    All schedules warm up linearly, then:

    - ``cosine``: ``min + (1 - min) · ½(1 + cos(π · progress))``, i.e. peak·(0.1 + 0.9·½(1+cos)) by default;
    - ``wsd`` (warmup-stable-decay; MiniCPM 2024, Hägele et al. 2024): constant at the peak until
      ``decay_start``, then down to ``min`` over the last ``decay_frac`` of the run, ``linear`` or
      ``1-sqrt`` (1 - sqrt(progress), Hägele et al.'s better cooldown);
    - ``constant``: the peak to the end.
    """
    warmup = warmup_length(total_steps, warmup_frac, warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        start = decay_start(total_steps, decay_frac)
        if step <= start:
            return 1.0
        progress = min(1.0, (step - start) / (total_steps - start))
        return 1.0 - (1.0 - min_frac) * (math.sqrt(progress) if decay_shape == "1-sqrt" else progress)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def schedule_fn(t) -> partial:
    """The LR multiplier of a ``TrainConfig`` as a function of the step."""
    return partial(lr_factor, total_steps=t.steps, warmup_frac=t.warmup_frac, min_frac=t.min_lr_frac,
                   schedule=t.schedule, warmup_steps=t.warmup_steps, decay_frac=t.decay_frac,
                   decay_shape=t.decay_shape)


def build_schedulers(optimizers, t):
    """One LambdaLR per optimizer, following ``t`` (a ``TrainConfig``). A checkpoint stores the step, not
    the function, so a run continued under another horizon's config follows that horizon's schedule
    from there on: this is how a WSD branch decays off its trunk."""
    fn = schedule_fn(t)
    return [torch.optim.lr_scheduler.LambdaLR(o, fn) for o in optimizers]
