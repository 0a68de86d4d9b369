"""One pipeline for every study kind: data axes, extend + resume, any axis type, seeds x subsets,
analyze on every kind, and a layout without import cycles."""

import ast
import json
from pathlib import Path

import pytest

from moe_ablate.cli import main
from moe_ablate.studies.engine.pipeline import run_study
from moe_ablate.studies.kinds import batch_seqlen, expert_search, grid, long_train, lr_search

from .conftest import SMALL, small_config
from .helpers import write_study

TINY = ["--preset", "tiny", "--eval-batches", "1", "--num-documents", "300", "--max-tokens", "60000",
        "--vocab-size", "512", "--batch-size", "4", "--seq-len", "32", "--no-progress"]
QUIET = dict(log=lambda m: None, progress=False)


def records(study: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((study / "experiments").glob("*.json"))]


def test_a_data_axis_trains_each_experiment_on_its_own_tokenisation(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.05]", extra="[grid.data]\nvocab_size = [300, 512]\n")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "v", "--no-progress"]) == 0
    recs = records(tmp_path / "v")
    assert len(recs) == 4
    vocab = {r["config"]["data"]["vocab_size"]: r for r in recs}
    assert set(vocab) == {300, 512}
    for size, r in vocab.items():  # the model and the data really used that tokenisation
        assert r["config"]["model"]["vocab_size"] == r["data"]["vocab_size"] <= size
    assert len({r["data"]["cache_key"] for r in recs}) == 2
    assert len({round(r["val_loss"], 6) for r in recs}) == 4
    stored = json.loads((tmp_path / "v" / "config.json").read_text())
    assert len(stored["data"]) == 2  # both datasets' provenance is part of the study
    analysis = json.loads((tmp_path / "v" / "analysis.json").read_text())
    assert "vocab_size" in analysis["axes"]


def test_an_impossible_combination_is_one_line_and_writes_nothing(tmp_path, cache_dir, capsys):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]", extra="[grid.model]\ntop_k = [2, 9]\n")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "top_k (9) must be between 1 and num_experts" in err[0] and "exp_" in err[0]
    assert not (tmp_path / "o").exists()


def _lr(d: Path) -> dict:
    return json.loads((d / "lr_recommendation.json").read_text())


def test_extend_survives_resume_and_resume_can_extend(tmp_path, cache_dir):
    common = TINY + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path), "--steps", "6", "--eval-every",
                     "3", "--confirm", "0"]
    assert main(["lr-search", "--exp", "9", "--lrs", "0.003", "0.01", "--extend", "--name", "e"] + common) == 0
    extended = _lr(tmp_path / "e")
    assert len(extended["tried"]) > 2  # the edge moved at least once
    # one seed per LR: nothing is tested, so the extension stops where the estimates rise on both sides
    assert extended["bracketed_by_estimate"] or max(extended["tried"]) * 3 > 1.0
    assert main(["lr-search", "--resume", str(tmp_path / "e"), "--no-progress"]) == 0
    again = _lr(tmp_path / "e")
    assert again["tried"] == extended["tried"] and again["bracketed"] == extended["bracketed"]
    assert again["best_learning_rate"] == extended["best_learning_rate"]
    stored = json.loads((tmp_path / "e" / "config.json").read_text())["study"]["experiments"]
    assert len(stored) == len(extended["tried"])

    # started without --extend, then extended on resume
    assert main(["lr-search", "--exp", "9", "--lrs", "0.003", "0.01", "--name", "r"] + common) == 0
    assert len(_lr(tmp_path / "r")["tried"]) == 2
    assert main(["lr-search", "--resume", str(tmp_path / "r"), "--extend", "--no-progress"]) == 0
    assert _lr(tmp_path / "r")["tried"] == extended["tried"]  # same runs, same extension path


MIXED = """
[study]
name = "mixed"
confirm = 0
[base.model]
d_model = 32
n_heads = 2
n_layers = 1
d_ff = 64
num_experts = 4
max_seq_len = 32
q_lora_rank = 16
kv_lora_rank = 16
qk_rope_head_dim = 8
qk_nope_head_dim = 8
v_head_dim = 16
[base.train]
steps = 4
batch_size = 4
seq_len = 32
eval_every = 2
eval_batches = 2
log_every = 2
device = "cpu"
[base.data]
num_documents = 300
max_tokens = 60000
vocab_size = 512
cache_dir = "{cache}"
[grid.model]
name = ["moe", "deepseek_mlp"]
[grid.train]
muon_lr = [0.01, 0.03, 0.1]
"""


def test_a_text_axis_gets_a_full_report(tmp_path, cache_dir):
    cfg = tmp_path / "mixed.toml"
    cfg.write_text(MIXED.format(cache=cache_dir))
    assert main(["run", "--config", str(cfg), "--preset", "tiny", "--output-dir", str(tmp_path), "--name", "m",
                 "--no-progress"]) == 0
    d = tmp_path / "m"
    a = json.loads((d / "analysis.json").read_text())
    assert a["axes"] == ["name", "muon_lr"] and a["n_ok"] == 6
    assert {e["value"] for e in a["effects"]["name"]} == {"moe", "deepseek_mlp"}
    assert set(a["importance"]) == {"name", "muon_lr"}
    assert "name" not in a["correlations"] and "muon_lr" in a["correlations"]  # only numeric axes correlate
    report = (d / "report.md").read_text()
    assert "### name" in report and "## Configurations" in report
    for f in ("loss_vs_lr.png", "heatmap.png", "conditional_effects.png", "top_performers_analysis.png",
              "report.html", "results.csv"):
        assert (d / f).exists(), f


def test_max_experiments_with_seeds_is_n_configurations_times_k_seeds(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.01, 0.03, 0.05, 0.1]")
    study = grid.make_study(str(cfg), max_experiments=6, seeds=2)
    configs = study.configurations()
    assert len(study.experiments) == 12 and len(configs) == 6
    for runs in configs.values():
        assert sorted(e.overrides["train.seed"] for e in runs) == [42, 43]
        assert len({json.dumps({k: v for k, v in e.overrides.items() if k != "train.seed"}) for e in runs}) == 1
    wd = {e.overrides["train.weight_decay"] for e in study.experiments}
    assert wd == {0.0, 0.1}  # the 6 configurations still span every axis value
    assert main(["run", "--config", str(cfg), "--max-experiments", "6", "--seeds", "2", "--output-dir", str(tmp_path),
                 "--name", "ms", "--no-progress"]) == 0
    a = json.loads((tmp_path / "ms" / "analysis.json").read_text())
    assert a["n_experiments"] == 12 and a["n_configurations"] == 6
    assert all(c["n"] == 2 for c in a["configurations"])


def test_analyze_writes_a_report_for_a_folder_of_every_kind(tmp_path, cache_dir):
    base = {k: v for k, v in SMALL.items()}
    over = {**{k: v for k, v in base.items() if not k.startswith("data.")}, "data.cache_dir": str(cache_dir),
            "data.num_documents": 300, "data.max_tokens": 60000, "data.vocab_size": 512, "train.steps": 2,
            "train.eval_every": 2, "train.patience": 0}
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]")
    studies = {
        "grid": grid.make_study(str(cfg)),
        "lr_search": lr_search.make_study(9, lrs=[1e-3, 1e-2], preset="tiny", overrides=over, confirm=0),
        "expert_search": expert_search.make_study(preset="tiny", overrides=over, confirm=0),
        "batch_seqlen": batch_seqlen.make_study(preset="tiny", overrides={
            k: v for k, v in over.items() if not k.startswith(("train.batch", "train.seq", "model.max_seq"))},
            confirm=0),
        "long_train": long_train.make_study(9, small_config(cache_dir, **{"train.steps": 2,
                                                                          "model.name": "deepseek_mlp"})),
    }
    for kind, study in studies.items():
        d = tmp_path / kind
        run_study(study, d, **QUIET)
        (d / "report.md").unlink()
        assert main(["analyze", "--results-dir", str(d)]) == 0
        report = (d / "report.md").read_text()
        assert report.startswith("# ") and "## Answer" in report, kind
    for f in ("lr_search_results.json", "lr_recommendation.json"):
        assert (tmp_path / "lr_search" / f).exists()
    assert (tmp_path / "expert_search" / "expert_recommendation.json").exists()
    assert (tmp_path / "batch_seqlen" / "results.json").exists()
    assert (tmp_path / "long_train" / "long_term_results.json").exists()
    assert (tmp_path / "long_train" / "final_model.pt").exists()


PACKAGE = Path(__file__).resolve().parent.parent / "moe_ablate"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every moe_ablate module this file imports, at any depth (lazy imports count too)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("moe_ablate")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("moe_ablate"):
                out.add(target)
                out |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` imports a module
    return out


def test_no_import_cycles_and_argparse_only_in_the_cli():
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {t for t in _imports(p) if t in files and t != m} for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    for m, p in files.items():
        uses_argparse = any(isinstance(n, (ast.Import, ast.ImportFrom)) and "argparse" in
                            ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""])
                            for n in ast.walk(ast.parse(p.read_text())))
        assert not uses_argparse or m.startswith("moe_ablate.cli"), m
        if not m.startswith("moe_ablate.cli") and m != "moe_ablate.__main__":  # the entry point runs the CLI
            assert not any(t.startswith("moe_ablate.cli") for t in graph[m]), f"{m} imports the CLI"
    config_deps = graph["moe_ablate.config"] - {"moe_ablate", "moe_ablate.errors"}
    assert not config_deps, f"config.py depends on {config_deps}"
