"""``scaling``: a ladder of scales, an LR grid (and optionally batch sizes) at each, and the law that
carries the optimum to the long run.

A scaling study is a grid (``configs/scaling_tiny.toml``): its LR axis (``train.muon_lr``) and batch axis
(``train.batch_size``, optional) are tuned at every scale; every other axis (``model.d_model``,
``model.n_layers``, ``train.steps``...) defines the ladder. Everything the pipeline has applies (resume,
Ray, confirmation, trackers; WSD horizons share trunks). The statistics are in ``analysis/scaling_law.py``;
this module adds the target run, ``scaling_law.json``, the figure and the answer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...config import PRESETS, ExperimentConfig, apply_overrides, preset_config, validate
from ...errors import UserError
from ...utils import atomic_write_json, read_json
from ..spec import limits
from .base import StudyKind, register
from .experiments import EXPERIMENTS, long_run_settings
from .toml_study import make_study as toml_study

LAW_FILE = "scaling_law.json"
MIN_SCALES = 3
TUNED = ("train.muon_lr", "train.batch_size", "train.seed")  # tuned at each scale; every other axis is the scale


class ScalingKind(StudyKind):
    name = "scaling"
    title = "Hyperparameter scaling law"
    command = "scaling"
    resumed_by = ("run",)
    help = "fit how the optimal LR (and batch size) scale with compute; predict them for the long run"
    description = ("A ladder of scales (model widths/depths and/or token horizons, the file's non-LR axes) with an "
                   "LR grid and seeds at each: the optimum at each scale (minimum of a cubic in log LR, bootstrap "
                   "CI), a power law in compute (WLS in log-log, bootstrap CIs, a bend test), a held-out check on "
                   "the largest scale, and the predicted LR for the target run. Writes scaling_law.json and "
                   "scaling_law.png beside the usual report; `train --exp N --lr scaling:DIR` uses the law.")
    toml_section = "scaling"
    default_confirm = 0  # its best configuration is its largest scale: nothing to confirm

    def add_flags(self, defining, other):
        d = defining
        d.add("--config", default=None, help="scaling TOML file or preset name in configs/ (default scaling_tiny, a "
                                             "CPU-sized ladder; scaling is the GPU-sized one)")
        d.add("--quick", action="store_true", help="run the file's [quick] grid")
        d.add("--seeds", type="seeds_int", default=None, help="seeds per configuration (default: the file's)")
        d.add("--target-steps", type="steps_int", default=None,
              help="steps of the run to predict for (default: the file's [scaling] target_steps, else 10,000)")
        d.add("--budget", type="pos_int", default=None, metavar="RUNS",
              help="design the ladder: after each pass, add an LR beyond the edge of every scale whose best LR is "
                   "an edge of its grid, until all are bracketed or RUNS more runs are spent (default: the file's "
                   "[scaling] budget; none: the grid as written)")
        d.add("--optimum-ci", type="ci_factor", default=None, metavar="FACTOR",
              help="design the ladder further: add LRs between the tried ones around every optimum whose 95%% CI "
                   "spans more than FACTOR (hi/lo, e.g. 1.3), until none does or the budget is spent (default: the "
                   "file's [scaling] optimum_ci; with no budget, the ladder's own run count)")
        d.add("--target-model", default=None, metavar="PRESET",
              help="size of the model to predict for: seed | tiny | exp9 | exp3 (default: the `train --exp 3` model)")

    def build(self, args, overrides):
        return make_study(args.config or "scaling_tiny", preset=args.preset, overrides=overrides, quick=args.quick,
                          seeds=args.seeds, confirm=args.confirm, target_steps=args.target_steps,
                          target_model=args.target_model, budget=args.budget, optimum_ci=args.optimum_ci)

    def from_toml(self, study, section, flags):
        """The target run ([scaling] section < command-line flags) and the ladder's soundness, before anything runs."""
        if flags.get("preset") is not None and flags["preset"] not in PRESETS:
            raise UserError(f"--target-model must be a preset ({' | '.join(PRESETS)}), got {flags['preset']!r}")
        if section.get("target_preset") is not None and section["target_preset"] not in PRESETS:
            raise UserError(f"[scaling] target_preset must be a preset ({' | '.join(PRESETS)}), got "
                            f"{section['target_preset']!r}")
        from ...analysis.scaling_law import N_BOOT, VALIDATE_LRS  # the statistics stack: for a scaling study only

        study.params["target"] = {"exp": section.get("target_exp", 3),
                                  "preset": flags.get("preset") or section.get("target_preset"),
                                  "steps": flags.get("steps") or section.get("target_steps"),
                                  "bootstrap": section.get("bootstrap", N_BOOT)}
        if section.get("compare") is not None:
            study.params["compare"] = check_compare_axis(study, section["compare"], section.get("validate"))
        check_ladder(study)
        budget = flags.get("budget") or section.get("budget")
        optimum_ci = flags.get("optimum_ci") or section.get("optimum_ci")
        if optimum_ci and not budget:  # as many runs again as the ladder at most
            budget = sum(1 for e in study.experiments if e.stage == "grid")
        if budget:
            study.params["design"] = {"budget": int(budget), **({"optimum_ci": float(optimum_ci)} if optimum_ci
                                                                 else {})}
        if section.get("validate") is not None:
            study.params["validate"] = {"scale": check_validation_scale(study, section["validate"]),
                                        "lrs": int(section.get("validate_lrs", VALIDATE_LRS))}

    def follow_on(self, study, records, log):
        more, why = design_round(study, records)  # the designed ladder first: the law validated is the final one
        return (more, why) if more else validation_experiments(study, records, log)

    def planned_follow_on(self, study):
        return planned_follow_on(study)

    def params_grow(self, old, new):
        """A designed ladder (or a larger budget, another asked CI) and a validation scale only add runs after the
        ladder: a finished ladder takes them on --resume. A validation scale once set stays as it is."""
        rest = ("design", "validate")
        if {k: v for k, v in old.items() if k not in rest} != {k: v for k, v in new.items() if k not in rest}:
            return False
        od, nd = old.get("design"), new.get("design")
        if od and not (nd and nd.get("budget", 0) >= od.get("budget", 0)):
            return False
        return not old.get("validate") or old["validate"] == new.get("validate")

    def halving_group(self, study, spec):
        """A configuration competes within its scale: pruning across scales would keep only the largest, whose
        loss is lowest by construction."""
        return repr(sorted((k, repr(v)) for k, v in spec.overrides.items() if k not in TUNED))

    def analyze(self, study, records, analysis) -> None:
        from ...analysis.scaling_law import N_BOOT, analyze_scaling

        target = study.params.get("target") or {}
        ladder = ladder_records(records)
        compare = study.params.get("compare")
        groups = compare_groups(ladder, compare) if compare else {None: ladder}
        laws = {}
        for value, group in groups.items():
            law = analyze_scaling(group, study.metric, n_boot=int(target.get("bootstrap", N_BOOT)),
                                  lr_step=lr_step(study))
            if "error" not in law:
                law["prediction"] = prediction_for(law, target_config(study, records), target_label(target),
                                                   records)
                if study.params.get("validate"):
                    law["validation"] = validation_result(study, records, law)
            laws[value] = law
        law = next(iter(laws.values()))  # without compare, the one law; with it, the first value's (its files use it)
        if "error" not in law and study.params.get("design"):
            law["design"] = design_summary(study, {v: g for v, g in laws.items() if "error" not in g})
        if compare:
            law = {**law, "compare": {"axis": compare, "first": next(iter(laws)), "by": laws}}
        analysis["scaling"] = law
        # the generic "does the optimal LR move with width?" section answers this study's question a second time,
        # by another method (near-optimal sets of a test over every configuration of every scale) that can
        # disagree with the law's exponent CI: one question, one answer on the page (the law's); the numbers stay
        # in analysis.json
        if analysis.get("lr_transfer"):
            analysis["lr_transfer"]["superseded_by"] = "scaling"
        # the generic edge notes would call the largest scale "unbracketed"; each scale's LR bracketing is
        # in the scaling answer instead
        analysis["recommendation"]["edge_warnings"] = []

    def write_files(self, study_dir, study, records, analysis):
        atomic_write_json(study_dir / LAW_FILE, law_file(analysis["scaling"]))

    def figures(self, study_dir, study, records, analysis):
        from ...analysis import plots

        law = analysis.get("scaling") or {}
        return [plots.scaling_plot(law, study_dir)] if law.get("scales") else []

    def answer(self, study, records, analysis):
        return scaling_answer(analysis.get("scaling") or {})

    def report_sections(self, study, records, analysis):
        return scaling_sections(analysis.get("scaling") or {})


KIND = register(ScalingKind())


def _axes(study) -> dict[str, set]:
    axes: dict[str, set] = {}
    for e in study.experiments:
        if e.stage == "grid":
            for k, v in e.overrides.items():
                if k != "train.seed":
                    axes.setdefault(k, set()).add(repr(v))
    return axes


def scale_axes(study) -> list[str]:
    """The grid axes that define the ladder's scales (every axis but the tuned LR and batch size, and the
    ``[scaling] compare`` axis, which splits the ladder into one per value)."""
    axes = _axes(study)
    skip = ("train.muon_lr", "train.batch_size", (study.params or {}).get("compare"))
    return [k for k in axes if k not in skip and len(axes[k]) > 1]


def check_compare_axis(study, key: str, validate_table) -> str:
    axes = _axes(study)
    if key in ("train.muon_lr", "train.batch_size", "train.seed") or len(axes.get(key, ())) < 2:
        raise UserError(f"[scaling] compare must name a grid axis with 2+ values other than the LR, batch size or "
                        f"seed (e.g. \"train.muon_adjust_lr\"), got {key!r}")
    if validate_table is not None:
        raise UserError("[scaling] compare and validate together are not supported yet: validate one value's "
                        "ladder in a study of its own")
    return key


def compare_groups(records: list[dict], key: str) -> dict[Any, list[dict]]:
    """The records of each value of the ``compare`` axis, in the order the values first appear."""
    short = key.split(".")[-1]
    groups: dict[Any, list[dict]] = {}
    for r in records:
        groups.setdefault((r.get("hyperparameters") or {}).get(short), []).append(r)
    return groups


def check_ladder(study) -> None:
    """A scaling study needs an LR axis and at least ``MIN_SCALES`` scales (say so before anything runs)."""
    axes = _axes(study)
    if len(axes.get("train.muon_lr", ())) < 3:
        raise UserError("a scaling study needs at least 3 values of train.muon_lr at every scale ([grid.train] "
                        "muon_lr = [...]) to locate an optimum")
    scale_keys = scale_axes(study)
    scales = {tuple(repr(e.overrides.get(k)) for k in scale_keys) for e in study.experiments}
    if len(scales) < MIN_SCALES:
        raise UserError(f"a scaling study needs at least {MIN_SCALES} scales (a grid axis such as model.d_model or "
                        f"train.steps with {MIN_SCALES}+ values), got {len(scales)}")


# ---------------------------------------------------------------- the ladder the law is fitted on
def ladder_records(records: list[dict]) -> list[dict]:
    """Every record but the validation scale's: the law never sees the check."""
    return [r for r in records if r.get("stage", "grid") != "validate"]


def ladder_law(study, records: list[dict]) -> dict[str, Any]:
    """The law a later round builds on (the designed ladder's next LRs, the validation grid): the one the
    report shows, less the per-scale significance test (it does not enter the fits)."""
    from ...analysis.scaling_law import N_BOOT, analyze_scaling

    n_boot = int((study.params.get("target") or {}).get("bootstrap", N_BOOT))
    return analyze_scaling(ladder_records(records), study.metric, n_boot=n_boot, statistical_set=False,
                           lr_step=lr_step(study))


def ladder_laws(study, records: list[dict]) -> dict[Any, dict[str, Any]]:
    """``ladder_law`` for each value of ``[scaling] compare`` (one ladder each), or {None: the one law}."""
    compare = study.params.get("compare")
    if not compare:
        return {None: ladder_law(study, records)}
    groups = compare_groups(ladder_records(records), compare)
    return {value: ladder_law(study, group) for value, group in groups.items()}


def lr_step(study) -> float | None:
    """The first pass's LR spacing in log: the fit's window is a span of it, whatever a designed ladder adds
    (None without a grid of LRs: each scale's own median gap)."""
    return math.log(_grid_ratio(study)) if _grid_lrs(study) else None


def _grid_seeds(study) -> list[int]:
    return sorted({e.overrides.get("train.seed", study.base.train.seed) for e in study.experiments
                   if e.stage == "grid"})


def _recorded_vocab(records: list[dict]) -> int | None:
    """The vocabulary the runs really had (a BPE may stop short of the size asked)."""
    return next((r["config"]["model"]["vocab_size"] for r in records if isinstance(r.get("config"), dict)), None)


# ---------------------------------------------------------------- the designed ladder
DESIGN_PREFIX = "design_"  # the configurations a designed ladder added (stage "design": part of the ladder)


def _scale_overrides(study) -> dict[str, dict[str, Any]]:
    """Each ladder scale's label (as ``analyze_scaling`` names it) -> its scale-axis overrides."""
    keys = scale_axes(study)
    out = {}
    for e in study.experiments:
        if e.stage == "grid":
            scale = {k: e.overrides[k] for k in keys if k in e.overrides}
            out.setdefault(_label(scale), scale)
    return out


def _design(study) -> dict[str, Any] | None:
    """The stored study's design settings, checked as its TOML was (a config.json edited by hand is one line)."""
    d = study.params.get("design")
    if not d:
        return None
    budget, ci = (d.get("budget"), d.get("optimum_ci")) if isinstance(d, dict) else (None, None)
    if not (isinstance(budget, int) and not isinstance(budget, bool) and 1 <= budget <= limits.MAX_RUNS) or not (
            ci is None or (isinstance(ci, (int, float)) and not isinstance(ci, bool)
                           and 1 < ci <= limits.MAX_CI_FACTOR)):
        raise UserError(f"the stored study's design {d!r} is not what this tool wrote (budget an integer in [1, "
                        f"{limits.MAX_RUNS}], optimum_ci a factor in (1, {limits.MAX_CI_FACTOR:g}])")
    return d


def _validate(study) -> dict[str, Any] | None:
    """The stored study's validation scale, checked as its TOML was (a config.json edited by hand is one line;
    ``validate_lrs`` of 10**9 would have built a list that size)."""
    from ...analysis.scaling_law import MAX_VALIDATE_LRS

    v = study.params.get("validate")
    if not v:
        return None
    lrs, scale = (v.get("lrs"), v.get("scale")) if isinstance(v, dict) else (None, None)
    if not (isinstance(lrs, int) and not isinstance(lrs, bool) and 4 <= lrs <= MAX_VALIDATE_LRS
            and isinstance(scale, dict) and scale and all(isinstance(k, str) for k in scale)):
        raise UserError(f"the stored study's validation scale {v!r} is not what this tool wrote (lrs an integer in "
                        f"[4, {MAX_VALIDATE_LRS}], scale a table of settings)")
    return v


def design_round(study, records: list[dict]) -> tuple[list, str]:
    """One round of the designed ladder (``scaling_law.design_additions``): an LR beyond the edge of every scale
    whose best LR is an edge of its grid, and, with ``optimum_ci``, LRs between the tried ones around every
    vertex whose CI is wider than asked, with the study's seeds, while the budget lasts."""
    d = _design(study)
    if not d:
        return [], ""
    from ...analysis.scaling_law import design_additions
    from ..spec.file import ExperimentSpec

    added = {e.config_id for e in study.experiments if e.config_id.startswith(DESIGN_PREFIX)}
    seeds = _grid_seeds(study)
    left = d["budget"] - sum(1 for e in study.experiments if e.config_id.startswith(DESIGN_PREFIX))
    if left < len(seeds):
        return [], ""
    by_label = _scale_overrides(study)
    specs, said = [], []
    for value, law in ladder_laws(study, records).items():  # one per value of [scaling] compare, else one
        if "error" in law:
            continue
        also = {study.params["compare"]: value} if value is not None else {}
        for w in design_additions(law["scales"], d.get("optimum_ci"), lr_step(study)):
            lrs = [lr for lr in w["lrs"] if 0 < lr <= limits.MAX_LR]
            if w["scale"] not in by_label or left < len(seeds) * len(lrs) or not lrs:
                continue
            left -= len(seeds) * len(lrs)
            for lr in lrs:
                one = ExperimentSpec(f"{DESIGN_PREFIX}{len(added):03d}",
                                     {**by_label[w["scale"]], **also, "train.muon_lr": lr}, stage="design")
                added.add(one.config_id)
                specs += [one.with_seed(k, s) for k, s in enumerate(seeds)]
            said.append(f"{_where(w['scale'], study, value)} ({w['why']}): LR {', '.join(f'{lr:.3g}' for lr in lrs)}")
    if not specs:
        return [], ""
    return specs, (f"designed ladder ({left} of {d['budget']} budgeted runs left after this round): "
                   + "; ".join(said))


def planned_follow_on(study) -> list[tuple[str, int, list[ExperimentConfig]]]:
    """What the designed ladder and the validation grid may still add, at most (for ``--dry-run``'s count and ETA):
    the design's budget left, at any of the ladder's scales; the validation grid widened to its most LRs, at the
    validation scale."""
    from ...analysis.scaling_law import MAX_VALIDATE_LRS

    out = []
    seeds = len(_grid_seeds(study))
    d = _design(study)
    left = d["budget"] - sum(1 for e in study.experiments if e.config_id.startswith(DESIGN_PREFIX)) if d else 0
    if left >= seeds:
        out.append(("designed ladder (its budget left)", left,
                    [apply_overrides(study.base, o) for o in _scale_overrides(study).values()]))
    v = _validate(study)
    if v and not any(e.stage == "validate" for e in study.experiments):
        out.append((f"validation grid at {_label(v['scale'])} ({v['lrs']} LRs, widened to at most {MAX_VALIDATE_LRS})",
                    MAX_VALIDATE_LRS * seeds, [_validation_config(study, [])]))
    return out


def _where(scale: str, study, value) -> str:
    """A scale's label, with the ``[scaling] compare`` value when the ladder is split by one."""
    return scale if value is None else f"{scale}, {study.params['compare'].split('.')[-1]}={value}"


def design_summary(study, laws: dict[Any, dict]) -> dict[str, Any] | None:
    """What the designed ladder added, which scales are still not bracketed, and (with ``optimum_ci``) whose
    optimum's CI is still wider than asked; ``laws``: one per value of ``[scaling] compare`` (else {None: law})."""
    d = _design(study)
    if not d:
        return None
    keys = scale_axes(study) + ([study.params["compare"]] if study.params.get("compare") else [])
    added: dict[str, list[float]] = {}
    seen: set[str] = set()
    for e in study.experiments:
        if e.config_id.startswith(DESIGN_PREFIX) and e.config_id not in seen:  # one entry per configuration
            seen.add(e.config_id)
            label = _label({k: e.overrides[k] for k in keys if k in e.overrides})
            added.setdefault(label, []).append(e.overrides["train.muon_lr"])
    scales = [(_where(s["scale"], study, v), s) for v, law in laws.items() for s in law.get("scales", [])]
    open_ = [where for where, s in scales if not (s.get("lr") or {}).get("bracketed")]
    runs = sum(1 for e in study.experiments if e.config_id.startswith(DESIGN_PREFIX))
    out = {"budget": d["budget"], "runs_added": runs, "added": added, "not_bracketed": open_}
    if d.get("optimum_ci"):
        out["optimum_ci"] = d["optimum_ci"]
        out["ci_factors"] = {where: s["lr"]["ci"][1] / s["lr"]["ci"][0] for where, s in scales
                             if (s.get("lr") or {}).get("bracketed") and s["lr"].get("ci") and s["lr"]["ci"][0] > 0}
        out["too_wide"] = [k for k, f in out["ci_factors"].items() if f > d["optimum_ci"]]
    return out


# ---------------------------------------------------------------- the validation scale
def _flat(table: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_validation_scale(study, table: dict) -> dict[str, Any]:
    """``[scaling] validate``: one value for each of the ladder's scale axes, a scale the ladder does not have,
    and a configuration that builds (said before anything runs)."""
    scale = _flat(table)
    keys = scale_axes(study)
    if "train.batch_size" in _axes(study):
        raise UserError("[scaling] validate checks the LR law alone; this ladder also tunes train.batch_size: "
                        "remove validate, or the batch axis")
    if sorted(scale) != sorted(keys):
        raise UserError(f"[scaling] validate must give one value for each axis of the ladder ({', '.join(keys)}), "
                        f"got {', '.join(scale) or 'none'}")
    seen = {tuple(repr(e.overrides.get(k)) for k in keys) for e in study.experiments}
    if tuple(repr(scale[k]) for k in keys) in seen:
        raise UserError(f"[scaling] validate names a scale of the ladder ({_label(scale)}); it must be one the "
                        "ladder never saw, e.g. a width beyond its largest")
    cfg = validate(apply_overrides(study.base, scale))
    from ...resources import check_fits
    from ...utils import resolve_device

    check_fits(cfg, resolve_device(cfg.train.device), "the validation scale ([scaling] validate)")  # before the ladder
    return scale


def _label(scale: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else f"{k.split('.')[-1]}={v}" for k, v in scale.items())


def _grid_lrs(study) -> list[float]:
    return sorted({e.overrides["train.muon_lr"] for e in study.experiments
                   if e.stage == "grid" and "train.muon_lr" in e.overrides})


def _grid_ratio(study) -> float:
    """The ladder's LR spacing (the median ratio of adjacent tried LRs): the validation grid's spacing too."""
    lrs = _grid_lrs(study)
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False) if a > 0]
    return float(sorted(ratios)[len(ratios) // 2]) if ratios else 2.0


def _validation_config(study, records: list[dict]) -> ExperimentConfig:
    cfg = apply_overrides(study.base, _validate(study)["scale"])
    cfg.model.vocab_size = _recorded_vocab(records) or cfg.model.vocab_size
    return cfg


def validation_experiments(study, records: list[dict], log) -> tuple[list, str]:
    """The validation grid, once the ladder is in: LRs centred on the law's prediction at that scale (and
    holding reuse's LR), the study's seeds; stored with the study before they run, so a resume continues them."""
    v = _validate(study)
    if not v or any(e.stage == "validate" for e in study.experiments):
        return [], ""
    from ...analysis.scaling_law import validation_lrs
    from ..spec.file import ExperimentSpec

    law = ladder_law(study, records)
    label = _label(v["scale"])
    if "error" in law:
        log(f"validation at {label}: not run ({law['error']})")
        return [], ""
    compute, _, _ = run_compute(_validation_config(study, records))
    plan = validation_lrs(law, compute, n=int(v["lrs"]), ratio=_grid_ratio(study), max_lr=limits.MAX_LR)
    if not plan["lrs"]:
        log(f"validation at {label}: not run ({plan['why']})")
        return [], ""
    seeds = _grid_seeds(study)
    specs = []
    for i, lr in enumerate(plan["lrs"]):
        one = ExperimentSpec(f"validate_{i:02d}", {**v["scale"], "train.muon_lr": lr}, stage="validate")
        specs += [one.with_seed(k, s) for k, s in enumerate(seeds)]
    reuse = f", reuse's {plan['reuse']:.3g} inside" if plan.get("reuse") is not None else ""
    return specs, (f"validation at {label} ({compute:.3g} FLOPs): {len(plan['lrs'])} LRs "
                   f"{plan['lrs'][0]:.3g}-{plan['lrs'][-1]:.3g} x {len(seeds)} seed(s), centred on "
                   f"{plan['centred_on']} ({plan['centre']:.3g}){reuse}")


def validation_result(study, records: list[dict], law: dict) -> dict[str, Any]:
    """``analysis_scaling.validation_check`` on the validation runs (pending until they ran)."""
    import numpy as np

    from ...analysis.scaling_law import N_BOOT, validation_check
    from ...analysis.stats import to_frame

    label = _label(_validate(study)["scale"])
    val = [r for r in records if r.get("stage") == "validate"]
    if not val:
        return {"scale": label, "pending": True}
    ok = [r["flops"] for r in val if r.get("status") == "ok" and isinstance(r.get("flops"), (int, float))]
    compute = float(np.median(ok)) if ok else run_compute(_validation_config(study, records))[0]
    df, _ = to_frame(val)
    n_boot = int((study.params.get("target") or {}).get("bootstrap", N_BOOT))
    return validation_check(law, df, study.metric, compute, label, lr_axis=law["lr_axis"], n_boot=n_boot,
                            rng=np.random.default_rng(1))


# ---------------------------------------------------------------- the target run
def target_label(target: dict) -> str:
    what = (f"the ladder's model at preset {target['preset']}" if target.get("preset")
            else f"the `train --exp {target.get('exp', 3)}` model")
    return f"{what}, {target.get('steps') or 10000:,} steps"


def target_config(study, records: list[dict] | None = None) -> ExperimentConfig:
    """The run the law predicts for: the ``train --exp N`` long run (its model, 10,000 steps), or the preset /
    steps the study was given."""
    target = study.params.get("target") or {}
    model, preset = EXPERIMENTS[int(target.get("exp", 3))]
    if target.get("preset"):  # the ladder's architecture at the preset's size
        model, preset = study.base.model.name, target["preset"]
    cfg = apply_overrides(preset_config(preset, model),
                          long_run_settings(steps=int(target.get("steps") or 10000)))
    cfg.model.vocab_size = _recorded_vocab(records or []) or cfg.data.vocab_size
    return cfg


def run_compute(cfg: ExperimentConfig) -> tuple[float, int, int]:
    """(training FLOPs, active parameters, tokens) of a run, by the formula every record uses
    (``TransformerLM.flops_per_token``), on a model built on the meta device (no memory)."""
    import torch

    from ...models import build_model

    with torch.device("meta"):
        model = build_model(cfg.model)
    t = cfg.train
    tokens = t.steps * t.batch_size * t.seq_len * t.grad_accum
    return float(model.flops_per_token(t.seq_len) * tokens), int(model.param_counts()["active"]), tokens


def prediction_for(law: dict, cfg: ExperimentConfig, label: str, records: list[dict]) -> dict[str, Any]:
    """The fitted laws evaluated at ``cfg``'s compute, with 80% intervals (95% for the loss) and what makes them
    shaky."""
    from ...analysis.scaling_law import predict, predict_loss

    compute, active, tokens = run_compute(cfg)
    out: dict[str, Any] = {"target": label, "model": cfg.model.name, "compute": compute, "params_active": active,
                           "tokens": tokens, "warnings": []}
    for key in ("lr", "batch"):
        fit = (law.get("fits") or {}).get(key)
        if fit and fit.get("fitted"):
            out[key] = predict(fit, compute)
    if (law.get("loss_law") or {}).get("fitted"):
        out["loss"] = predict_loss(law["loss_law"], compute)
    largest = max((s["compute"] for s in law.get("scales", []) if s.get("compute")), default=None)
    if largest and compute > largest:
        out["extrapolation"] = compute / largest
        if compute > 100 * largest:
            out["warnings"].append(f"the target is {compute / largest:,.0f}x the largest scale's compute: a long "
                                   "extrapolation; add a larger scale to the ladder to shorten it")
    ladder_models = {r.get("config", {}).get("model", {}).get("name") for r in records if r.get("config")}
    if ladder_models and cfg.model.name not in ladder_models:
        out["warnings"].append(f"the ladder trained {', '.join(sorted(m for m in ladder_models if m))}; the target is "
                               f"{cfg.model.name}: the law is carried across architectures")
    return out


def lr_from_law(study_dir: str | Path, cfg: ExperimentConfig) -> tuple[float, dict[str, Any]]:
    """``train --exp N --lr scaling:DIR``: the Muon LR the study's law predicts for this run's compute."""
    path = Path(study_dir) / LAW_FILE
    if not path.is_file():
        raise UserError(f"--lr scaling:{study_dir}: no {LAW_FILE} there (run `moe-ablate scaling` into it first, or "
                        "`moe-ablate analyze --results-dir` on a finished scaling study)")
    law = read_json(path)
    if not isinstance(law, dict) or not isinstance(law.get("fits", {}), dict):
        raise UserError(f"--lr scaling:{study_dir}: {path} is damaged (not a scaling law's file); run "
                        f"`moe-ablate analyze {study_dir}` to write it again")
    fit = (law.get("fits") or {}).get("lr") or {}
    if not isinstance(fit, dict) or not fit.get("fitted") or "coef" not in fit:
        why = fit.get("why", "too few scales") if isinstance(fit, dict) else "it is not a law"
        raise UserError(f"--lr scaling:{study_dir}: its LR law was not fitted ({why})")
    if not all(_positive_number(fit.get(k), k == "exponent") for k in ("coef", "exponent")):
        raise UserError(f"--lr scaling:{study_dir}: {path} is damaged (coef {fit.get('coef')!r}, exponent "
                        f"{fit.get('exponent')!r}); run `moe-ablate analyze {study_dir}` to write it again")
    from ...analysis.scaling_law import predict, predict_loss

    compute, _, _ = run_compute(cfg)
    p = predict(fit, compute)
    out = {"scaling_law": str(path), "compute": compute, "predicted_lr": p["value"], "interval80": p.get("interval"),
           "coef": fit["coef"], "exponent": fit["exponent"]}
    loss = law.get("loss_law")
    if isinstance(loss, dict) and loss.get("fitted"):  # the loss the law expects this run to reach
        try:
            q = predict_loss(loss, compute)
            out["predicted_loss"] = {"value": q["value"], "interval": q.get("interval"), "level": q["level"],
                                     "metric": law.get("metric", "val_loss")}
        except (KeyError, TypeError, ValueError):
            pass  # a damaged loss law only loses the loss prediction; the LR is checked above
    return p["value"], out


def _positive_number(v, any_sign: bool = False) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (any_sign or v > 0)


# ---------------------------------------------------------------- outputs
def law_file(law: dict) -> dict[str, Any]:
    """``scaling_law.json``: per scale, the fits with their bootstrap draws, the held-out check, the prediction."""
    if "error" in law:
        return law
    scales = []
    for s in law["scales"]:
        row = {k: v for k, v in s.items() if k not in ("lr", "batch")}
        for key in ("lr", "batch"):
            o = s.get(key)
            if o is None:
                continue
            row[f"{key}_opt"] = o.get("opt") if o.get("bracketed") else None
            row[f"{key}_opt_ci"] = o.get("ci") if o.get("bracketed") else None
            row[f"{key}_detail"] = {k: v for k, v in o.items() if k != "replicates"}
        scales.append(row)
    out = {"metric": law["metric"], "lr_axis": law["lr_axis"], "batch_axis": law["batch_axis"],
            "scale_axes": law["scale_axes"], "scales": scales, "fits": law["fits"], "n_d_fits": law["n_d_fits"],
            "holdout": law.get("holdout"), "prediction": law.get("prediction"), "loss_law": law.get("loss_law"),
            "validation": law.get("validation")}
    if law.get("compare"):  # one law per value of the compare axis, each as it would be alone
        c = law["compare"]
        out["compare"] = {"axis": c["axis"], "first": c["first"],
                          "by": {str(v): law_file(sub) for v, sub in c["by"].items()}}
    return out


def _g(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


# an LR within a factor sqrt(2) of the optimum is inside the flat basin of the LR curves these ladders measure
# (a half-step of the usual factor-2 grid): a drift the CI bounds below it is "transfers"
TRANSFER_FACTOR = math.sqrt(2)


def transfer_rows(law: dict) -> list[dict]:
    c = law.get("compare") or {}
    rows = []
    for value, sub in (c.get("by") or {}).items():
        fit = (sub.get("fits") or {}).get("lr") or {}
        rows.append({c["axis"]: value, "exponent": fit.get("exponent"),
                     "95% CI": (f"[{fit['exponent_ci'][0]:+.3f}, {fit['exponent_ci'][1]:+.3f}]"
                                if fit.get("exponent_ci") else "n/a"),
                     "bracketed scales": fit.get("n_points", 0),
                     "CI holds 0": (fit["exponent_ci"][0] <= 0 <= fit["exponent_ci"][1]) if fit.get("exponent_ci")
                     else None})
    return rows


def transfer_sentences(law: dict) -> list[str]:
    """Per value of the compare axis: the LR exponent with its CI, and whether the LR transfers across the ladder
    (the CI holds 0: no movement detected, and the CI bounds the drift that is not ruled out)."""
    c = law.get("compare")
    if not c:
        return []
    out = []
    for value, sub in c["by"].items():
        fit = (sub.get("fits") or {}).get("lr") or {}
        if "error" in sub or not fit.get("fitted"):
            out.append(f"{c['axis']} = {value}: no law ({sub.get('error') or fit.get('why', 'not fitted')}).")
            continue
        lo, hi = fit.get("exponent_ci", (math.nan, math.nan))
        scales = sub["scales"]
        span = max(s["compute"] for s in scales if s.get("compute")) / min(s["compute"] for s in scales
                                                                           if s.get("compute"))
        drift = span ** max(abs(lo), abs(hi))  # the largest move over the ladder the CI does not rule out
        if lo <= 0 <= hi and drift <= TRANSFER_FACTOR:
            verdict = (f"the CI holds 0 and bounds any drift over the ladder's {span:.3g}x compute range to a factor "
                       f"{drift:.2f}: the LR transfers in this mode")
        elif lo <= 0 <= hi:
            verdict = (f"the CI holds 0 but allows a drift by a factor {drift:.2g} over the ladder's {span:.3g}x "
                       "compute range: cannot tell whether the LR transfers (more seeds or a wider ladder)")
        else:
            verdict = (f"the CI excludes 0: the optimum {'falls' if hi < 0 else 'rises'} with scale, by a factor "
                       f"{span ** abs(fit['exponent']):.2g} over the ladder's {span:.3g}x compute range: it does not "
                       "transfer in this mode")
        out.append(f"{c['axis']} = {value}: optimal {sub['lr_axis']} ~ C^{fit['exponent']:+.3f} (95% CI "
                   f"[{lo:+.3f}, {hi:+.3f}], {fit['n_points']} bracketed scales): {verdict}.")
    return ["Does the LR transfer? One ladder per " + c["axis"] + ":"] + out + [
        f"The rest of this answer is the {c['axis']} = {c['first']} ladder's (scaling_law.json's top level; every "
        "value's law is under `compare`)."]


def holdout_sentences(h: dict, metric: str) -> list[str]:
    """The held-out check beside reuse of the next-largest scale's optimum, in the answer's words."""
    factor = math.exp(abs(h["log_error"]))
    penalty = (f", which costs {h['loss_penalty']:.4f} in {metric} on that scale's fitted curve"
               if h.get("loss_penalty") is not None else "")
    out = [f"Held out: fitted without the largest scale ({h['scale']}), the law predicts its optimum as "
           f"{_g(h['predicted'])} against the measured {_g(h['measured'])} (95% CI "
           f"{_g(h['measured_ci'][0])}-{_g(h['measured_ci'][1])}): off by a factor {factor:.2f} "
           f"(log error {h['log_error']:+.3f}){penalty}."]
    nv = h.get("naive")
    if nv:
        cost = (f", costing {nv['loss_penalty']:.4f}" if nv.get("loss_penalty") is not None else "")
        noise = (f" (the held-out optimum's noise: {h['noise_log_sd']:.3f} in log)"
                 if h.get("noise_log_sd") is not None else "")
        out.append(f"Reusing the next-largest scale's optimum ({nv['from_scale']}: {_g(nv['predicted'])}) "
                   f"instead is off by a factor {math.exp(abs(nv['log_error'])):.2f} (log error "
                   f"{nv['log_error']:+.3f}){cost}: {VERDICTS[h['law_vs_reuse']]}{noise}.")
    return out


def scaling_answer(law: dict) -> str:
    if law and law.get("compare"):
        return " ".join(transfer_sentences(law) + [scaling_answer({k: v for k, v in law.items() if k != "compare"})])
    if not law or "error" in law:
        return (law or {}).get("error", "no scaling analysis")
    fit = law["fits"]["lr"]
    left = [s for s in law["scales"] if not s["lr"].get("bracketed")]
    out = []
    if not fit.get("fitted"):
        out.append(f"No LR law: {fit['why']}.")
    else:
        lo, hi = fit.get("exponent_ci", (math.nan, math.nan))
        moves = ("the optimum falls with compute" if hi < 0 else "the optimum rises with compute" if lo > 0 else
                 "the data cannot tell whether the optimum moves with compute (the exponent's CI includes 0)")
        out.append(f"The optimal {law['lr_axis']} follows {_g(fit['coef'])} x C^{fit['exponent']:+.3f} (exponent "
                   f"95% CI [{lo:+.3f}, {hi:+.3f}]), fitted on {fit['n_points']} bracketed scales "
                   f"({', '.join(fit['scales'])}): {moves}.")
        if fit.get("bends"):
            out.append(f"The points bend (lack-of-fit p = {fit['lack_of_fit']['p']:.3g}): a log-linear law is "
                       "rejected, so extrapolate with care.")
        h = fit.get("holdout")
        if h:
            out += holdout_sentences(h, law["metric"])
        else:
            out.append("No held-out check: it needs at least 3 bracketed scales.")
    out += validation_sentences(law)
    dz = law.get("design")
    if dz:
        what = "; ".join(f"{k}: {', '.join(_g(v) for v in vs)}" for k, vs in dz["added"].items())
        out.append(design_sentence(dz, what))
    if left:
        out.append("Left out (optimum not bracketed): " + "; ".join(f"{s['scale']} ({s['lr'].get('why', '')})"
                                                                 for s in left) + ".")
    ll = law.get("loss_law") or {}
    if ll.get("fitted"):
        lo, hi = ll.get("alpha_ci", (math.nan, math.nan))
        elo, ehi = ll.get("E_ci", (math.nan, math.nan))
        out.append(f"The best {law['metric']} per scale follows E + A x C^-alpha with alpha = {ll['alpha']:.3f} "
                   f"({ll['level']:.0%} CI [{lo:.3f}, {hi:.3f}]) and E = {ll['E']:.3f} "
                   f"([{elo:.3f}, {ehi:.3f}]), on {ll['n_points']} scales"
                   + (" (3 points for 3 parameters: nothing is left to test the form)" if ll["n_points"] == 3 else "")
                   + (f"; alpha's interval runs into the fit's bound ({ll['alpha_ci'][1]:.0f}): the data do not pin "
                      "it down, so the loss predicted for the target is a range, not a number" if ll.get("alpha_open")
                      else "") + ".")
    b = law["fits"].get("batch")
    if b and b.get("fitted"):
        out.append(f"Batch size: B_opt = {_g(b['coef'])} x C^{b['exponent']:+.3f} (95% CI "
                   f"[{b['exponent_ci'][0]:+.3f}, {b['exponent_ci'][1]:+.3f}]).")
    p = law.get("prediction") or {}
    if p.get("lr"):
        iv = p["lr"].get("interval") or (math.nan, math.nan)
        out.append(f"For the target ({p['target']}, {p['compute']:.3g} FLOPs) the law predicts {law['lr_axis']} "
                   f"{_g(p['lr']['value'])} (80% interval {_g(iv[0])}-{_g(iv[1])})"
                   + (f" and batch size {_g(p['batch']['value'])}" if p.get("batch") else "")
                   + "; `moe-ablate train --exp N --lr scaling:<this folder>` uses it.")
    if p.get("loss"):
        iv = p["loss"].get("interval") or (math.nan, math.nan)
        out.append(f"The loss law expects the target to reach {law['metric']} {p['loss']['value']:.3f} "
                   f"({p['loss']['level']:.0%} interval {iv[0]:.3f}-{iv[1]:.3f}).")
    out += [f"Warning: {w}." for w in p.get("warnings", [])]
    return " ".join(out)


def design_sentence(dz: dict, what: str) -> str:
    aim = "to bracket optima at an edge of their grid"
    if dz.get("optimum_ci"):
        aim += f" and to narrow each optimum's 95% CI to a factor {dz['optimum_ci']:g}"
    out = f"Designed ladder: {dz['runs_added']} of {dz['budget']} budgeted runs added"
    out += (f" (LR {what})" if what else "") + f" {aim}; "
    out += (f"still not bracketed: {', '.join(dz['not_bracketed'])}" if dz["not_bracketed"]
            else "every scale is bracketed")
    if dz.get("optimum_ci"):
        wide = dz.get("too_wide") or []
        out += ("; every bracketed optimum's CI is within the asked factor" if not wide else
                "; still wider than asked: " + ", ".join(f"{k} (x{dz['ci_factors'][k]:.2f})" for k in wide))
    return out + "."


VERDICTS = {"law": "the law beat reuse by more than the noise", "reuse": "reuse beat the law by more than the noise",
            "cannot tell": "the two cannot be told apart within the noise",
            "no law": "no LR law was fitted, so reuse is the only candidate"}


def validation_sentences(law: dict) -> list[str]:
    """Law vs reuse vs measured at the scale the ladder never saw, in the answer's words."""
    v = law.get("validation")
    if not v:
        return []
    if v.get("pending"):
        return [f"Validation at {v['scale']}: not run yet (it runs once the ladder is in; resume the study)."]
    where = f"Validation at {v['scale']} ({v['compute']:.3g} FLOPs" + (
        f", {v['extrapolation']:.3g}x the ladder's largest compute" if v.get("extrapolation") else "") + ")"
    m = v["measured"]
    if "why" in v:
        return [f"{where}: cannot tell which was right: {v['why']} ({v['runs_ok']} of {v['runs']} runs finished)."]
    metric = law.get("metric", "val_loss")

    def cost(entry: dict) -> str:
        return (f", costing {entry['loss_penalty']:.4f} in {metric} on the measured curve"
                if entry.get("loss_penalty") is not None else "")

    out = [f"{where}: the measured optimum is {_g(m['opt'])} (95% CI {_g(m['ci'][0])}-{_g(m['ci'][1])}, "
           f"{v['runs_ok']} runs)."]
    if v.get("law"):
        lw = v["law"]
        out.append(f"The law predicted {_g(lw['predicted'])}: off by a factor {math.exp(abs(lw['log_error'])):.2f}"
                   f"{cost(lw)}.")
    if v.get("reuse"):
        r = v["reuse"]
        noise = (f" (the measured optimum's noise: {v['noise_log_sd']:.3f} in log)"
                 if v.get("noise_log_sd") is not None else "")
        out.append(f"Reusing the largest rung's optimum ({r['from_scale']}: {_g(r['predicted'])}) is off by a factor "
                   f"{math.exp(abs(r['log_error'])):.2f}{cost(r)}: {VERDICTS[v['verdict']]}{noise}.")
    if v.get("loss"):
        lo = v["loss"]
        iv = lo.get("interval") or (math.nan, math.nan)
        se = f" +- {lo['measured_se']:.3f}" if lo.get("measured_se") is not None else ""
        out.append(f"The loss law expected a best {metric} of {lo['predicted']:.3f} there ({lo['level']:.0%} interval "
                   f"{iv[0]:.3f}-{iv[1]:.3f}); measured {lo['measured']:.3f}{se}"
                   + (": inside the interval." if lo.get("inside") else ": outside the interval."
                      if lo.get("inside") is False else "."))
    return out


def scaling_sections(law: dict) -> list[str]:
    from ...analysis.report import table

    lines: list[str] = []
    if law and law.get("compare"):
        lines += [f"## Does the LR transfer? One ladder per {law['compare']['axis']}", "",
                  "Each value's optimal LR against compute, fitted on its own ladder; an exponent CI that holds 0 is "
                  "an LR that does not move with scale as far as the data tell. The sections below are the "
                  f"{law['compare']['axis']} = {law['compare']['first']} ladder's.", "", table(transfer_rows(law)), ""]
    if not law or "error" in law:
        return lines
    rows = []
    for s in law["scales"]:
        o = s["lr"]
        rows.append({"scale": s["scale"], "compute (FLOPs)": s.get("compute"), "active params": s.get("params_active"),
                     "tokens": s.get("tokens"), "LR optimum (vertex)": o.get("opt") if o.get("bracketed") else None,
                     "95% CI": f"{_g(o['ci'][0])}-{_g(o['ci'][1])}" if o.get("ci") else "n/a",
                     "grid argmin": o.get("argmin"), "bracketed": o.get("bracketed"),
                     "within 0.25%": ", ".join(_g(v) for v in o.get("tolerance_values", [])),
                     "near-optimal (test)": ", ".join(_g(v) for v in o.get("near_optimal_values", []))
                     if o.get("near_optimal_values") is not None else "n/a"})
    method = next((s["lr"]["ci_method"] for s in law["scales"] if s["lr"].get("ci_method")), "")
    lines += ["## The optimum at each scale", "",
             "The minimum of a cubic in log LR (LR curves lean) fitted to the configuration means around the minimum "
             "(the tried LRs within three grid steps of the argmin on each side; a quadratic where fewer than five "
             "are left); "
             "its 95% CI by " + method + ". `within 0.25%`: tried LRs whose mean "
             "is within 0.25% of the best (DeepSeek LLM's band); `near-optimal (test)`: not significantly worse than "
             "the best (the ranking's simultaneous test).", "", table(rows)]
    misfit = [s["scale"] for s in law["scales"] if (s["lr"].get("local_fit") or {}).get("p") is not None
              and s["lr"]["local_fit"]["p"] < 0.01]
    if misfit:
        lines += ["", f"At {', '.join(misfit)} the cubic misfits the means around the minimum (lack of fit p < 0.01): "
                      "the curve is not smooth there, and that optimum's CI may be too narrow."]
    for key, fit in law["fits"].items():
        if not fit or not fit.get("fitted"):
            continue
        lof = fit["lack_of_fit"]
        lines += [f"## Power law: {key} optimum vs compute", "",
                  f"WLS in log-log (weights: inverse bootstrap variance of each log optimum): coef {_g(fit['coef'])} "
                  f"(95% CI {_g(fit['coef_ci'][0])}-{_g(fit['coef_ci'][1])}), exponent {fit['exponent']:+.4f} (95% CI "
                  f"[{fit['exponent_ci'][0]:+.4f}, {fit['exponent_ci'][1]:+.4f}]), {fit['n_points']} scales. "
                  "Lack of fit: "
                  f"chi2 {lof['chi2']:.2f} on {lof['dof']} dof" + (f", p = {lof['p']:.3g}" if lof["p"] is not None else
                                                                    " (two points: no test)") + ".", ""]
    v = law.get("validation") or {}
    if v.get("measured") and "why" not in v:
        m = v["measured"]
        rows = [{"LR from": "measured (vertex)", law["lr_axis"]: m["opt"],
                 "95% CI": f"{_g(m['ci'][0])}-{_g(m['ci'][1])}", "log error": 0.0, "loss penalty": 0.0}]
        for name, e in (("the law", v.get("law")), (f"reuse of {(v.get('reuse') or {}).get('from_scale')}",
                                                    v.get("reuse"))):
            if e:
                rows.append({"LR from": name, law["lr_axis"]: e["predicted"], "95% CI": "",
                             "log error": e["log_error"], "loss penalty": e.get("loss_penalty")})
        lines += [f"## Validation at {v['scale']} (a scale the ladder never saw)", "",
                  f"An LR grid at {v['compute']:.3g} FLOPs (tried: "
                  f"{', '.join(_g(t) for t in m.get('values', []))}); each candidate's loss penalty is read off the "
                  "measured curve there. " + VERDICTS.get(v.get("verdict", ""), "").capitalize() + ".", "",
                  table(rows), ""]
    for key, nd in (law.get("n_d_fits") or {}).items():
        lines += [f"- {key} optimum vs N and D: {_g(nd['coef'])} x N^{nd['alpha_N']:+.3f} x D^{nd['beta_D']:+.3f} "
                  f"(alpha 95% CI [{nd['alpha_N_ci'][0]:+.3f}, {nd['alpha_N_ci'][1]:+.3f}], beta "
                  f"[{nd['beta_D_ci'][0]:+.3f}, {nd['beta_D_ci'][1]:+.3f}])", ""]
    return lines


# ---------------------------------------------------------------- the study
def make_study(config: str, *, preset: str | None = None, overrides: dict | None = None, quick: bool = False,
               seeds: int | None = None, confirm: int | None = None, target_steps: int | None = None,
               target_model: str | None = None, budget: int | None = None, optimum_ci: float | None = None):
    """A scaling study from a TOML file (``moe-ablate scaling``): ``toml_study.make_study`` with this kind."""
    return toml_study(config, preset=preset, overrides=overrides, quick=quick, seeds=seeds, confirm=confirm,
                           kind=KIND.name, target={"steps": target_steps, "preset": target_model, "budget": budget,
                                                      "optimum_ci": optimum_ci})
