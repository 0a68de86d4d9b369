import json

import pytest

from moe_ablate.cli import main
from moe_ablate.errors import UserError
from moe_ablate.studies.kinds import batch_seqlen as bs
from moe_ablate.studies.spec.file import load_spec

FAST = ["--preset", "tiny", "--steps", "2", "--eval-batches", "1", "--num-documents", "300", "--max-tokens", "60000",
        "--vocab-size", "512", "--no-progress", "--confirm", "0"]


@pytest.mark.parametrize("preset", ["seed", "tiny"])
def test_every_strategy_sees_the_same_tokens_per_step(preset):
    spec = load_spec("batch_seqlen")
    strats = bs.strategies(spec, preset)
    assert {s["name"] for s in strats} == {"large_batch", "balanced", "long_seq"}
    assert len({s["batch_size"] * s["seq_len"] * s["grad_accum"] for s in strats}) == 1
    large = next(s for s in strats if s["name"] == "large_batch")
    if preset == "seed":
        assert (large["batch_size"], large["seq_len"], large["grad_accum"]) == (64, 256, 2)
    exps = bs.experiments(strats, spec.extra["lrs"])
    assert len(exps) == 9 and {e.overrides["train.muon_lr"] for e in exps} == {0.005, 0.01, 0.02}
    assert len({e.overrides["train.eval_seq_len"] for e in exps}) == 1  # scored on the same windows


def test_a_file_breaking_the_rule_is_refused():
    spec = load_spec("batch_seqlen")
    spec.extra["strategy"] = spec.extra["strategy"] + [{"name": "odd", "batch_size": 3, "seq_len": 100}]
    with pytest.raises(UserError, match="same tokens per optimizer step"):
        bs.strategies(spec, "seed")


def test_matrix_and_custom_runs_write_every_file_and_never_overwrite(tmp_path, cache_dir, capsys):
    common = FAST + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path)]
    assert main(["batch-seqlen"] + common) == 0
    assert main(["batch-seqlen"] + common) == 0  # a second study gets its own folder
    studies = sorted(p for p in tmp_path.iterdir() if p.name.startswith("batch_seqlen_2"))
    assert len(studies) == 2
    # review item 8: scored on the common longest windows *and* at each run's own training length
    runs = [json.loads(p.read_text()) for p in (studies[0] / "experiments").glob("*.json")]
    longest = max(r["config"]["train"]["seq_len"] for r in runs)
    for r in runs:
        own = r["config"]["train"]["seq_len"] != longest
        assert (r.get("val_loss_own_length") is not None) == own, r["experiment_id"]
    report = (studies[0] / "report.md").read_text()
    assert "On the common longest validation windows:" in report and "Ranked at each strategy's own length" in report
    assert "not penalised" not in report and "at each strategy's own training length instead" in report
    for d in studies:
        assert len(list((d / "experiments").glob("*.json"))) == 9
        for f in ("results.json", "batch_seqlen_comparison.png", "report.md", "config.json"):
            assert (d / f).exists()
        res = json.loads((d / "results.json").read_text())
        assert res["answer"] and len(res["best_per_strategy"]) == 3
        rec = json.loads((d / "experiments" / "long_seq_lr0.01.json").read_text())
        assert rec["peak_memory_gb"] > 0 and rec["history"]["eval"][0]["tokens"] > 0
    assert main(["batch-seqlen", "--batch", "4", "--seqlen", "32", "--lr", "0.02", "--grad-accum", "2",
                 "--name", "mine"] + common) == 0
    custom = next(tmp_path.glob("batch_seqlen_mine_*"))
    assert [p.name for p in (custom / "experiments").iterdir()] == ["mine_lr0.02.json"]
    capsys.readouterr()
    assert main(["batch-seqlen", "--batch", "4", "--seqlen", "4096"] + common) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exceeds the model's max_seq_len" in err[0]


@pytest.mark.parametrize("lrs", ["0.01", [], [0.01, -1]])
def test_lrs_must_be_a_list_of_positive_numbers(lrs):
    spec = load_spec("batch_seqlen")
    spec.extra["lrs"] = lrs
    with pytest.raises(UserError, match="lrs must be a non-empty list"):
        bs.learning_rates(spec, 0.01)
