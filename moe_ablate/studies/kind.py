"""What a study kind contributes to the one pipeline, and nothing more.

The runner, resume, failure handling, ranking, statistics and the report are shared
(``pipeline.py``, ``outputs.py``, ``analysis/``). A kind adds what is really its own: how it
extends itself while running (an LR search's ``--extend``), its seed-compatible files, its extra
figures, and the one paragraph that answers its question.
"""

from __future__ import annotations

from pathlib import Path


from .spec import ExperimentSpec
from .study import Study


class StudyKind:
    name = "grid"
    title = "Study"  # report heading
    keeps_final_model = False  # long runs save final_model.pt

    def analyze(self, study: Study, records: list[dict], analysis: dict) -> None:
        """Add the kind's own numbers to ``analysis`` (written to analysis.json with the rest)."""

    def extension(self, study: Study, records: list[dict], analysis: dict) -> list[ExperimentSpec]:
        """Experiments to add after a round (only when the user asked to extend)."""
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


