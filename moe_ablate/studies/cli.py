"""Study commands for the CLI: ``run``, ``analyze`` and ``batch-seqlen``, and the helpers every study
command shares (study folder flags, executor flags, ``execute``). The Experiment 9/3 searches are
in ``search_cli.py``."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig
from ..data import TokenData
from ..errors import UserError
from ..utils import read_json, resolve_device
from .runner import ExecutorOptions, prepare_study, run_experiments, study_identity
from .spec import ExperimentSpec, expand, load_study, spanning_subset


def _cli():
    from .. import cli  # late: cli imports this module

    return cli


def add_study_flags(p: argparse.ArgumentParser, default_name: str, name_flag: bool = True) -> None:
    cli = _cli()
    g = p.add_argument_group("study folder")
    g.add_argument("--output-dir", default=cli.DEFAULT_OUTPUT, help="parent folder of studies (default %(default)s)")
    if name_flag:
        g.add_argument("--name", default=None, help=f"study folder name (default {default_name}_<YYYYmmdd_HHMMSS>)")
    g.add_argument("--resume", metavar="DIR", default=None,
                   help="continue an interrupted study in DIR: finished experiments are kept, the rest run")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    x = p.add_argument_group("where experiments run")
    x.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one after another here (default); ray: one Ray task per experiment, in parallel "
                        "on this machine's GPUs/CPUs or a cluster (pip install 'moe-ablate[ray]')")
    x.add_argument("--ray-address", default=None, help="an existing Ray cluster, e.g. auto or ray://head:10001 "
                                                       "(default: start a local one sized to this machine)")
    x.add_argument("--gpus-per-experiment", type=cli.nonneg_float, default=None,
                   help="GPUs per Ray task (default 1 on CUDA machines, else 0)")
    x.add_argument("--cpus-per-experiment", type=cli.pos_float, default=1.0, help="CPUs per Ray task (default 1)")


def study_dir_for(args, default_name: str, explicit_name: str | None = None) -> Path:
    """The study folder: --resume DIR, --name, or a new timestamped folder (never an existing one)."""
    if args.resume:
        return Path(args.resume)
    if explicit_name:
        return Path(args.output_dir) / explicit_name
    path = Path(args.output_dir) / f"{default_name}_{time.strftime('%Y%m%d_%H%M%S')}"
    n = 2
    while path.exists():
        path = path.with_name(f"{default_name}_{time.strftime('%Y%m%d_%H%M%S')}_{n}")
        n += 1
    return path


def executor_options(args) -> ExecutorOptions:
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            from .ray_executor import INSTALL_HINT

            raise UserError(INSTALL_HINT) from None
    return ExecutorOptions(args.executor, args.ray_address, args.gpus_per_experiment, args.cpus_per_experiment)


@dataclass
class StudyRun:
    """What ``execute`` resolved and ran (on resume: the stored study, base and experiments)."""

    study_dir: Path
    records: list[dict]
    study: dict
    data: TokenData
    base: ExperimentConfig
    experiments: list[ExperimentSpec]


def execute(args, study: dict, base: ExperimentConfig, experiments: list[ExperimentSpec], default_name: str,
            changed_flags: bool, record_extra=None, folder_name: str | None = None, **run_kw) -> StudyRun:
    """Shared by every study command: resolve folder, check resume, tokenise once, run, return records."""
    cli = _cli()
    executor = executor_options(args)  # before anything is written
    study_dir = study_dir_for(args, default_name, folder_name)
    identity = study_identity(study, base, experiments)
    if args.resume and not changed_flags:
        stored = read_json(study_dir / "config.json") if (study_dir / "config.json").exists() else None
        if stored is None:
            raise UserError(f"cannot resume {study_dir}: no config.json there")
        ident = stored["identity"]
        study, base = ident["study"], ExperimentConfig.from_dict(ident["base"])
        experiments = [ExperimentSpec(e["id"], e["overrides"]) for e in ident["experiments"]]
        identity = ident
    if resolve_device(base.train.device) == "cpu" and base.model.d_model >= 384:
        cli.log(f"note: a {base.model.d_model}-wide model on CPU is slow; --preset tiny gives a CPU-sized study")
    data = prepare_study(study_dir, identity, base, resume=bool(args.resume), log=cli.log)
    cli.log(f"study {study_dir}: {len(experiments)} experiments | model {base.model.name} | "
            f"data {data.provenance['source']} ({data.provenance['num_tokens']:,} tokens, vocab {data.vocab_size})")
    records = run_experiments(study_dir, base, experiments, data, log=cli.log, progress=not args.no_progress,
                              record_extra=record_extra, executor=executor, **run_kw)
    return StudyRun(study_dir, records, study, data, base, experiments)


# ---------------------------------------------------------------- run (LR ablation and any TOML grid)
def cmd_run(args) -> int:
    from ..analysis import analyze_study

    cli = _cli()
    spec = load_study(args.config or "lr_ablation")
    overrides = cli.experiment_overrides(args)
    base = spec.base_config(args.preset, None, overrides)
    axes = spec.quick if args.quick else spec.grid
    if args.quick and not spec.quick:
        raise UserError(f"study {spec.name} defines no [quick] grid")
    experiments = expand(axes, seeds=args.seeds or 1, base_seed=base.train.seed)
    if args.max_experiments:
        experiments = spanning_subset(experiments, axes, args.max_experiments, seed=base.train.seed)
    study = {**spec.to_dict(), "quick": bool(args.quick), "max_experiments": args.max_experiments,
             "seeds": args.seeds or 1, "preset": args.preset or spec.preset}
    changed = bool(overrides or args.quick or args.max_experiments or args.seeds or args.config or args.preset)
    t0 = time.perf_counter()
    run = execute(args, study, base, experiments, spec.name, changed, folder_name=args.name)
    study_dir, records = run.study_dir, run.records
    train_eval = sum((r.get("train_time_s") or 0) + (r.get("eval_time_s") or 0) for r in records)
    t1 = time.perf_counter()
    result = analyze_study(study_dir, log=cli.log)
    wall = time.perf_counter() - t0
    _print_outcome(study_dir, result)
    print(f"study wall time {wall:.1f}s (training+evaluation {train_eval:.1f}s, analysis {time.perf_counter() - t1:.1f}s)")
    return 0


def _print_outcome(study_dir: Path, result: dict) -> None:
    rec = result["recommendation"]
    print(f"{result['n_ok']} ok, {result['n_failed']} failed of {result['n_experiments']} experiments")
    print(rec.get("text", ""))
    for w in rec.get("edge_warnings", []):
        print(f"warning: {w}")
    print(f"report: {study_dir / 'report.md'}")


def cmd_analyze(args) -> int:
    from ..analysis import analyze_study

    result = analyze_study(Path(args.results_dir), log=_cli().log)
    _print_outcome(Path(args.results_dir), result)
    return 0


# ---------------------------------------------------------------- batch-seqlen
def cmd_batch_seqlen(args) -> int:
    from . import batch_seqlen as bs

    cli = _cli()
    spec = load_study(args.config or "batch_seqlen")
    preset = args.preset or spec.preset
    base = bs.scale_base(spec.base_config(preset, None, cli.experiment_overrides(args)), spec, preset)
    custom = [args.batch, args.seqlen, args.lr, args.grad_accum]
    if any(v is not None for v in custom):
        if args.batch is None or args.seqlen is None:
            raise UserError("a custom run needs at least --batch and --seqlen")
        strats = [bs.strategy(args.name or "custom", args.batch, args.seqlen, args.grad_accum or 1)]
        lrs = [args.lr or base.train.muon_lr]
    else:
        strats, lrs = bs.strategies(spec, preset), bs.learning_rates(spec, base.train.muon_lr)
    exps = bs.experiments(strats, lrs)
    bs.check_lengths(base, exps)
    study = {**spec.to_dict(), "preset": preset, "strategies": strats, "lrs": lrs}
    changed = bool(cli.experiment_overrides(args) or any(v is not None for v in custom) or args.config or args.preset)
    label = f"batch_seqlen_{strats[0]['name']}" if any(v is not None for v in custom) else "batch_seqlen"
    run = execute(args, study, base, exps, label, changed, record_extra=bs.record_extra)
    study_dir = run.study_dir
    summary = bs.summarize(study_dir, run.records, run.study["strategies"])
    print(summary["answer"])
    print(f"report: {study_dir / 'report.md'}")
    return 0


def register(sub) -> None:
    cli = _cli()
    r = sub.add_parser(
        "run", help="run an ablation study (default: the 270-experiment learning-rate grid)",
        description="Run every experiment of a study grid (configs/lr_ablation.toml unless --config), "
                    "one after another, each writing experiments/<id>.json, then analyse the results.",
    )
    r.add_argument("--config", default=None, help="study TOML file or preset name in configs/ (default lr_ablation)")
    r.add_argument("--quick", action="store_true", help="run the file's [quick] grid (4 experiments for lr_ablation)")
    r.add_argument("--max-experiments", type=cli.pos_int, default=None,
                   help="run N experiments chosen to span every value of every axis (seeded, not the first N)")
    r.add_argument("--seeds", type=cli.pos_int, default=None, help="repeat each experiment with K seeds")
    add_study_flags(r, "learning_rate_ablation")
    cli.add_experiment_flags(r)
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("analyze", help="(re)analyse a study folder: statistics, plots, report.md",
                       description="Analyse a study folder's experiments/*.json (never modifies them) and write "
                                   "final_results.json, analysis.json, comprehensive_report.json, plots, report.md.")
    a.add_argument("--results-dir", required=True, help="the study folder")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("batch-seqlen", help="batch size vs sequence length at equal tokens per step",
                       description="Run the strategies of configs/batch_seqlen.toml (large batch + short sequences, "
                                   "balanced, small batch + long sequences) x LRs, or one custom configuration.")
    b.add_argument("--config", default=None, help="study TOML (default configs/batch_seqlen.toml)")
    b.add_argument("--batch", type=cli.pos_int, default=None, help="custom run: sequences per micro-batch")
    b.add_argument("--seqlen", type=cli.pos_int, default=None, help="custom run: tokens per sequence")
    b.add_argument("--lr", type=cli.pos_float, default=None, help="custom run: Muon learning rate")
    b.add_argument("--grad-accum", type=cli.pos_int, default=None, help="custom run: micro-batches per step")
    b.add_argument("--name", default=None, help="custom run: its name (used in the folder name)")
    add_study_flags(b, "batch_seqlen", name_flag=False)
    cli.add_experiment_flags(b, skip=("--batch-size", "--seq-len", "--grad-accum", "--muon-lr"))
    b.set_defaults(func=cmd_batch_seqlen)

