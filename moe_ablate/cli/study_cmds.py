"""Study commands: one per registered study kind (``studies/kinds/``: ``run``, ``scaling``, ``batch-seqlen``,
``lr-search``, ``expert-search``, and any kind registered before ``main`` runs), ``analyze``, and the long run
``train --exp``. Each parses its flags into a ``Study`` (the kind's ``build``; or none, to continue a stored
one) and calls ``studies.pipeline.run_study``."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StudyFailed, UserError
from ..studies import kinds
from ..studies.kinds import long_train
from ..studies.kinds.base import StudyKind
from ..studies.spec.stored import load_study
from .args import (
    DEFAULT_OUTPUT,
    EXPERIMENT_FLAGS,
    Defining,
    Flags,
    add_experiment_flags,
    add_study_flags,
    defining_given,
    executor,
    experiment_overrides,
    log,
    lr_or_auto,
    nonneg_int,
    notes_on_unused_flags,
    study_dir_for,
    tracking_kwargs,
)

if TYPE_CHECKING:
    from ..studies.engine.pipeline import StudyResult


def run_study(*args, **kwargs) -> StudyResult:
    """The pipeline, imported when a study runs: torch, the statistics and the plotting stacks cost seconds,
    which ``--help``, a flag or TOML error and ``--dry-run`` should not pay."""
    from ..studies.engine.pipeline import run_study as run

    return run(*args, **kwargs)


def check_resumable_by(command: str, folder) -> None:
    """``lr-search --resume`` of a ``run`` study (and the like) is one line naming the right command."""
    stored, _ = load_study(Path(folder))
    if stored.kind not in kinds.resumable_by(command):
        right = kinds.command_for(stored.kind) if stored.kind in kinds.KINDS else "run"
        raise UserError(f"{folder} is a {stored.kind} study; resume it with `moe-ablate {right} --resume {folder}`")


def _run(args, build, **kw) -> StudyResult:
    """Shared by every study command: a new study from the flags, or on --resume the stored one."""
    notes_on_unused_flags(args, log)
    if args.resume:
        check_resumable_by(args.command, args.resume)
    study = _resumed_with_flags(args, build) if args.resume else _build(args, build, record_flags=True)
    ex = executor(args)  # after the flags and the TOML are checked (it imports torch), before anything is written
    t0 = time.perf_counter()
    numbered = not args.resume and getattr(args, "study_folder", None) is None  # the tool names the folder
    result = run_study(study, study_dir_for(args, study.name if study else ""), resume=bool(args.resume),
                       executor=ex, log=log, progress=not args.no_progress, numbered=numbered,
                       **tracking_kwargs(args), **kw)
    _print_outcome(result, time.perf_counter() - t0)
    fail_if_nothing_finished(result)
    return result


def _dry_run(args, build) -> int:
    """``--dry-run``: the plan of the study these flags define (or of the stored one), nothing written."""
    from ..studies.engine.plan import make_plan

    notes_on_unused_flags(args, log)
    if args.resume:
        check_resumable_by(args.command, args.resume)
        from ..studies.spec.grow import grow

        stored = load_study(Path(args.resume))[0]
        new = _resumed_with_flags(args, build)
        study = grow(stored, new, args.resume, kinds.get_kind(stored.kind).params_grow)[0] if new is not None \
            else stored
    else:
        study = _build(args, build)
    plan = make_plan(study, study_dir_for(args, study.name), measure=not args.no_measure)
    if getattr(args, "extend", False):
        plan.notes.append("--extend: when the best LR is at an edge of the range, more LRs are added after the grid "
                          "(one run per seed each); they are not counted above")
    print(plan.text())
    return 0


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
    was started with: agreeing flags are fine (the stored study runs, ``None`` is returned). Flags that define a
    superset of the stored study (another --config with more axis values, more --seeds, more --lrs) grow it in
    place: the grown study is returned. Anything else is one line naming the flag and both values. A flag the
    study was not started with agrees when adding it to the original flags defines the same study (e.g.
    ``--steps`` equal to the preset's)."""
    given = defining_given(args)
    if not given:
        return None
    stored, _ = load_study(Path(args.resume))
    if stored.flags is None:  # started from Python or by an older version: the whole study must match (or grow)
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
    if not conflicts:
        return None
    from ..studies.spec.grow import grow

    new = _build(argparse.Namespace(**(original | mine)), build)
    new.flags = _json(stored.flags | mine)
    try:
        grow(stored, new, args.resume, kinds.get_kind(stored.kind).params_grow)
    except UserError as e:
        raise UserError(f"cannot resume {args.resume}: {'; '.join(conflicts)}; and {e} (give no study flags, "
                        "ones that agree with the study, or ones that only add to it)") from None
    return new


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
        from ..studies.engine.runner import own_seconds

        train_eval = sum(own_seconds(r) for r in result.records)
        print(f"study wall time {wall:.1f}s (training+evaluation {train_eval:.1f}s)")


# ---------------------------------------------------------------- one command per study kind
def cmd_study(kind: StudyKind, args) -> int:
    """Any kind's command: build (or resume) its study, run it, print its files, run its follow-up."""
    build = lambda a: kind.build(a, experiment_overrides(a))  # noqa: E731
    if args.dry_run:
        return _dry_run(args, build)
    result = _run(args, build, extend=getattr(args, "extend", False))
    for name in kind.result_files:
        print(f"results: {result.study_dir / name}")
    more = kind.follow_up(result.study_dir, result.study, result.records, result.analysis, args)
    if more is not None:
        _print_long(run_study(more.study, more.folder, log=log, progress=not args.no_progress,
                              **tracking_kwargs(args)))
    return 0


def cmd_analyze(args) -> int:
    from ..studies.engine.outputs import analyze_folder
    from ..studies.engine.pipeline import StudyResult

    if args.folder and args.results_dir and Path(args.folder) != Path(args.results_dir):
        raise UserError(f"analyze: two study folders given ({args.folder} and --results-dir {args.results_dir})")
    if not (args.folder or args.results_dir):
        raise UserError("analyze needs a study folder: moe-ablate analyze DIR")
    d = Path(args.folder or args.results_dir)
    _print_outcome(StudyResult(d, None, [], analyze_folder(d, log=log)))
    return 0


def cmd_export(args) -> int:
    """``export DIR --format csv|parquet|optuna``: the records for a dataframe tool or optuna-dashboard."""
    from ..analysis.export import export
    from ..studies.engine.lock import study_lock
    from ..studies.engine.outputs import study_records

    d = Path(args.folder)
    if not d.is_dir():
        raise UserError(f"results folder not found: {d}")
    study, stored = load_study(d)
    default = {"csv": "results.csv", "parquet": "results.parquet", "optuna": "optuna.db"}[args.format]
    out = Path(args.output) if args.output else d / default
    with study_lock(d, "exporting it") if out.resolve().parent == d.resolve() else contextlib.nullcontext():
        records, _ = study_records(d, study, log, stored)
        export(records, study.metric, study.name, args.format, out)
    print(f"wrote {out} ({len(records)} experiments)")
    if args.format == "optuna":
        print(f"view it: optuna-dashboard sqlite:///{out}")
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
    output = args.output_dir or DEFAULT_OUTPUT
    request = long_train.LongRunRequest(args.exp, output, args.preset, args.lr, args.hellaswag, args.checkpoint_every,
                                        args.hellaswag_every, experiment_overrides(args))
    study = long_train.compose(request, log)
    out = Path(output) / f"exp{args.exp}_long_term_{time.strftime('%Y%m%d_%H%M%S')}"
    _print_long(run_study(study, out, log=log, progress=not args.no_progress, numbered=True, **tracking_kwargs(args)))
    return 0


def register(sub) -> None:
    """One command per study kind that has one (the registry's order), then ``analyze``."""
    for kind in kinds.with_commands():
        p = sub.add_parser(kind.command, help=kind.help, description=kind.description)
        kind.add_flags(Defining(p, "the study"), Flags(p))
        add_study_flags(p, kind.folder_name, name_flag=kind.name_flag)
        add_experiment_flags(p, skip=kind.skip_flags)
        p.set_defaults(func=functools.partial(cmd_study, kind))

    a = sub.add_parser("analyze", help="(re)analyse a study folder of any kind: statistics, plots, report.md",
                       description="Analyse a study folder's experiments/*.json (never modifies them) and write "
                                   "final_results.json, analysis.json, comprehensive_report.json, plots, report.md "
                                   "and the study kind's own files.")
    a.add_argument("folder", nargs="?", default=None, metavar="DIR", help="the study folder")
    a.add_argument("--results-dir", default=None, help="the study folder (the same as DIR, kept for old scripts)")
    a.set_defaults(func=cmd_analyze)

    e = sub.add_parser("export", help="write a study's records as CSV, Parquet or an Optuna storage (optuna-dashboard)",
                       description="One row (or Optuna trial) per experiment: its hyperparameters, status, stage, "
                                   "seed, metrics and compute. optuna: a SQLite storage whose trials carry the varied "
                                   "hyperparameters, the study's metric and the validation curve, for optuna-dashboard "
                                   "(pip install 'moe-ablate[optuna]').")
    e.add_argument("folder", metavar="DIR", help="the study folder")
    e.add_argument("--format", choices=["csv", "parquet", "optuna"], default="csv", help="default csv")
    e.add_argument("--output", default=None, help="the file to write (default DIR/results.csv, DIR/results.parquet or "
                                                  "DIR/optuna.db)")
    e.set_defaults(func=cmd_export)


def add_long_run_flags(t) -> None:
    g = t.add_argument_group("long training with a search's recommendations (--exp 9 or 3: a named "
                             "experiment's model and preset)")
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
