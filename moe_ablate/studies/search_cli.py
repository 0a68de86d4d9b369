"""CLI for the Experiment 9/3 pipeline: ``lr-search``, ``expert-search`` and ``train --exp``."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import apply_overrides, preset_config, validate
from ..errors import UserError
from . import search
from .cli import _cli, add_study_flags, execute, executor_options
from .runner import run_experiments


def _base(args, exp: int, defaults: dict):
    """Experiment model + preset, the command's defaults, then the user's flags."""
    cli = _cli()
    model, preset = search.EXPERIMENTS[exp]
    cfg = preset_config(args.preset or preset, model)
    cfg = apply_overrides(cfg, defaults)
    return validate(apply_overrides(cfg, cli.experiment_overrides(args)))


def _auto_lr(output_dir: str, exp: int) -> tuple[float, str]:
    found = search.find_recommendation(output_dir, "lr_recommendation.json", exp)
    if found is None:
        raise UserError(f"--lr auto: no lr_recommendation.json for exp {exp} under {output_dir}; "
                        f"run `moe-ablate lr-search --exp {exp} --output-dir {output_dir}` first")
    rec, path = found
    return rec["best_learning_rate"], str(path)


def cmd_lr_search(args) -> int:
    cli = _cli()
    mode = search.FULL if args.full else search.QUICK
    base = _base(args, args.exp, {"train.steps": mode["steps"], "train.eval_every": mode["eval_every"],
                                  "train.patience": mode["patience"], "train.log_every": 10})
    lrs = args.lrs or mode["lrs"]
    exps = search.lr_experiments(lrs)
    study = {"name": f"lr_search_exp{args.exp}", "kind": "lr_search", "exp": args.exp, "lrs": sorted(lrs),
             "mode": "full" if args.full else "quick", "extend": args.extend}
    changed = bool(cli.experiment_overrides(args) or args.lrs or args.full or args.preset or args.extend)
    kw = {"subdir": "results", "suffix": "_result"}
    run = execute(args, study, base, exps, f"lr_search_exp{args.exp}", changed, folder_name=args.name, **kw)
    # a resumed study keeps what it was started with
    study_dir, records, data, base, exps = run.study_dir, run.records, run.data, run.base, run.experiments
    exp = run.study.get("exp", args.exp)
    while args.extend and (nxt := search.extension(records)) is not None:
        cli.log(f"best LR is at the edge of the range: extending the search with LR {nxt:.2e}")
        exps = exps + search.lr_experiments([nxt])
        records = run_experiments(study_dir, base, exps, data, log=cli.log, progress=not args.no_progress,
                                  executor=executor_options(args), **kw)
    rec = search.write_lr_outputs(study_dir, records, exp)
    print(f"lr-search exp {exp}: {rec['recommendation']}")
    if rec.get("warning"):
        print(f"warning: {rec['warning']}")
    print(f"results: {study_dir / 'lr_recommendation.json'}")
    if args.then_train:
        if rec.get("best_learning_rate") is None:
            raise UserError("no successful LR to train with")
        # the search's --steps/--eval-every/--patience were for the search; the long run has its own
        cfg = apply_overrides(base, {**search.long_run_settings(args.long_steps, bool(args.hellaswag)),
                                     "train.muon_lr": rec["best_learning_rate"]})
        _run_long(args, cfg, data, study_dir / "long_term",
                  {"lr_recommendation": str(study_dir / "lr_recommendation.json")})
    return 0


def cmd_expert_search(args) -> int:
    cli = _cli()
    if args.exp != 3:
        raise UserError("expert search is for --exp 3 (Experiment 9 has a dense MLP, no experts)")
    defaults = {"train.steps": 800, "train.eval_every": 100, "train.log_every": 10}
    if args.lr == "auto":
        lr, lr_source = _auto_lr(args.output_dir, 3)
    else:
        lr, lr_source = (args.lr, "--lr") if args.lr is not None else (1e-3, "the default 1e-3")
    base = _base(args, 3, {**defaults, "train.muon_lr": lr})
    study = {"name": "expert_search_exp3", "kind": "expert_search", "exp": 3, "lr": lr, "lr_source": lr_source}
    changed = bool(cli.experiment_overrides(args) or args.preset or args.lr is not None)
    run = execute(args, study, base, search.expert_experiments(), "expert_search_exp3", changed,
                  folder_name=args.name)
    study_dir = run.study_dir
    lr = run.base.train.muon_lr
    rec = search.write_expert_outputs(study_dir, run.records, 3)
    print(f"expert-search exp 3 (lr {lr:.2e} from {lr_source}): {rec['recommendation']}")
    print(f"results: {study_dir / 'expert_recommendation.json'}")
    return 0


def _run_long(args, cfg, data, out_dir: Path, provenance: dict, resume_from: str | None = None) -> None:
    from .long_train import long_train

    cli = _cli()
    if resume_from is None:
        cli.fresh_dir(out_dir)
    validate(cfg)
    summary = long_train(cfg, data, out_dir, provenance=provenance, resume_from=resume_from,
                         hellaswag_source=args.hellaswag, log=cli.log)
    cli._summary(cfg.model.name, summary)
    print(f"wrote {out_dir / 'long_term_results.json'}, training_curves.png, checkpoints/")


def cmd_train_exp(args) -> int:
    """``train --exp 9|3`` (long training with recommended settings) and ``train --resume CKPT``."""
    from ..checkpoint import read_checkpoint
    from ..config import ExperimentConfig
    from ..data import prepare_data

    cli = _cli()
    if args.resume:
        ckpt = Path(args.resume)
        stored = read_checkpoint(ckpt)
        if "optimizers" not in stored:
            raise UserError(f"{ckpt} holds a final model, not a training checkpoint (checkpoints/checkpoint_step_N.pt)")
        cfg = ExperimentConfig.from_dict(stored["config"])
        data = prepare_data(cfg.data, log=cli.log)
        _run_long(args, cfg, data, ckpt.parent.parent, {"resumed_from": str(ckpt)}, resume_from=str(ckpt))
        return 0
    exp = args.exp
    provenance: dict = {}
    # long-run defaults < recommendations < explicit flags (``_base`` applies the flags last)
    overrides = {**search.long_run_settings(hellaswag=bool(args.hellaswag)), **cli.long_run_flags(args)}
    if args.lr == "auto":
        lr, src = _auto_lr(args.output_dir or cli.DEFAULT_OUTPUT, exp)
        overrides["train.muon_lr"], provenance["lr_recommendation"] = lr, src
        if exp == 3:
            found = search.find_recommendation(args.output_dir or cli.DEFAULT_OUTPUT, "expert_recommendation.json", 3)
            if found:
                rec, path = found
                overrides.update({"model.num_experts": rec["num_experts"], "model.top_k": rec["top_k"]})
                provenance["expert_recommendation"] = str(path)
            else:
                cli.log("no expert_recommendation.json found: using the preset's experts/top-k")
    elif args.lr is not None:
        overrides["train.muon_lr"] = args.lr
    cfg = _base(args, exp, overrides)
    out = Path(args.output_dir or cli.DEFAULT_OUTPUT) / f"exp{exp}_long_term_{time.strftime('%Y%m%d_%H%M%S')}"
    data = prepare_data(cfg.data, log=cli.log)
    _run_long(args, cfg, data, out, provenance)
    return 0


def register(sub) -> None:
    cli = _cli()
    lr = sub.add_parser("lr-search", help="learning-rate search for Experiment 9 or 3 (early stopping, recommendation)",
                        description="Train the experiment's model once per LR (warmup 5%% + cosine to 10%%, early "
                                    "stopping on validation loss) and recommend the LR with the lowest best "
                                    "validation loss. Quick: 4 LRs x 1000 steps; --full: 7 LRs x 2000 steps.")
    lr.add_argument("--exp", type=int, choices=sorted(search.EXPERIMENTS), required=True,
                    help="9: deepseek_mlp (preset exp9); 3: deepseek_glm4_moe (preset exp3)")
    lr.add_argument("--full", action="store_true", help="7 LRs 1e-5..1e-2, 2000 steps, eval every 100, patience 5")
    lr.add_argument("--lrs", type=cli.pos_float, nargs="+", default=None, help="the LRs to try (Muon LR)")
    lr.add_argument("--extend", action="store_true",
                    help="while the best LR is at an edge, add LRs x3 beyond it (bounds 1e-6..1)")
    lr.add_argument("--then-train", action="store_true", help="then train long (train --exp) with the best LR")
    lr.add_argument("--long-steps", type=cli.pos_int, default=10000, help="with --then-train: steps of the long run")
    lr.add_argument("--hellaswag", default=None, help="with --then-train: HellaSwag source for the long run")
    add_study_flags(lr, "lr_search_exp<N>")
    cli.add_experiment_flags(lr, skip=("--model", "--muon-lr"))
    lr.set_defaults(func=cmd_lr_search)

    ex = sub.add_parser("expert-search", help="experts {4,8,16} x top-k {1,2} for Experiment 3",
                        description="Train Experiment 3's model with each expert configuration (800 steps) and "
                                    "recommend one; records routing balance and total/active parameters.")
    ex.add_argument("--exp", type=int, choices=[3], default=3, help="only 3 (the GLM4-MoE model)")
    ex.add_argument("--lr", type=cli.lr_or_auto, default=None,
                    help="Muon LR, or 'auto' = the lr-search --exp 3 recommendation found under --output-dir "
                         "(default 1e-3)")
    add_study_flags(ex, "expert_search_exp3")
    cli.add_experiment_flags(ex, skip=("--model", "--muon-lr", "--num-experts", "--top-k"))
    ex.set_defaults(func=cmd_expert_search)
