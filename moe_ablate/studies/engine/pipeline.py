"""The one study pipeline: open (or resume) the folder → run → extend → confirm → write outputs.

``run_study`` is what every study command calls, and what Python code calls::

    from moe_ablate.studies.engine import pipeline
    from moe_ablate.studies.kinds import grid
    study = grid.make_study("lr_ablation", preset="tiny", quick=True)
    result = pipeline.run_study(study, Path("ablation_results/my_study"))
    print(result.analysis["recommendation"]["text"])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ... import interrupt
from ...errors import UserError
from ...interrupt import graceful_signals
from ...resources import check_fits
from ...tracking import TrackingSpec, attach_study_outputs
from ...utils import resolve_device
from ..kinds import get_kind
from ..spec.file import ExperimentSpec
from ..spec.grow import grow
from ..spec.stored import Study, load_study, save_study
from . import branching, halving
from .folder import (
    checkpoint_dir,
    claim_numbered,
    record_path,
    remove_stale_temporaries,
    set_aside_crashes,
)
from .lock import LOCK_FILE, study_lock
from .outputs import LiveReport, write_outputs
from .plan import CONFIRM_MARGIN, configurations_after_confirmation, max_confirmation_runs
from .runner import (
    Batch,
    DataSets,
    Executor,
    Job,
    LocalExecutor,
    Log,
    ModelCache,
    StudyRun,
    default_log,
    resolve_configs,
    run_experiments,
    run_one,
)


@dataclass
class StudyResult:
    study_dir: Path
    study: Study
    records: list[dict]
    analysis: dict[str, Any]


def open_study(study_dir: Path, study: Study | None, resume: bool, log: Log = default_log) -> Study:
    """A fresh folder for ``study``, or the stored study of ``study_dir`` when resuming. A resume that names a
    study (a config or flags) must define the stored one or a superset of it (``spec/grow.py``: the study grows
    in place); anything else is refused, and the folder is not touched."""
    if resume:
        stored, _ = load_study(study_dir)
        if study is None:
            return stored
        # a superset grows the study in place; else one line
        grown, added = grow(stored, study, str(study_dir), get_kind(stored.kind).params_grow)
        if added:
            log(f"{study_dir}: growing the study by {added} experiment(s); its {len(stored.experiments)} "
                        "are kept as they are")
        elif grown.params != stored.params:
            changed = sorted(k for k in set(grown.params) | set(stored.params)
                             if grown.params.get(k) != stored.params.get(k))
            log(f"{study_dir}: the study takes {', '.join(changed)} now; its {len(stored.experiments)} experiments "
                "are kept as they are")
        return grown
    if study is None:
        raise UserError("no study to run")
    if study_dir.exists() and (not study_dir.is_dir() or any(p.name != LOCK_FILE for p in study_dir.iterdir())):
        raise UserError(f"study folder {study_dir} already exists; use --resume {study_dir} or another --name")
    return study


def check_axes_take_effect(study: Study, configs: dict) -> None:
    """An axis whose values all run the same experiment would rank identical runs as if they differed: refused
    before anything is written, naming what to vary instead."""
    values: dict[str, set] = {}
    for e in study.experiments:
        for k, v in e.overrides.items():
            values.setdefault(k, set()).add(repr(v))
    varied = {k for k, v in values.items() if len(v) > 1}
    if "model.vocab_size" in varied:
        raise UserError("model.vocab_size cannot be a grid axis: the tokenizer sets it (every value would be the "
                        "same run); vary data.vocab_size (the BPE's size) instead")
    cpu = [c for c in configs.values() if resolve_device(c.train.device) == "cpu"]
    for key in ("train.amp", "train.compile"):
        if key in varied and cpu:
            raise UserError(f"{key} cannot be a grid axis on CPU: it only takes effect on CUDA, so every value "
                            "would be the same fp32 run")


def run_study(study: Study | None, study_dir: str | Path, *, resume: bool = False, executor: Executor | None = None,
              extend: bool = False, log: Log = default_log, progress: bool = True,
              rerun_from: dict[str, Path] | None = None, trackers: tuple[str, ...] = (),
              tracking_dir: str | Path | None = None, numbered: bool = False) -> StudyResult:
    """Run (or resume) a study in ``study_dir`` and write its outputs; see the module docstring.
    ``numbered``: the tool chose the folder's name (no ``--name``), so a taken name moves on to the next number.

    Nothing is written before the study is known to be sound (configs valid, data prepared); the
    folder is then locked for this process alone. A signal stops it cleanly (``interrupt.py``)."""
    study_dir = Path(study_dir)
    spec = TrackingSpec(tuple(trackers), str(tracking_dir or study_dir.parent / "tracking"), study_dir.name)
    spec.check_installed()  # one line naming the extra, before anything is written
    tracking_spec = spec if trackers else None
    if resume:
        load_study(study_dir)  # one clear line, before anything, when it is not a study folder
        with study_lock(study_dir):
            study = open_study(study_dir, study, resume=True, log=log)
            ctx = _prepare(study_dir, study, executor, log, progress, tracking_spec)
            check_same_data(study_dir, ctx.datasets)
            set_aside_crashes(study_dir, log)
            return _execute(ctx, extend, rerun_from)
    study = open_study(study_dir, study, resume=False)
    ctx = _prepare(study_dir, study, executor, log, progress, tracking_spec)
    if numbered:  # claimed only now, once the study is sound: a refused one leaves no folder
        ctx.folder = study_dir = claim_numbered(study_dir)
        if ctx.tracking is not None:  # a "_2" study's runs are named after its own folder, not the first's
            ctx.tracking = replace(ctx.tracking, study=study_dir.name)
    with study_lock(study_dir):
        if any(p.name != LOCK_FILE for p in study_dir.iterdir()):  # another process created it meanwhile
            raise UserError(f"study folder {study_dir} already exists; use --resume {study_dir} or another --name")
        return _execute(ctx, extend, rerun_from)


def _prepare(study_dir: Path, study: Study, executor: Executor | None, log: Log, progress: bool,
             tracking_spec: TrackingSpec | None) -> StudyRun:
    """The study's run context, once every check that needs no folder has passed (nothing is written yet)."""
    get_kind(study.kind)
    configs = resolve_configs(study)  # an impossible combination stops here, before anything is written
    check_axes_take_effect(study, configs)
    sizes = {json.dumps([c.model.__dict__, c.train.batch_size, c.train.seq_len, c.train.device, c.data.vocab_size,
                         c.data.tokenizer], sort_keys=True, default=str): c for c in configs.values()}
    for cfg in sizes.values():  # each distinct size once
        check_fits(cfg, resolve_device(cfg.train.device), "an experiment of this study")
    if study.halving:
        halving.rung_steps(study)  # a grid that cannot be halved says so before anything is written
    if resolve_device(study.base.train.device) == "cpu" and study.base.model.d_model >= 384:
        log(f"note: a {study.base.model.d_model}-wide model on CPU is slow; --preset tiny gives a CPU-sized study")
    datasets = DataSets(log)
    for cfg in configs.values():  # tokenise each distinct dataset once, before the folder is written
        datasets.get(cfg.data)
    return StudyRun(study_dir, study, datasets, executor, log, progress, tracking_spec, configs)


def _execute(ctx: StudyRun, extend: bool, rerun_from: dict[str, Path] | None) -> StudyResult:
    study, study_dir, datasets, log = ctx.study, ctx.folder, ctx.datasets, ctx.log
    kind = get_kind(study.kind)
    removed = remove_stale_temporaries(study_dir)
    if removed:
        log(f"removed {removed} temporary file(s) left by an earlier run that was killed")
    save_study(study_dir, study, datasets.provenance())
    sources = {p["source"] for p in datasets.provenance().values()}
    confirm, _, _ = max_confirmation_runs(study)
    more = f" (+ up to {confirm} confirmation runs after the grid)" if confirm else ""
    log(f"study {study_dir}: {len(study.experiments)} experiments{more} | model {study.base.model.name} | data "
        f"{', '.join(sorted(sources))} ({len(datasets.by_key)} tokenisation{'s' if len(datasets.by_key) > 1 else ''})")
    final_model = study_dir / "final_model.pt" if kind.keeps_final_model else None

    live = LiveReport(study_dir, study, log) if not kind.keeps_final_model else None

    def run() -> list[dict]:
        if not study.halving:
            run_wsd_families(ctx)
        return run_experiments(ctx, Batch(final_model=final_model, rerun_from=rerun_from or {},
                                          expected_more=max_confirmation_runs(study)[0], on_record=live))

    def grow(more: list[ExperimentSpec], why: str) -> list[dict]:
        study.experiments.extend(more)
        for e in more:
            datasets.get(ctx.config(e).data)
        save_study(study_dir, study, datasets.provenance())  # stored first: a resume continues the grown study
        log(f"{why}: adding {len(more)} experiment(s)")
        return run()

    def run_rung(specs: list[ExperimentSpec], stop_at: int | None, out_dir: Path | None,
                 on_record=None) -> list[dict]:
        return run_experiments(ctx, Batch(specs, stop_at, out_dir, checkpoints=not study.halving_restart,
                                          on_record=on_record))

    with graceful_signals():
        records = halving.run_halving(study_dir, study, run_rung, log) if study.halving else run()
        rerun_from = None  # only the first round continues from the named checkpoints
        if extend:
            while not interrupt.requested() and (more := kind.extension(study, records, _analysis(study, records))):
                records = grow(more, "the best value is at the edge of the range")
        while not interrupt.requested():  # rounds the kind adds itself (a designed ladder, then a validation scale)
            more, why = kind.follow_on(study, records, log)
            if not more:
                break
            records = grow(more, why)
        if not interrupt.requested() and study.resolved_confirm():
            more = confirmation_experiments(study, records, log)
            if more:
                records = grow(more, f"confirmation: {study.resolved_confirm()} more seed(s) for "
                                     f"{len({e.config_id for e in more})} top configuration(s)")
        analysis = write_outputs(study_dir, study, records, log=log)
        attach_study_outputs(ctx.tracking, study_dir, log)
        if (signum := interrupt.requested()) is not None:
            raise interrupt.Interrupted(signum)
    return StudyResult(study_dir, study, records, analysis)


def run_wsd_families(ctx: StudyRun) -> None:
    """WSD horizons that differ only in ``train.steps`` share a trunk (``branching.py``); they run here,
    in this process, before the executor takes the rest."""
    study, folder, log = ctx.study, ctx.folder, ctx.log
    fams = branching.families(study.experiments, {e.id: ctx.config(e) for e in study.experiments}, log)
    if not fams:
        return
    cache = ModelCache()
    local = LocalExecutor(cache)

    def done(exp_id: str) -> bool:
        try:
            return json.loads(record_path(folder, exp_id).read_text(encoding="utf-8")).get("status") != "interrupted"
        except (OSError, ValueError, AttributeError):
            return False

    def segment(trunk: ExperimentSpec, point: int) -> dict:
        cfg = ctx.config(trunk)
        log(f"{trunk.id}: trunk to step {point} (a branch point)")
        return run_one(Job(trunk, cfg, ctx.datasets.get(cfg.data), checkpoint_dir(folder, trunk.id), stop_at=point),
                       log=log, progress=ctx.progress, cache=cache)

    def branch(spec: ExperimentSpec, ckpt: Path, origin: dict) -> None:
        run_experiments(ctx, Batch([spec], rerun_from={spec.id: ckpt}, origins={spec.id: origin}), executor=local)

    def finish(trunk: ExperimentSpec) -> None:
        run_experiments(ctx, Batch([trunk], checkpoints=True), executor=local)

    n = sum(len(f.members) for f in fams)
    log(f"WSD horizons: {n} experiments in {len(fams)} famil{'y' if len(fams) == 1 else 'ies'} share a trunk each")
    branching.run_families(folder, fams, done, segment, branch, finish, lambda: interrupt.requested() is not None,
                           log)


def check_same_data(study_dir: Path, datasets: DataSets) -> None:
    """A resumed study must train on the data it started with (same content, same tokenisation):
    otherwise its report would mix runs made on two datasets."""
    _, stored = load_study(study_dir)
    before, now = stored.get("data", {}), datasets.provenance()
    changed = sorted(set(before) - set(now))
    if changed:
        old = before[changed[0]]
        new = next((p for p in now.values() if p["source"] == old["source"]), None)
        what = (f"sha256 {old.get('source_identity', {}).get('sha256', '?')[:12]} -> "
                f"{new.get('source_identity', {}).get('sha256', '?')[:12]}" if new else "it is no longer used")
        raise UserError(f"cannot resume {study_dir}: its data changed since it started ({old['source']}: {what}); "
                        "resume with the original data, or start a new study")


def _analysis(study: Study, records: list[dict]) -> dict:
    from ...analysis.stats import analyze

    return analyze(records, study.metric)


def confirmation_experiments(study: Study, records: list[dict], log: Log = default_log) -> list[ExperimentSpec]:
    """More seeds for the top configurations, at most ``study.confirm_max``, best first: those not
    significantly worse than the best (the near-optimal set, by the study's own noise) when the noise is
    known; when it is not (every configuration ran once), the top ``confirm_max`` by estimate among those within
    ``CONFIRM_MARGIN`` of the best (a configuration 1.5 nats worse is not worth two more seeds). Only
    configurations that may be recommended (no failed seed) are confirmed; a single one is confirmed
    too, since its grid result is the one that selected it. New seeds follow the ones a configuration has."""
    later = configurations_after_confirmation(study)
    if later is not None and not later:
        return []  # confirmed already, and the study has not grown since
    a = _analysis(study, records)
    rec = a["recommendation"]
    if rec.get("best") is None:
        return []
    allowed = [c["config_id"] for c in a["configurations"] if c["n"] > 0 and c["config_id"] not in rec["ineligible"]]
    if later:  # grown after its confirmation: confirm the new configurations the confirmed best does not beat
        not_worse = {c["config_id"] for c in rec.get("outside_confirmation", []) if c["direction"] != "worse"}
        top = [c for c in allowed if c in later and c in not_worse][: study.confirm_max]
        rule = "added after the confirmation stage and not significantly worse than its best"
        if not top:
            log(f"confirmation: none of the {len(later)} configuration(s) added since the confirmation stage needs it "
                "(each is significantly worse than the confirmed best, or failed)")
            return []
    elif rec.get("noise_std") is not None:
        top = [c for c in allowed if c in set(rec["near_optimal"])][: study.confirm_max]
        rule = "the best and those not significantly worse"
    else:  # one run each: only those within a stated margin of the best are worth more seeds
        mean = {c["config_id"]: c["mean"] for c in a["configurations"]}
        limit = mean[allowed[0]] + CONFIRM_MARGIN * abs(mean[allowed[0]])
        top = [c for c in allowed if mean[c] <= limit][: study.confirm_max]
        rule = (f"noise unknown: the {len(top)} best by their single run within {CONFIRM_MARGIN:.0%} of the best "
                f"({study.metric} <= {limit:.4g})")
    log(f"confirmation: {', '.join(top)} ({rule})")
    configs = study.configurations()
    # the same fresh seeds for every confirmed configuration (a later round reuses the first round's): their
    # comparison is blocked by seed
    used = sorted({e.overrides.get("train.seed", study.base.train.seed) for e in study.experiments
                   if e.stage == "confirm"})
    first = 1 + max(e.overrides.get("train.seed", study.base.train.seed) for e in study.experiments)
    seeds = used[: study.resolved_confirm()] if used else [first + i for i in range(study.resolved_confirm())]
    more = []
    for c in top:
        for i, seed in enumerate(seeds):
            more.append(configs[c][0].with_seed(len(configs[c]) + i, seed, stage="confirm"))
    return more

