"""``keys`` and ``models``: what they print agrees with the dataclasses and with what a run records."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

from moe_ablate import config
from moe_ablate.cli import main


def test_keys_lists_every_settable_key_with_its_type_and_default(capsys):
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    for section, cls in (("model", config.ModelConfig), ("train", config.TrainConfig), ("data", config.DataConfig)):
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            shown = repr(default) if isinstance(default, str) else str(default)
            assert re.search(rf"^{section}\.{f.name}\s+\S+\s+default {re.escape(shown)}$", out, re.M), f.name
    assert "train.schedule" in out and "cosine|wsd|constant" in out  # a Literal shows its choices
    assert "AdamW lr = muon_lr * ratio" in out  # the comment in config.py is the help


def test_keys_filters_and_an_unmatched_filter_is_exit_2(capsys):
    assert main(["keys", "lr"]) == 0
    keys = re.findall(r"^(\S+)\s", capsys.readouterr().out, re.M)
    assert keys and all("lr" in k for k in keys) and "train.muon_lr" in keys
    assert main(["keys", "no_such_key"]) == 2


def test_models_counts_what_a_tiny_run_records(tmp_path):
    """The tiny preset asks for a 2,048-token BPE; the builtin corpus gives fewer. `models` counts at the size
    the run really used (read from the data cache) and says so."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "moe_ablate", "train", "--preset", "tiny", "--steps", "1",
                          "--eval-every", "1", "--cache-dir", str(cache), "--output-dir", str(out), "--device", "cpu",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "muon_lr 0.01" in run.stdout and "preset tiny" in run.stdout  # train prints what it uses
    result = json.loads((out / "result.json").read_text())
    asked = config.preset_config("tiny").data.vocab_size
    real = result["data"]["vocab_size"]
    assert real < asked and result["data"]["vocab_size_asked"] == asked  # the shortfall is recorded
    assert f"stopped at {real:,} tokens of the {asked:,} asked" in run.stderr  # and said
    models = subprocess.run([sys.executable, "-m", "moe_ablate", "models", "--presets", "tiny", "--cache-dir",
                             str(cache)], capture_output=True, text=True, timeout=300)
    row = next(line.split() for line in models.stdout.splitlines() if line.startswith("moe "))
    assert row[1:5] == ["tiny", f"{real:,}", f"{result['params']['total']:,}", f"{result['params']['active']:,}"]
    assert "real size of the preset's tokenizer" in models.stdout
