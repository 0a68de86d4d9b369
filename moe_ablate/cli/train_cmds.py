"""Single-model commands: ``train`` (one run, or the long run with --exp/--resume), ``models``,
``hellaswag``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UserError
from .args import (
    DEFAULT_OUTPUT,
    add_experiment_flags,
    add_tracking_flags,
    experiment_overrides,
    fresh_dir,
    log,
    notes_on_unused_flags,
    pos_int,
    writable,
)
from .study_cmds import add_long_run_flags, cmd_train_exp, summary


def cmd_train(args) -> int:
    if args.exp is not None or args.resume:
        return cmd_train_exp(args)
    if args.lr is not None or args.hellaswag:
        raise UserError("--lr and --hellaswag go with --exp (use --muon-lr for a plain run)")
    notes_on_unused_flags(args, log)
    from ..checkpoint import save_model
    from ..config import apply_overrides, preset_config, validate
    from ..data import prepare_data
    from ..resources import check_fits
    from ..tracking import TrackingSpec, open_run, summary_metrics
    from ..training import train
    from ..utils import atomic_write_json, resolve_device

    extra = {f"train.{n}": getattr(args, n) for n in ("checkpoint_every", "hellaswag_every")
             if getattr(args, n) is not None}
    cfg = validate(apply_overrides(preset_config(args.preset or "tiny", None), {**experiment_overrides(args), **extra}))
    out = Path(args.output_dir or Path(DEFAULT_OUTPUT) / f"train_{cfg.model.name}_{time.strftime('%Y%m%d_%H%M%S')}")
    spec = TrackingSpec(tuple(dict.fromkeys(args.tracker)), args.tracking_dir or str(out.parent / "tracking"), "train")
    spec.check_installed()
    fresh_dir(out)
    writable(out)  # before training, not after it
    check_fits(cfg, resolve_device(cfg.train.device))
    data = prepare_data(cfg.data, log=log)
    p = data.provenance
    log(f"data: {p['source']} | {p['num_tokens']:,} tokens (train {p['train_tokens']:,} / val {p['val_tokens']:,}) | "
        f"vocab {data.vocab_size}")
    cfg.model.vocab_size = data.vocab_size
    tracker = open_run(spec, out.name, {k.split(".")[-1]: v for k, v in experiment_overrides(args).items()}, 0, log)
    result, model = train(cfg, data, log=log, desc=cfg.model.name, checkpoint_dir=out / "checkpoints",
                          progress=not args.no_progress, tracker=tracker)
    if tracker is not None:
        tracker.finish(summary_metrics(result))
    atomic_write_json(out / "config.json", cfg.to_dict())
    atomic_write_json(out / "result.json", {"config": cfg.to_dict(), **result})
    save_model(out / "final_model.pt", cfg, model, data.tokenizer)
    summary(cfg.model.name, result)
    print(f"wrote {out}/result.json, config.json, final_model.pt")
    if result["status"] != "ok":
        why = f": {result['error']}" if result.get("error") else ""
        print(f"moe-ablate: error: the run {result['status']}{why}", file=sys.stderr)
    return 0 if result["status"] == "ok" else 1


def cmd_models(args) -> int:
    import torch

    from ..config import preset_config
    from ..models import DESCRIPTIONS, MODEL_NAMES, build_model

    presets = args.presets or ["tiny", "seed", "exp9", "exp3"]
    print(f"{'model':<20} {'preset':<7} {'total params':>14} {'active params':>14} {'FLOPs/token':>14}  "
          f"(vocab {args.vocab_size}; training FLOPs per token at the preset's seq_len)")
    for name in MODEL_NAMES:
        for preset in presets:
            full = preset_config(preset, name)
            cfg = full.model
            cfg.vocab_size = args.vocab_size
            with torch.device("meta"):
                model = build_model(cfg)
            counts = model.param_counts()
            print(f"{name:<20} {preset:<7} {counts['total']:>14,} {counts['active']:>14,} "
                  f"{model.flops_per_token(full.train.seq_len):>14,}")
    print()
    for name in MODEL_NAMES:
        print(f"{name}: {DESCRIPTIONS[name]}")
    return 0


def cmd_hellaswag(args) -> int:
    from ..checkpoint import load_model
    from ..hellaswag import PROTOCOL, HellaSwagEvaluator
    from ..utils import atomic_write_json, resolve_device

    if args.output:
        out = Path(args.output).resolve()
        for name, given in (("--checkpoint", args.checkpoint), ("--data", args.data)):
            if out == Path(given).resolve():
                raise UserError(f"--output {args.output} would overwrite the {name} input; choose another file")
        if out.exists() and not out.is_file():
            raise UserError(f"--output {args.output} exists and is not a regular file")
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


def register(sub) -> None:
    t = sub.add_parser("train", help="train one experiment and write config.json, result.json, final_model.pt",
                       description="Train one model on one configuration (default preset: tiny, data: builtin). "
                                   "With --exp: the long run of Experiment 9 or 3, a study folder of one experiment.")
    add_experiment_flags(t)
    t.add_argument("--output-dir", default=None, help=f"output folder (default {DEFAULT_OUTPUT}/train_<model>_<time>); "
                   "with --exp: the parent folder, also searched for recommendation files")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    add_tracking_flags(t)
    add_long_run_flags(t)
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="list architectures with total/active parameter counts per preset")
    m.add_argument("--vocab-size", type=pos_int, default=49152, help="vocabulary for the counts (default 49152, "
                                                                     "SmolLM's)")
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
