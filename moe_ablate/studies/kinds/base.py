"""The contract of a study kind: everything a kind is, in one class; the registry (``kinds/__init__.py``) lists them.

The runner, resume, failure handling, halving, ranking, statistics and the report are shared
(``pipeline.py``, ``outputs.py``, ``analysis/``). A kind adds what is really its own: its command and
flags and how they build its study, its TOML section, how it groups configurations for halving, how it
extends itself while running (an LR search's ``--extend``), its own files and figures, the paragraph that
answers its question, and a follow-up study (lr-search's ``--then-train``). A new kind is one file with a
subclass plus one line in ``kinds/__init__.py``; the command line reads the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UserError
from ..spec.file import ExperimentSpec
from ..spec.stored import Study

# name -> kind; ``kinds/__init__.py`` imports every built-in kind, which registers itself
REGISTRY: dict[str, StudyKind] = {}


@dataclass
class FollowUp:
    """A study to run after this one, in ``folder`` (lr-search --then-train: the long run with the best LR)."""

    study: Study
    folder: Path


class StudyKind:
    name = "grid"
    title = "Study"  # report heading
    keeps_final_model = False  # long runs save final_model.pt

    # ---- the command line (cli/study_cmds.py makes one command per kind that names one)
    command: str | None = None  # the command that starts it; None: started another way (a TOML's [study] kind)
    resumed_by: tuple[str, ...] = ()  # more commands whose --resume continues it
    help = ""  # one line for `moe-ablate --help`
    description = ""  # the command's own --help
    folder_name = "<study name>"  # the default study folder, said in --help
    name_flag = True  # offers --name (batch-seqlen's --name names a custom strategy instead)
    skip_flags: tuple[str, ...] = ()  # experiment flags the kind sets itself
    result_files: tuple[str, ...] = ()  # its own files, printed after the run
    toml_section: str | None = None  # its own [section] of a study TOML (declared in schema.StudyFile)
    default_confirm: int | None = None  # None: the shared default (confirm when there are >= 4 configurations)

    def add_flags(self, defining, other) -> None:
        """Add the kind's flags: ``defining.add(...)`` for flags that define the study (compared on --resume),
        ``other.add(...)`` for the others. Both take argparse's ``add_argument`` arguments; a ``type`` may be
        named ("pos_int", "pos_float", "lr_or_auto", ...: ``cli.args.FLAG_TYPES``), so no kind imports argparse."""

    def build(self, args, overrides: dict[str, Any]) -> Study:
        """The study its command's flags define (``overrides``: the experiment flags as config keys)."""
        raise NotImplementedError(f"study kind {self.name} has no command")

    def from_toml(self, study: Study, section: dict[str, Any], flags: dict[str, Any]) -> None:
        """Read the kind's own TOML section into ``study.params`` and check it, before anything runs."""

    def params_grow(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """True when the kind's ``new`` params only add to a stored study's ``old`` ones what can be added after
        its grid ran (a scaling study's designed ladder or validation scale): ``--resume DIR`` with them grows the
        study in place instead of refusing a changed config."""
        return False

    def halving_group(self, study: Study, spec: ExperimentSpec) -> str:
        """Configurations compete within their group under successive halving (default: the whole grid)."""
        return ""

    def follow_up(self, study_dir: Path, study: Study, records: list[dict], analysis: dict, args) -> FollowUp | None:
        """A study to run after this one (None: nothing)."""
        return None

    # ---- the study's outputs
    def analyze(self, study: Study, records: list[dict], analysis: dict) -> None:
        """Add the kind's own numbers to ``analysis`` (written to analysis.json with the rest)."""

    def extension(self, study: Study, records: list[dict], analysis: dict) -> list[ExperimentSpec]:
        """Experiments to add after a round (only when the user asked to extend)."""
        return []

    def follow_on(self, study: Study, records: list[dict], log) -> tuple[list[ExperimentSpec], str]:
        """(experiments the study itself adds once its grid is in, why): a scaling study's validation scale,
        whose LRs depend on the ladder's law. They are stored before they run, so a resume continues them; return
        ``([], "")`` once they exist."""
        return [], ""

    def planned_follow_on(self, study: Study) -> list[tuple[str, int, list[Any]]]:
        """At most how many runs ``follow_on`` may still add, for the plan's count and ETA: (what, runs, the
        ``ExperimentConfig``s they may have: the ETA takes the slowest)."""
        return []

    def write_files(self, study_dir: Path, study: Study, records: list[dict], analysis: dict) -> None:
        """The kind's own files beside the common ones (kept for the seeds' users)."""

    def figures(self, study_dir: Path, study: Study, records: list[dict], analysis: dict) -> list[Path]:
        return []

    def answer(self, study: Study, records: list[dict], analysis: dict) -> str | None:
        """A paragraph that answers the kind's question; None = the generic recommendation."""
        return None

    def report_sections(self, study: Study, records: list[dict], analysis: dict) -> list[str]:
        """Extra markdown lines for report.md, after the answer."""
        return []


def register(kind: StudyKind) -> StudyKind:
    """Make a kind known by its name (to stored studies, TOML files and the command line)."""
    REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> StudyKind:
    if name not in REGISTRY:
        raise UserError(f"unknown study kind {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]
