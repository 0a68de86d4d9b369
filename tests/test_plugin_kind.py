"""A new study kind is one class plus one registry line: a toy kind defined here gets its own command,
flags, resume and answer through the real command line, with nothing else changed."""

from __future__ import annotations

import json

import pytest

from moe_ablate.cli import main
from moe_ablate.config import apply_overrides, preset_config
from moe_ablate.studies import kinds
from moe_ablate.studies.kinds.base import StudyKind
from moe_ablate.studies.spec.file import ExperimentSpec
from moe_ablate.studies.spec.stored import Study

from .conftest import SMALL


class WidthSweep(StudyKind):
    """One run per model width at a fixed LR; the answer names the best width."""

    name = "toy_width"
    title = "Toy width sweep"
    command = "toy-width"
    help = "a toy kind: one run per model width"
    folder_name = "toy_width"

    def add_flags(self, defining, other):
        defining.add("--widths", type="pos_int", nargs="+", default=None, help="model widths (default 16 32)")

    def build(self, args, overrides):
        base = apply_overrides(preset_config("tiny"), {**SMALL, "train.steps": 4, **overrides})
        runs = [ExperimentSpec(f"w{w}", {"model.d_model": w}) for w in args.widths or [16, 32]]
        return Study(kind=self.name, name="toy_width", base=base, experiments=runs, metric="val_loss", confirm=0)

    def answer(self, study, records, analysis):
        best = analysis["recommendation"]["best"]
        return f"Toy answer: width {next(r['hyperparameters']['d_model'] for r in records if r['config_id'] == best)}"


@pytest.fixture
def toy_kind(monkeypatch):
    kind = WidthSweep()
    monkeypatch.setitem(kinds.KINDS, kind.name, kind)  # the registry line (`register(WidthSweep())`), undone after
    return kind


def test_a_kind_defined_in_one_class_runs_end_to_end_through_the_cli(toy_kind, tmp_path, cache_dir, capsys):
    args = ["toy-width", "--widths", "16", "32", "--output-dir", str(tmp_path), "--name", "t", "--no-progress",
            "--cache-dir", str(cache_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Toy answer: width " in out
    folder = tmp_path / "t"
    assert json.loads((folder / "config.json").read_text())["study"]["kind"] == "toy_width"
    assert sorted(p.name for p in (folder / "experiments").glob("*.json")) == ["w16.json", "w32.json"]
    assert "Toy width sweep" in (folder / "report.md").read_text()

    # resume: its own command continues it, nothing reruns; another command names the right one
    before = {p.name: p.read_bytes() for p in (folder / "experiments").glob("*.json")}
    assert main(["toy-width", "--resume", str(folder), "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in (folder / "experiments").glob("*.json")} == before
    capsys.readouterr()
    assert main(["run", "--resume", str(folder)]) == 2
    assert "resume it with `moe-ablate toy-width --resume" in capsys.readouterr().err

    # its flags define the study: a different --widths on resume is refused, naming the flag
    assert main(["toy-width", "--resume", str(folder), "--widths", "16", "48"]) == 2
    assert "--widths" in capsys.readouterr().err


def test_the_toy_command_is_listed_and_explained(toy_kind, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "toy-width" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["toy-width", "--help"])
    assert "model widths (default 16 32)" in capsys.readouterr().out
