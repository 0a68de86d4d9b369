"""The one writer of a study folder's outputs, for every study kind.

Reads the stored study and its records; writes ``final_results.json``, ``analysis.json``, ``results.csv`` (and
``.parquet``), ``comprehensive_report.json``, the figures, ``report.md``, and the kind's own files. Never touches
``experiments/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...analysis import html, plots, report, table
from ...analysis.headline import headline, settings
from ...analysis.stats import analyze, to_frame
from ...errors import UserError
from ...utils import atomic_write_json, atomic_write_text
from ..kinds import get_kind
from ..spec.stored import Study, load_study
from . import branching
from .folder import experiments_dir
from .halving import halving_analysis
from .lock import study_lock
from .records import read_records, stored_data_keys
from .runner import Log, default_log, own_seconds, resolve_configs

# figures earlier versions drew and this one does not (pooled box plots, correlations between designed axes,
# histograms over runs of different configurations): removed when a study is analysed again
OBSOLETE_FIGURES = ("performance_distributions.png", "hyperparameter_analysis.png", "correlation_heatmap.png")


def write_outputs(study_dir: Path, study: Study, records: list[dict], *, log: Log = default_log,
                  skipped: list[str] | None = None, stored: dict | None = None,
                  in_progress: str | None = None) -> dict[str, Any]:
    """Every output of the study from these records. ``in_progress`` ("6 of 10 experiments recorded") marks a
    report written while the study still runs."""
    kind = get_kind(study.kind)
    a = analyze(records, study.metric)
    a["skipped_files"] = skipped or []
    a["n_expected"] = len(study.experiments)
    a["confirmation"] = _confirmation_cost(records)
    kind.analyze(study, records, a)
    own = kind.answer(study, records, a)
    a["answer"] = own or a["recommendation"]["text"]
    a["headline"] = headline(a) if own is None else {"text": own, "action": own, "evidence": "", "caveats": []}
    if stored is None:
        _, stored = load_study(study_dir)
    a["settings"] = settings(study.base.to_dict(), records, a["axes"], stored.get("data", {}))
    a["halving"] = halving_analysis(study_dir, records, a) if study.halving else None
    final = in_progress is None  # mid-study only the report and the table: files other tools read stay final
    fams = [] if study.halving or not final else branching.families(study.experiments, resolve_configs(study))
    a["branching"] = branching.write_summary(study_dir, fams,
                                             {r["experiment_id"]: r for r in records}) if fams else None
    if final:
        atomic_write_json(study_dir / "final_results.json", {
            "study": study.identity(), "n_expected": len(study.experiments),
            "results": [{k: v for k, v in r.items() if k != "history"} for r in records]})
        atomic_write_json(study_dir / "analysis.json", a)
        kind.write_files(study_dir, study, records, a)
    table.write_results(study_dir, records)
    df, axes = to_frame(records)
    for name in OBSOLETE_FIGURES:  # drawn by earlier versions; a stale one beside the report would mislead
        (study_dir / name).unlink(missing_ok=True)
    figures = plots.study_figures(df, axes, records, a, study_dir) + kind.figures(study_dir, study, records, a)
    if a["halving"]:
        figures.append(plots.rung_plot(a["halving"], a["metric"], study_dir))
    if final:
        atomic_write_json(study_dir / "comprehensive_report.json", {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": stored, "analysis": a,
            "experiments": df.to_dict("records"), "figures": [f.name for f in figures]})
    markdown = report.render(study_dir.name, kind.title, study.description, stored, a, figures,
                             kind.report_sections(study, records, a), in_progress)
    atomic_write_text(study_dir / "report.md", markdown)
    atomic_write_text(study_dir / "report.html", html.render(study_dir, f"{kind.title}: {study_dir.name}",
                                                             study.description, a, markdown, in_progress))
    return a


class LiveReport:
    """Refreshes the report (md, html, csv) while a study runs, at most every ``EVERY`` seconds, marked "in
    progress: N of M", so the page opened mid-study shows where it stands. Called with each new record; a refresh
    that fails is said once and never stops the study."""

    EVERY = 60.0

    def __init__(self, study_dir: Path, study: Study, log: Log = default_log):
        self.study_dir, self.study, self.log = study_dir, study, log
        self.last, self.failed = time.monotonic(), False

    def __call__(self, record: dict) -> None:
        if time.monotonic() - self.last < self.EVERY:
            return
        try:
            records, _ = study_records(self.study_dir, self.study, lambda m: None)
            write_outputs(self.study_dir, self.study, records, log=lambda m: None,
                          in_progress=f"{len(records)} of {len(self.study.experiments)} experiments recorded")
        except Exception as e:  # noqa: BLE001  (a report refresh must never cost the study)
            if not self.failed:
                self.log(f"note: the in-progress report could not be refreshed ({type(e).__name__}: {e})")
            self.failed = True
        self.last = time.monotonic()


def _confirmation_cost(records: list[dict]) -> dict[str, Any]:
    """How much compute the confirmation stage added (runs and training seconds)."""
    conf = [r for r in records if r.get("stage") == "confirm"]
    grid = [r for r in records if r.get("stage", "grid") != "confirm"]

    def secs(rs):
        return sum(own_seconds(r) for r in rs)

    return {"runs": len(conf), "grid_runs": len(grid), "seconds": secs(conf), "grid_seconds": secs(grid),
            "configurations": sorted({r.get("config_id") for r in conf})}


def analyze_folder(study_dir: str | Path, log: Log = default_log) -> dict[str, Any]:
    """(Re)write the outputs of any study folder from its stored study and records (``analyze``)."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise UserError(f"results folder not found: {study_dir}")
    study, stored = load_study(study_dir)  # only a study folder is written into (never a user's own folder)
    with study_lock(study_dir, "analysing it"):  # one writer per folder: never beside a study that is still running
        return _analyze_locked(study_dir, study, stored, log)


def _analyze_locked(study_dir: Path, study: Study, stored: dict, log: Log) -> dict[str, Any]:
    records, skipped = study_records(study_dir, study, log, stored)
    return write_outputs(study_dir, study, records, log=log, skipped=skipped, stored=stored)


def study_records(study_dir: Path, study: Study, log: Log = default_log,
                  stored: dict | None = None) -> tuple[list[dict], list[str]]:
    """(the study's readable records in study order, the files skipped): what ``analyze`` and ``export`` read.
    Only records this study would have written count (``records.read_records``); none is one clear error."""
    said: list[str] = []
    done, skipped = read_records(experiments_dir(study_dir), {e.id: e for e in study.experiments},
                                 resolve_configs(study), said.append, data_keys=stored_data_keys(study_dir, stored))
    records = [done[e.id] for e in study.experiments if e.id in done]
    for line in said if records else []:  # with nothing to analyse, the one error line says it all
        log(line)
    if not records:
        why = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise UserError(f"no {'readable ' if skipped else ''}experiment results of this study in {study_dir}"
                        + (f" ({why})" if why else ""))
    return records, [s["file"] for s in skipped]
