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
    print(hyperparameters(cfg, args.preset or "tiny"))
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


def hyperparameters(cfg, preset: str) -> str:
    """The settings a run uses, in two lines: what a user needs to read its loss (and to repeat it)."""
    m, t = cfg.model, cfg.train
    experts = f", {m.num_experts} experts top-{m.top_k}" if m.name != "deepseek_mlp" else ""
    warmup = f"{t.warmup_steps} warmup steps" if t.warmup_steps else f"warmup {t.warmup_frac:g} of the steps"
    return (f"model {m.name} (preset {preset}): d_model {m.d_model}, {m.n_layers} layers, {m.n_heads} heads, d_ff "
            f"{m.d_ff}{experts}, vocab {m.vocab_size}\n"
            f"train: {t.steps} steps x batch {t.batch_size} x seq {t.seq_len}, muon_lr {t.muon_lr:g}, adamw lr "
            f"{t.muon_lr * t.adamw_lr_ratio:g} (ratio {t.adamw_lr_ratio:g}), momentum {t.momentum:g}, weight decay "
            f"{t.weight_decay:g}, {t.schedule} schedule, {warmup}, seed {t.seed}")


def cmd_models(args) -> int:
    """Parameter counts at each preset's own vocabulary, as its runs record them: the real size of the preset's
    tokenizer when it is in the cache (a BPE on a small corpus stops short of the size asked), else the size asked."""
    import torch

    from ..config import preset_config
    from ..models import DESCRIPTIONS, MODEL_NAMES, build_model

    presets = args.presets or ["tiny", "seed", "exp9", "exp3"]
    vocab = {p: _preset_vocab(p, args) for p in presets}
    print(f"{'model':<20} {'preset':<7} {'vocab':>7} {'total params':>14} {'active params':>14} {'FLOPs/token':>14}")
    for name in MODEL_NAMES:
        for preset in presets:
            full = preset_config(preset, name)
            cfg = full.model
            cfg.vocab_size = vocab[preset][0]
            with torch.device("meta"):
                model = build_model(cfg)
            counts = model.param_counts()
            print(f"{name:<20} {preset:<7} {cfg.vocab_size:>7,} {counts['total']:>14,} {counts['active']:>14,} "
                  f"{model.flops_per_token(full.train.seq_len):>14,}")
    print()
    for how in dict.fromkeys(how for _, how in vocab.values()):
        print(f"vocab of {', '.join(p for p, (_, h) in vocab.items() if h == how)}: {how}")
    print("FLOPs/token: training FLOPs per token at the preset's seq_len")
    for name in MODEL_NAMES:
        print(f"{name}: {DESCRIPTIONS[name]}")
    return 0


def cmd_keys(args) -> int:
    """Every key a study TOML takes (``[base]``, ``[grid]``), from the config dataclasses."""
    from ..config_keys import all_keys
    from .args import EXPERIMENT_FLAGS

    flags = {key: (flag, help_) for flag, (key, _, help_) in EXPERIMENT_FLAGS.items()}
    keys = [k for k in all_keys(flags) if not args.match or args.match in k.key]
    width = max((len(k.key) for k in keys), default=0)
    for k in keys:
        default = repr(k.default) if isinstance(k.default, str) else k.default
        print(f"{k.key:<{width}}  {k.type:<10} default {default}")
        if k.help:
            print(f"{'':<{width}}  {k.help}")
    if not keys:
        print(f"no key contains {args.match!r}")
        return 2
    return 0


def _preset_vocab(preset: str, args) -> tuple[int, str]:
    """(vocabulary size, where it comes from) for a preset's data settings."""
    from ..config import preset_config

    if args.vocab_size:
        return args.vocab_size, "as given by --vocab-size"
    data = preset_config(preset).data
    if args.cache_dir:
        data.cache_dir = args.cache_dir
    from ..data.tokens import cached_vocab_size

    real = cached_vocab_size(data)
    if real is not None:
        return real, "the real size of the preset's tokenizer (from the data cache), as its runs record it"
    return data.vocab_size, ("the size the preset asks for; its data is not prepared yet, and a BPE trained on a "
                             "small corpus may stop below it (`moe-ablate data prepare --preset NAME` gives the "
                             "real one)")


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
    ci = {k: "{:.3f}-{:.3f}".format(*result[f"{k}_ci95"]) for k in ("acc", "acc_norm")}
    print(f"hellaswag: acc {result['acc']:.3f} (95% CI {ci['acc']}), acc_norm {result['acc_norm']:.3f} (95% CI "
          f"{ci['acc_norm']}), n {result['n']}; chance {result['chance']:.2f} | {result['items_per_s']:.1f} items/s | "
          f"{args.data}")
    if result["acc_norm_ci95"][0] <= result["chance"] <= result["acc_norm_ci95"][1]:
        print(f"hellaswag: acc_norm cannot be told from chance ({result['chance']:.2f}) with {result['n']} items")
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
    m.add_argument("--vocab-size", type=pos_int, default=None,
                   help="count at this vocabulary (default: each preset's own, as its runs record it: the real size "
                        "of its tokenizer when prepared, else the size it asks for)")
    m.add_argument("--cache-dir", default=None, help="the data cache to look for the presets' tokenizers in")
    m.add_argument("--presets", nargs="*", default=None, help="presets to count (default: all)")
    m.set_defaults(func=cmd_models)

    k = sub.add_parser("keys", help="list every config key a study TOML takes ([base], [grid]): type, default, help",
                       description="Every settable key (model.*, train.*, data.*) with its type, default and help, "
                                   "read from the config dataclasses: what [base] and [grid] in a study TOML take.")
    k.add_argument("match", nargs="?", default=None, help="show only keys containing this text, e.g. lr")
    k.set_defaults(func=cmd_keys)

    h = sub.add_parser("hellaswag", help="score a saved model on HellaSwag (lm-evaluation-harness protocol)",
                       description="Zero-shot HellaSwag: summed log-likelihood of each ending given the context; "
                                   "acc and acc_norm exactly as lm-evaluation-harness computes them.")
    h.add_argument("--checkpoint", required=True, help="final_model.pt or a training checkpoint of this project")
    h.add_argument("--data", default="hf:Rowan/hellaswag",
                   help="JSONL file (the official format, ctx/endings/label, or the harness's query/choices/gold), or "
                        "hf:Rowan/hellaswag (validation split; needs the hub)")
    h.add_argument("--limit", type=pos_int, default=None, help="score only the first N items")
    h.add_argument("--batch-size", type=pos_int, default=8, help="items per forward pass (x4 endings)")
    h.add_argument("--device", default=None, help="auto | cpu | cuda")
    h.add_argument("--output", default=None, help="write the JSON result with per-item predictions here")
    h.set_defaults(func=cmd_hellaswag)
