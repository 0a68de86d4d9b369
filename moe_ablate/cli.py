"""``moe-ablate`` command line. Thin: parse flags, build configs, call the library.

Every user mistake surfaces as ``moe-ablate: error: <one line>`` with exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from .errors import UserError

DEFAULT_OUTPUT = "ablation_results"


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump) and exits 2."""

    def error(self, message: str):  # noqa: D401
        print(f"moe-ablate: error: {message}", file=sys.stderr)
        sys.exit(2)


def _number(kind, ok, requirement: str):
    """An argparse type: parse ``kind`` and check it, with a one-line message on failure."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return v
    parse.__name__ = f"{requirement} {kind.__name__}"
    return parse


pos_int, pos_float = _number(int, lambda v: v > 0, "positive"), _number(float, lambda v: v > 0, "positive")
nonneg_int, nonneg_float = _number(int, lambda v: v >= 0, ">= 0"), _number(float, lambda v: v >= 0, ">= 0")
_fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")


def lr_or_auto(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return pos_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {text!r}") from None


def long_run_flags(args: argparse.Namespace) -> dict:
    """``train``'s --checkpoint-every / --hellaswag-every, when given (0 turns them off)."""
    out = {}
    for name in ("checkpoint_every", "hellaswag_every"):
        if getattr(args, name, None) is not None:
            out[f"train.{name}"] = getattr(args, name)
    return out

# flag -> (dotted config key, type, help)
EXPERIMENT_FLAGS = {
    "--model": ("model.name", str, "architecture: moe | deepseek_mlp | deepseek_glm4_moe (see `moe-ablate models`)"),
    "--data": ("data.source", str, "builtin (default, offline) | FILE.txt/.jsonl/.parquet | FOLDER | hf:NAME[:CONFIG]"),
    "--tokenizer": ("data.tokenizer", str, "bpe (trained locally on the data, cached) | hf:NAME"),
    "--vocab-size": ("data.vocab_size", pos_int, "vocabulary size of the local BPE tokenizer"),
    "--num-documents": ("data.num_documents", pos_int, "documents to read from the source"),
    "--max-tokens": ("data.max_tokens", pos_int, "cap on tokens kept after tokenisation"),
    "--cache-dir": ("data.cache_dir", str, "where tokenizers and token arrays are cached (default data_cache)"),
    "--steps": ("train.steps", pos_int, "optimizer steps"),
    "--eval-every": ("train.eval_every", pos_int, "evaluate on the validation set every N steps"),
    "--eval-batches": ("train.eval_batches", pos_int, "validation batches per evaluation"),
    "--batch-size": ("train.batch_size", pos_int, "sequences per micro-batch"),
    "--seq-len": ("train.seq_len", pos_int, "tokens per sequence"),
    "--grad-accum": ("train.grad_accum", pos_int, "micro-batches per optimizer step"),
    "--muon-lr": ("train.muon_lr", pos_float, "Muon learning rate (2-D/3-D hidden weights)"),
    "--adamw-lr-ratio": ("train.adamw_lr_ratio", pos_float, "AdamW lr = muon lr x this (embeddings, norms, router)"),
    "--momentum": ("train.momentum", _fraction, "Muon momentum"),
    "--weight-decay": ("train.weight_decay", nonneg_float, "decoupled weight decay for both optimizers"),
    "--grad-clip": ("train.grad_clip", nonneg_float, "gradient-norm clip (0 = off)"),
    "--patience": ("train.patience", nonneg_int, "early-stopping patience in evaluations (0 = off)"),
    "--num-experts": ("model.num_experts", pos_int, "routed experts per MoE layer"),
    "--top-k": ("model.top_k", pos_int, "experts chosen per token"),
    "--aux-loss-weight": ("model.aux_loss_weight", nonneg_float, "load-balancing loss weight (0 = off)"),
    "--bias-update-rate": ("model.bias_update_rate", nonneg_float, "GLM4 router bias update gamma (0 = off)"),
    "--device": ("train.device", str, "auto | cpu | cuda | cuda:N (auto: CUDA when available)"),
    "--amp": ("train.amp", str, "CUDA mixed precision: auto (bf16, else fp16) | bf16 | fp16 | off"),
    "--seed": ("train.seed", nonneg_int, "random seed (init, batches, router noise)"),
}


def add_experiment_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    g = p.add_argument_group("experiment settings (override the preset)")
    g.add_argument("--preset", default=None, help="model/run size: seed | tiny | exp9 | exp3")
    for flag, (_, typ, help_) in EXPERIMENT_FLAGS.items():
        if flag not in skip:
            g.add_argument(flag, type=typ, default=None, help=help_)
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (CUDA only)")


def experiment_overrides(args: argparse.Namespace) -> dict:
    out = {}
    for flag, (key, _, _) in EXPERIMENT_FLAGS.items():
        v = getattr(args, flag[2:].replace("-", "_"), None)
        if v is not None:
            out[key] = v
    if getattr(args, "compile", None):
        out["train.compile"] = True
    return out


def log(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


def fresh_dir(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        raise UserError(f"output folder {path} already exists and is not empty; choose another --output-dir")
    return path


# ------------------------------------------------------------------ commands
def cmd_train(args) -> int:
    if args.exp is not None or args.resume:
        from .studies.search_cli import cmd_train_exp

        return cmd_train_exp(args)
    if args.lr is not None or args.hellaswag:
        raise UserError("--lr and --hellaswag go with --exp (use --muon-lr for a plain run)")
    from .config import apply_overrides, preset_config, validate
    from .data import prepare_data
    from .train import train
    from .checkpoint import save_model
    from .utils import atomic_write_json

    cfg = apply_overrides(preset_config(args.preset or "tiny", None), {**experiment_overrides(args),
                                                                        **long_run_flags(args)})
    validate(cfg)
    out = Path(args.output_dir or Path(DEFAULT_OUTPUT) / f"train_{cfg.model.name}_{time.strftime('%Y%m%d_%H%M%S')}")
    fresh_dir(out)
    data = prepare_data(cfg.data, log=log)
    log(f"data: {data.provenance['source']} | {data.provenance['num_tokens']:,} tokens "
        f"(train {data.provenance['train_tokens']:,} / val {data.provenance['val_tokens']:,}) | "
        f"vocab {data.vocab_size}")
    cfg.model.vocab_size = data.vocab_size
    result, model = train(cfg, data, log=log, desc=cfg.model.name, checkpoint_dir=out / "checkpoints")
    atomic_write_json(out / "config.json", cfg.to_dict())
    atomic_write_json(out / "result.json", {"config": cfg.to_dict(), **result})
    save_model(out / "final_model.pt", cfg, model, data.tokenizer)
    _summary(cfg.model.name, result)
    print(f"wrote {out}/result.json, config.json, final_model.pt")
    return 0 if result["status"] == "ok" else 1


def _summary(name: str, r: dict) -> None:
    val = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else "n/a"
    print(f"{name}: status {r['status']} | steps {r['steps']} | val loss {val} | "
          f"params {r['params']['total']:,} total / {r['params']['active']:,} active | "
          f"{r['wall_time_s']:.1f}s | {r['tokens_per_s'] or 0:,.0f} tok/s")


def cmd_models(args) -> int:
    import torch

    from .config import preset_config
    from .models import DESCRIPTIONS, MODEL_NAMES, build_model

    presets = args.presets or ["tiny", "seed", "exp9", "exp3"]
    print(f"{'model':<20} {'preset':<7} {'total params':>14} {'active params':>14}  (vocab {args.vocab_size})")
    for name in MODEL_NAMES:
        for preset in presets:
            cfg = preset_config(preset, name).model
            cfg.vocab_size = args.vocab_size
            with torch.device("meta"):
                counts = build_model(cfg).param_counts()
            print(f"{name:<20} {preset:<7} {counts['total']:>14,} {counts['active']:>14,}")
    print()
    for name in MODEL_NAMES:
        print(f"{name}: {DESCRIPTIONS[name]}")
    return 0


def cmd_hellaswag(args) -> int:
    from .checkpoint import load_model
    from .hellaswag import PROTOCOL, HellaSwagEvaluator
    from .utils import atomic_write_json, resolve_device

    device = resolve_device(args.device or "auto")
    model, tok, cfg = load_model(args.checkpoint, device)
    ev = HellaSwagEvaluator(args.data, tok, cfg.model.max_seq_len, args.limit, args.batch_size, device)
    result = ev(model, with_predictions=bool(args.output))
    result.update(checkpoint=str(args.checkpoint), model=cfg.model.name, protocol=PROTOCOL)
    print(f"hellaswag: acc {result['acc']:.4f} acc_norm {result['acc_norm']:.4f} n {result['n']} | "
          f"{result['items_per_s']:.1f} items/s | {args.data}")
    if args.output:
        atomic_write_json(args.output, result)
        print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="moe-ablate", description="Hyperparameter ablation studies for small Mixture-of-Experts "
               "language models: train, run studies, analyse results.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    t = sub.add_parser("train", help="train one experiment and write config.json, result.json, final_model.pt",
                       description="Train one model on one configuration (default preset: tiny, data: builtin).")
    add_experiment_flags(t)
    t.add_argument("--output-dir", default=None, help=f"output folder (default {DEFAULT_OUTPUT}/train_<model>_<time>); "
                   "with --exp: the parent folder, also searched for recommendation files")
    g = t.add_argument_group("long training of Experiment 9 or 3 (the seeds' pipeline)")
    g.add_argument("--exp", type=int, choices=[9, 3], default=None,
                   help="9: deepseek_mlp/exp9, 3: deepseek_glm4_moe/exp3; defaults 10000 steps, eval every 100, "
                        "checkpoint every 3000, HellaSwag every 1000")
    g.add_argument("--lr", type=lr_or_auto, default=None,
                   help="Muon LR, or 'auto' = the lr-search recommendation under --output-dir "
                                              "(exp 3 also takes the expert-search recommendation)")
    g.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a long run exactly from a checkpoint")
    g.add_argument("--hellaswag", default=None, help="HellaSwag source (JSONL file or hf:Rowan/hellaswag)")
    g.add_argument("--checkpoint-every", type=nonneg_int, default=None, help="full-state checkpoint every N steps")
    g.add_argument("--hellaswag-every", type=nonneg_int, default=None, help="HellaSwag every N steps")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="list architectures with total/active parameter counts per preset")
    m.add_argument("--vocab-size", type=pos_int, default=49152, help="vocabulary for the counts (default 49152, SmolLM's)")
    m.add_argument("--presets", nargs="*", default=None, help="presets to count (default: all)")
    m.set_defaults(func=cmd_models)

    h = sub.add_parser("hellaswag", help="score a saved model on HellaSwag (lm-evaluation-harness protocol)",
                       description="Zero-shot HellaSwag: summed log-likelihood of each ending given the context; "
                                   "acc and acc_norm exactly as lm-evaluation-harness computes them.")
    h.add_argument("--checkpoint", required=True, help="final_model.pt or a training checkpoint of this project")
    h.add_argument("--data", default="hf:Rowan/hellaswag",
                   help="official-format JSONL file, or hf:Rowan/hellaswag (validation split; needs the hub)")
    h.add_argument("--limit", type=pos_int, default=None, help="score only the first N items")
    h.add_argument("--batch-size", type=pos_int, default=8, help="items per forward pass (x4 endings)")
    h.add_argument("--device", default=None, help="auto | cpu | cuda")
    h.add_argument("--output", default=None, help="write the JSON result with per-item predictions here")
    h.set_defaults(func=cmd_hellaswag)

    from .studies import cli as study_cli
    from .studies import search_cli

    study_cli.register(sub)
    search_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"moe-ablate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moe-ablate: interrupted; finished experiments are saved (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
