"""The command line answers before the heavy stacks load: ``--help``, ``--version``, a flag error and a TOML
error import no torch, statsmodels, matplotlib or transformers (they cost 5-25 s on a cold disk). Measured in a
fresh interpreter, since this test process has them all loaded already."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "statsmodels", "matplotlib", "seaborn", "transformers", "pandas", "scipy")
PROBE = f"""
import json, sys
from moe_ablate.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
print(json.dumps({{"rc": rc, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def loaded(*argv):
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return json.loads(p.stderr.strip().splitlines()[-1]), p


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"], ["lr-search", "--help"],
                                  ["scaling", "--help"], ["run", "--steps", "-3"], ["keys"]])
def test_help_version_and_flag_errors_load_no_heavy_stack(argv):
    out, p = loaded(*argv)
    assert out["loaded"] == [], (argv, out, p.stderr[-500:])
    assert out["rc"] in (0, 2)


def test_a_toml_error_is_one_line_without_the_heavy_stack(tmp_path):
    bad = tmp_path / "study.toml"
    bad.write_text('[study]\nnmae = "x"\n')
    out, p = loaded("run", "--config", str(bad), "--output-dir", str(tmp_path / "out"))
    assert out["rc"] == 2 and out["loaded"] == []
    assert "unknown key 'study.nmae' (did you mean 'name'?)" in p.stderr
    assert not (tmp_path / "out").exists()
