"""Study commands: ``run``, ``analyze``, ``batch-seqlen``, ``lr-search``, ``expert-search`` and the
long run ``train --exp``. Each parses its flags into a ``Study`` (or none, to continue a stored one)
and calls ``studies.pipeline.run_study``."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from ..config import apply_overrides
from ..errors import StudyFailed, UserError
from ..studies import batch_seqlen, expert_search, grid, long_train, lr_search, scaling
from ..studies.pipeline import StudyResult, run_study
from ..studies.study import load_study
from .args import (DEFAULT_OUTPUT, EXPERIMENT_FLAGS, Defining, add_experiment_flags, add_study_flags, defining_given, executor,
                   experiment_overrides, log, lr_or_auto, nonneg_int, notes_on_unused_flags, pos_float, pos_int,
                   study_dir_for,
                   tracking_kwargs)


# which stored study kinds each command resumes, and the command for each kind
COMMAND_KINDS = {"run": ("grid", "lr_transfer", "scaling"), "scaling": ("scaling",), "batch-seqlen": ("batch_seqlen",), "lr-search": ("lr_search",),
                 "expert-search": ("expert_search",), "train": ("long_train",)}


def check_resumable_by(command: str, folder) -> None:
    """``lr-search --resume`` of a ``run`` study (and the like) is one line naming the right command."""
    stored, _ = load_study(Path(folder))
    if stored.kind not in COMMAND_KINDS[command]:
        right = next((c for c, kinds in COMMAND_KINDS.items() if stored.kind in kinds), "run")
        raise UserError(f"{folder} is a {stored.kind} study; resume it with `moe-ablate {right} --resume {folder}`")


def _run(args, build, **kw) -> StudyResult:
    """Shared by every study command: a new study from the flags, or on --resume the stored one."""
    ex = executor(args)  # before anything is written
    notes_on_unused_flags(args, log)
    if args.resume:
        check_resumable_by(args.command, args.resume)
    study = _resumed_with_flags(args, build) if args.resume else _build(args, build, record_flags=True)
    t0 = time.perf_counter()
    result = run_study(study, study_dir_for(args, study.name if study else ""), resume=bool(args.resume),
                       executor=ex, log=log, progress=not args.no_progress, **tracking_kwargs(args), **kw)
    _print_outcome(result, time.perf_counter() - t0)
    fail_if_nothing_finished(result)
    return result


def fail_if_nothing_finished(result: StudyResult) -> None:
    """A study in which every experiment failed is a failed command: exit 1, naming the common cause."""
    a = result.analysis
    if a["n_ok"] == 0 and a["n_failed"] > 0 and not a.get("n_pruned"):
        causes = Counter((f.get("status"), (f.get("error") or "").splitlines()[0][:200] if f.get("error") else "")
                         for f in a["failures"])
        (status, error), n = causes.most_common(1)[0]
        raise StudyFailed(f"every experiment failed ({n} of {a['n_failed']}: {status}"
                          + (f": {error}" if error else "") + f"); see {result.study_dir / 'report.md'}")


def _build(args, build, record_flags: bool = False):
    """The study these flags define (``build(args)`` plus the halving settings every kind shares)."""
    study = build(args)
    if getattr(args, "halving", None):
        if args.halving < 2:
            raise UserError("--halving needs ETA >= 2")
        study.halving, study.min_steps, study.halving_restart = args.halving, args.min_steps or 0, args.halving_restart
        if study.min_steps >= study.base.train.steps:
            raise UserError(f"--min-steps ({study.min_steps}) must be below the steps of a run "
                            f"({study.base.train.steps}): the first rung is a part of the run")
    if record_flags:
        study.flags = _json({d: getattr(args, d) for d in defining_given(args)})
    return study


def _json(v):
    return json.loads(json.dumps(v))


def _resumed_with_flags(args, build):
    """On --resume, only the study-defining flags the user gave are compared, each with the value the study
    was started with: agreeing flags are fine (the stored study runs, ``None`` is returned), a conflicting
    one is one line naming the flag and both values. A flag the study was not started with agrees when
    adding it to the original flags defines the same study (e.g. ``--steps`` equal to the preset's)."""
    given = defining_given(args)
    if not given:
        return None
    stored, _ = load_study(Path(args.resume))
    if stored.flags is None:  # started from Python or by an older version: the whole study must match
        return _build(args, build)
    flag = lambda d: "--" + d.replace("_", "-")  # noqa: E731  (every defining flag's dest is its name)
    mine = _json({d: getattr(args, d) for d in given})
    conflicts = [f"{flag(d)}: the study has {_show(stored.flags[d])}, this command gives {_show(v)}"
                 for d, v in mine.items() if d in stored.flags and stored.flags[d] != v]
    original = vars(args) | {d: None for d in getattr(args, "defining", ())} | stored.flags
    for d in (d for d in given if d not in stored.flags):
        trial = _build(argparse.Namespace(**(original | {d: getattr(args, d)})), build)
        if trial.identity() != stored.identity():
            conflicts.append(f"{flag(d)}: the study has {_stored_value(stored, flag(d))}, this command gives "
                             f"{_show(mine[d])}")
    if conflicts:
        raise UserError(f"cannot resume {args.resume}: {'; '.join(conflicts)} (give no study flags, or ones that "
                        "agree with the study)")
    return None


def _stored_value(study, flag: str) -> str:
    """What the stored study used for a flag it was not started with: the base config's value for an
    experiment setting, else the fact that the flag was not given."""
    if flag in EXPERIMENT_FLAGS:
        section, key = EXPERIMENT_FLAGS[flag][0].split(".")
        return _show(study.base.to_dict()[section][key])
    return "it unset"


def _show(v) -> str:
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def _print_outcome(result: StudyResult, wall: float | None = None) -> None:
    a = result.analysis
    pruned = f", {a['n_pruned']} pruned" if a.get("n_pruned") else ""
    print(f"{a['n_ok']} ok, {a['n_failed']} failed{pruned} of {a['n_experiments']} experiments "
          f"({a['n_configurations']} configurations)")
    print(a["answer"])
    for w in a["recommendation"].get("edge_warnings", []):
        print(f"warning: {w}")
    print(f"report: {result.study_dir / 'report.md'}")
    if wall is not None:
        from ..studies.runner import own_seconds

        train_eval = sum(own_seconds(r) for r in result.records)
        print(f"study wall time {wall:.1f}s (training+evaluation {train_eval:.1f}s)")


# ---------------------------------------------------------------- run (LR ablation and any TOML grid)
def cmd_run(args) -> int:
    def build(args):
        return grid.make_study(args.config or "lr_ablation", preset=args.preset, overrides=experiment_overrides(args),
                               quick=args.quick, max_experiments=args.max_experiments, seeds=args.seeds,
                               confirm=args.confirm)

    _run(args, build)
    return 0


def cmd_scaling(args) -> int:
    def build(args):
        return scaling.make_study(args.config or "scaling_tiny", preset=args.preset,
                                  overrides=experiment_overrides(args), quick=args.quick, seeds=args.seeds,
                                  confirm=args.confirm, target_steps=args.target_steps, target_model=args.target_model)

    _run(args, build)
    return 0


def cmd_analyze(args) -> int:
    from ..studies.outputs import analyze_folder

    d = Path(args.results_dir)
    _print_outcome(StudyResult(d, None, [], analyze_folder(d, log=log)))
    return 0


def cmd_batch_seqlen(args) -> int:
    def build(args):
        custom = {"batch_size": args.batch, "seq_len": args.seqlen, "lr": args.lr, "grad_accum": args.grad_accum,
                  "name": args.name}
        is_custom = any(v is not None for k, v in custom.items() if k != "name")
        if is_custom and (args.batch is None or args.seqlen is None):
            raise UserError("a custom run needs at least --batch and --seqlen")
        return batch_seqlen.make_study(args.config or "batch_seqlen", preset=args.preset,
                                       overrides=experiment_overrides(args), custom=custom if is_custom else None,
                                       confirm=args.confirm)

    _run(args, build)
    return 0


# ---------------------------------------------------------------- Experiments 9 and 3
def _auto_lr(output_dir: str, exp: int) -> tuple[float, str]:
    found = lr_search.find_recommendation(output_dir, "lr_recommendation.json", exp)
    if found is None:
        raise UserError(f"--lr auto: no lr_recommendation.json for exp {exp} under {output_dir}; "
                        f"run `moe-ablate lr-search --exp {exp} --output-dir {output_dir}` first")
    rec, path = found
    return rec["best_learning_rate"], str(path)


def cmd_lr_search(args) -> int:
    if args.exp is None and not args.resume:
        raise UserError("lr-search needs --exp 9 or --exp 3 (or --resume DIR)")

    def build(args):
        return lr_search.make_study(args.exp, lrs=args.lrs, full=args.full, preset=args.preset,
                                    overrides=experiment_overrides(args), confirm=args.confirm)

    result = _run(args, build, extend=args.extend)
    rec = lr_search.KIND.recommendation(result.study, result.records, result.analysis)
    print(f"results: {result.study_dir / 'lr_recommendation.json'}")
    if args.then_train:
        if rec.get("best_learning_rate") is None:
            raise UserError("no successful LR to train with")
        # the search's --steps/--eval-every/--patience were for the search; the long run has its own
        cfg = apply_overrides(result.study.base, {**long_train.long_run_settings(args.long_steps, args.hellaswag),
                                                  "train.muon_lr": rec["best_learning_rate"]})
        exp = result.study.params["exp"]
        long = long_train.make_study(exp, cfg, {"lr_recommendation": str(result.study_dir / "lr_recommendation.json")})
        _print_long(run_study(long, result.study_dir / "long_term", log=log, progress=not args.no_progress,
                              **tracking_kwargs(args)))
    return 0


def cmd_expert_search(args) -> int:
    def build(args):
        if args.lr == "auto":
            lr, source = _auto_lr(args.output_dir, 3)
        else:
            lr, source = (args.lr, "--lr") if args.lr is not None else (1e-3, "the default 1e-3")
        return expert_search.make_study(lr=lr, lr_source=source, preset=args.preset,
                                        overrides=experiment_overrides(args), confirm=args.confirm)

    _run(args, build)
    return 0


def summary(name: str, r: dict) -> None:
    val = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else "n/a"
    print(f"{name}: status {r['status']} | steps {r['steps']} | val loss {val} | "
          f"params {r['params']['total']:,} total / {r['params']['active']:,} active | "
          f"{r['wall_time_s']:.1f}s | {r['tokens_per_s'] or 0:,.0f} tok/s")


def _print_long(result: StudyResult) -> None:
    r = result.records[0] if result.records else {}
    if r.get("params"):
        summary(r["config"]["model"]["name"], r)
    print(result.analysis["answer"])
    written = [f for f in ("long_term_results.json", "training_curves.png", "final_model.pt")
               if (result.study_dir / f).exists()]
    print(f"wrote {', '.join(str(result.study_dir / f) for f in written)}")
    fail_if_nothing_finished(result)


def cmd_train_exp(args) -> int:
    """``train --exp 9|3`` (long training with recommended settings) and ``train --resume DIR|CKPT``."""
    if args.resume:
        path = Path(args.resume)
        folder, rerun = path, None
        if path.is_file():  # continue from exactly this checkpoint (checkpoints/<id>/checkpoint_step_N.pt)
            from ..checkpoint import read_checkpoint

            if "optimizers" not in read_checkpoint(path):
                raise UserError(f"{path} holds a final model, not a training checkpoint (checkpoint_step_N.pt)")
            folder, rerun = path.parent.parent.parent, {path.parent.name: path}
        check_resumable_by("train", folder)
        _print_long(run_study(None, folder, resume=True, log=log, rerun_from=rerun, progress=not args.no_progress,
                              **tracking_kwargs(args)))
        return 0
    exp, output = args.exp, args.output_dir or DEFAULT_OUTPUT
    settings_from: dict = {}
    overrides = long_train.long_run_settings(hellaswag=args.hellaswag)
    for name in ("checkpoint_every", "hellaswag_every"):
        if getattr(args, name) is not None:
            overrides[f"train.{name}"] = getattr(args, name)
    if args.lr == "auto":
        lr, src = _auto_lr(output, exp)
        overrides["train.muon_lr"], settings_from["lr_recommendation"] = lr, src
        if exp == 3:
            found = lr_search.find_recommendation(output, "expert_recommendation.json", 3)
            if found:
                rec, path = found
                overrides.update({"model.num_experts": rec["num_experts"], "model.top_k": rec["top_k"]})
                settings_from["expert_recommendation"] = str(path)
            else:
                log("no expert_recommendation.json found: using the preset's experts/top-k")
    elif args.lr is not None and not str(args.lr).startswith("scaling:"):
        overrides["train.muon_lr"] = args.lr
    # long-run defaults < recommendations < explicit flags
    cfg = lr_search.experiment_base(exp, args.preset, overrides, experiment_overrides(args))
    if str(args.lr).startswith("scaling:"):  # the law's LR at this run's own compute (its model and steps)
        lr, settings_from["lr_scaling_law"] = scaling.lr_from_law(args.lr[len("scaling:"):], cfg)
        iv = settings_from["lr_scaling_law"].get("interval80") or (float("nan"),) * 2
        log(f"--lr {args.lr}: Muon LR {lr:.4g} (80% interval {iv[0]:.4g}-{iv[1]:.4g}) at "
            f"{settings_from['lr_scaling_law']['compute']:.3g} FLOPs")
        cfg = lr_search.experiment_base(exp, args.preset, {**overrides, "train.muon_lr": lr}, experiment_overrides(args))
    out = Path(output) / f"exp{exp}_long_term_{time.strftime('%Y%m%d_%H%M%S')}"
    _print_long(run_study(long_train.make_study(exp, cfg, settings_from), out, log=log, progress=not args.no_progress,
                          **tracking_kwargs(args)))
    return 0


def register(sub) -> None:
    r = sub.add_parser(
        "run", help="run an ablation study (default: the 270-experiment learning-rate grid)",
        description="Run every experiment of a study grid (configs/lr_ablation.toml unless --config), "
                    "one after another, each writing experiments/<id>.json, then analyse the results.")
    d = Defining(r, "the study")
    d.add("--config", default=None, help="study TOML file or preset name in configs/ (default lr_ablation)")
    d.add("--quick", action="store_true", help="run the file's [quick] grid (4 experiments for lr_ablation)")
    d.add("--max-experiments", type=pos_int, default=None,
          help="run N configurations chosen to span every value of every axis (seeded, not the first N)")
    d.add("--seeds", type=pos_int, default=None, help="run each configuration with K seeds (N x K runs)")
    add_study_flags(r, "<study name>")
    add_experiment_flags(r)
    r.set_defaults(func=cmd_run)

    sc = sub.add_parser(
        "scaling", help="fit how the optimal LR (and batch size) scale with compute; predict them for the long run",
        description="A ladder of scales (model widths/depths and/or token horizons, the file's non-LR axes) with an "
                    "LR grid and seeds at each: the optimum at each scale (minimum of a cubic in log LR, bootstrap "
                    "CI), a power law in compute (WLS in log-log, bootstrap CIs, a bend test), a held-out check on "
                    "the largest scale, and the predicted LR for the target run. Writes scaling_law.json and "
                    "scaling_law.png beside the usual report; `train --exp N --lr scaling:DIR` uses the law.")
    d = Defining(sc, "the study")
    d.add("--config", default=None, help="scaling TOML file or preset name in configs/ (default scaling_tiny, a "
                                         "CPU-sized ladder; scaling is the GPU-sized one)")
    d.add("--quick", action="store_true", help="run the file's [quick] grid")
    d.add("--seeds", type=pos_int, default=None, help="seeds per configuration (default: the file's)")
    d.add("--target-steps", type=pos_int, default=None,
          help="steps of the run to predict for (default: the file's [scaling] target_steps, else 10,000)")
    d.add("--target-model", default=None, metavar="PRESET",
          help="size of the model to predict for: seed | tiny | exp9 | exp3 (default: the `train --exp 3` model)")
    add_study_flags(sc, "<study name>")
    add_experiment_flags(sc)
    sc.set_defaults(func=cmd_scaling)

    a = sub.add_parser("analyze", help="(re)analyse a study folder of any kind: statistics, plots, report.md",
                       description="Analyse a study folder's experiments/*.json (never modifies them) and write "
                                   "final_results.json, analysis.json, comprehensive_report.json, plots, report.md "
                                   "and the study kind's own files.")
    a.add_argument("--results-dir", required=True, help="the study folder")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("batch-seqlen", help="batch size vs sequence length at equal tokens per step",
                       description="Run the strategies of configs/batch_seqlen.toml (large batch + short sequences, "
                                   "balanced, small batch + long sequences) x LRs, or one custom configuration.")
    d = Defining(b, "the study")
    d.add("--config", default=None, help="study TOML (default configs/batch_seqlen.toml)")
    d.add("--batch", type=pos_int, default=None, help="custom run: sequences per micro-batch")
    d.add("--seqlen", type=pos_int, default=None, help="custom run: tokens per sequence")
    d.add("--lr", type=pos_float, default=None, help="custom run: Muon learning rate")
    d.add("--grad-accum", type=pos_int, default=None, help="custom run: micro-batches per step")
    d.add("--name", default=None, help="custom run: its name (used in the folder name)")
    add_study_flags(b, "batch_seqlen", name_flag=False)
    add_experiment_flags(b, skip=("--batch-size", "--seq-len", "--grad-accum", "--muon-lr"))
    b.set_defaults(func=cmd_batch_seqlen)

    lr = sub.add_parser("lr-search", help="learning-rate search for Experiment 9 or 3 (early stopping, recommendation)",
                        description="Train the experiment's model once per LR (warmup 5% + cosine to 10%, early "
                                    "stopping on validation loss) and recommend the LR with the lowest best "
                                    "validation loss. Quick: 4 LRs x 1000 steps; --full: 7 LRs x 2000 steps.")
    d = Defining(lr, "the study")
    d.add("--exp", type=int, choices=sorted(lr_search.EXPERIMENTS), default=None,
          help="9: deepseek_mlp (preset exp9); 3: deepseek_glm4_moe (preset exp3); required unless --resume")
    d.add("--full", action="store_true", help="7 LRs 1e-5..1e-2, 2000 steps, eval every 100, patience 5")
    d.add("--lrs", type=pos_float, nargs="+", default=None, help="the LRs to try (Muon LR)")
    lr.add_argument("--extend", action="store_true",
                    help="while the best LR is at an edge, add LRs x3 beyond it (bounds 1e-6..1); works with --resume")
    lr.add_argument("--then-train", action="store_true", help="then train long (train --exp) with the best LR")
    lr.add_argument("--long-steps", type=pos_int, default=10000, help="with --then-train: steps of the long run")
    lr.add_argument("--hellaswag", default=None, help="with --then-train: HellaSwag source for the long run")
    add_study_flags(lr, "lr_search_exp<N>")
    add_experiment_flags(lr, skip=("--model", "--muon-lr"))
    lr.set_defaults(func=cmd_lr_search)

    ex = sub.add_parser("expert-search", help="experts {4,8,16} x top-k {1,2} for Experiment 3",
                        description="Train Experiment 3's model with each expert configuration (800 steps) and "
                                    "recommend one; records routing balance and total/active parameters.")
    d = Defining(ex, "the study")
    d.add("--exp", type=int, choices=[3], default=None, help="only 3 (the GLM4-MoE model)")
    d.add("--lr", type=lr_or_auto, default=None,
          help="Muon LR, or 'auto' = the lr-search --exp 3 recommendation found under --output-dir (default 1e-3)")
    add_study_flags(ex, "expert_search_exp3")
    add_experiment_flags(ex, skip=("--model", "--muon-lr", "--num-experts", "--top-k"))
    ex.set_defaults(func=cmd_expert_search)


def add_long_run_flags(t) -> None:
    g = t.add_argument_group("long training of Experiment 9 or 3 (the seeds' pipeline)")
    g.add_argument("--exp", type=int, choices=[9, 3], default=None,
                   help="9: deepseek_mlp/exp9, 3: deepseek_glm4_moe/exp3; defaults 10000 steps, eval every 100, "
                        "checkpoint every 3000, HellaSwag every 1000")
    g.add_argument("--lr", type=lr_or_auto, default=None,
                   help="Muon LR; 'auto' = the lr-search recommendation under --output-dir (exp 3 also takes the "
                        "expert-search recommendation); scaling:DIR = the LR a scaling study's law predicts for this "
                        "run's compute (its model and --steps)")
    g.add_argument("--resume", default=None, metavar="DIR|CHECKPOINT",
                   help="continue a long run: its folder (from the newest readable checkpoint) or one checkpoint file")
    g.add_argument("--hellaswag", default=None, help="HellaSwag source (JSONL file or hf:Rowan/hellaswag)")
    g.add_argument("--checkpoint-every", type=nonneg_int, default=None, help="full-state checkpoint every N steps")
    g.add_argument("--hellaswag-every", type=nonneg_int, default=None, help="HellaSwag every N steps")
