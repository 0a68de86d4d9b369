"""Study folders written before the #34 redesign (tests/fixtures/old_studies, made by its make.py at
commit 8dd8a24) still resume with nothing rerun and re-analyse to the same numbers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from moe_ablate.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "old_studies"
PLACEHOLDER = "/tmp/MOE_ABLATE_FIXTURE_CACHE"


def moved_copy(name: str, tmp_path: Path, cache_dir: Path) -> Path:
    """The fixture as if moved to this machine: its data cache is the test's own."""
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    for f in dest.rglob("*.json"):
        f.write_text(f.read_text().replace(PLACEHOLDER, str(cache_dir)))
    return dest


def numbers(obj, path=""):
    """Every number in a JSON tree, keyed by its path (wall times left out: they are measured, not computed)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if "wall" not in k and "time" not in k:
                out.update(numbers(v, f"{path}/{k}"))
        return out
    if isinstance(obj, list):
        return {k: v for i, x in enumerate(obj) for k, v in numbers(x, f"{path}/{i}").items()}
    return {path: obj} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else {}


def assert_same_numbers(old: dict, new: dict) -> None:
    a, b = numbers(old), numbers(new)
    # every number the old version wrote is there and equal; numbers a newer version adds (the headline's, the
    # settings block's) are allowed
    assert len(a) > 20 and a.keys() <= b.keys(), sorted(a.keys() - b.keys())[:5]
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            # 1e-6, not exact: the bootstrap's least squares on 3-4 points amplifies the last bits that another
            # numpy/BLAS build rounds differently (seen: 3.5e-9 relative); a rerun or a changed formula moves
            # these numbers by 1e-3 or more
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-12), k


@pytest.mark.parametrize("name,kind,outputs", [("old_run", "run", ["analysis.json"]),
                                               ("old_scaling", "scaling", ["analysis.json", "scaling_law.json"])])
def test_an_old_study_resumes_with_nothing_rerun_and_analyses_the_same(tmp_path, cache_dir, name, kind, outputs):
    folder = moved_copy(name, tmp_path, cache_dir)
    records = {f.name: f.read_bytes() for f in (folder / "experiments").glob("*.json")}
    expected = {o: json.loads((folder / o).read_text()) for o in outputs}
    assert len(records) >= 8

    assert main([kind, "--resume", str(folder), "--no-progress"]) == 0
    after = {f.name: f.read_bytes() for f in (folder / "experiments").glob("*.json")}
    assert after == records, "a finished experiment was rerun or rewritten"
    for o in outputs:
        assert_same_numbers(expected[o], json.loads((folder / o).read_text()))

    report = (folder / "report.md").read_text()
    (folder / "analysis.json").unlink()
    assert main(["analyze", str(folder)]) == 0  # the folder as a positional, as users type it first
    for o in outputs:
        assert_same_numbers(expected[o], json.loads((folder / o).read_text()))
    assert (folder / "report.md").read_text() == report  # the report, word for word
