import json

import pytest

from moe_ablate.analysis.stats import analyze
from moe_ablate.cli import main
from moe_ablate.config import ExperimentConfig
from moe_ablate.studies.kinds import lr_search
from moe_ablate.studies.spec.stored import Study

from .helpers import kill_resume

TINY = ["--preset", "tiny", "--eval-batches", "1", "--num-documents", "300", "--max-tokens", "60000",
        "--vocab-size", "512", "--batch-size", "4", "--seq-len", "32", "--no-progress"]


def rec(lr, best, status="ok"):
    return {"experiment_id": lr_search.lr_id(lr), "config_id": lr_search.lr_id(lr), "status": status,
            "hyperparameters": {"muon_lr": lr}, "best_val_loss": best if status == "ok" else None,
            "val_loss": best, "config": {"train": {"muon_lr": lr}, "model": {"name": "deepseek_mlp"}}}


def recommend(records, exp=9):
    study = Study("lr_search", "s", ExperimentConfig(), [], params={"exp": exp}, metric="best_val_loss")
    return lr_search.KIND.recommendation(study, records, analyze(records, "best_val_loss"))


def extension(records):
    study = Study("lr_search", "s", ExperimentConfig(), [], metric="best_val_loss")
    more = lr_search.KIND.extension(study, records, analyze(records, "best_val_loss"))
    return more[0].overrides["train.muon_lr"] if more else None


def test_recommendation_is_the_lowest_best_loss_among_ok_runs():
    records = [rec(1e-4, 5.0), rec(3e-4, 4.2), rec(1e-3, 3.9), rec(3e-3, 1.0, status="diverged")]
    r = recommend(records)
    assert r["best_learning_rate"] == 1e-3 and r["margin"] == pytest.approx(0.3)
    # one seed each: no LR was tested worse, so whether the optimum is bracketed cannot be told (the diverged 3e-3
    # bounds it from above; below, only the estimates rise)
    assert r["bracketed"] is None and r["bracketed_by_estimate"] and "cannot tell whether" in r["warning"]
    assert r["failed"] == [3e-3]
    assert r["verdict"] == "cannot_tell"  # one seed each: no estimate of noise, no claim


def test_edge_warning_and_extension_when_the_best_is_the_largest_lr():
    records = [rec(1e-4, 5.0), rec(3e-4, 4.2), rec(1e-3, 3.9)]
    r = recommend(records)
    assert not r["bracketed"] and "not bracketed on the high side" in r["warning"]
    assert extension(records) == pytest.approx(3e-3)
    assert extension([rec(1e-5, 1.0), rec(1e-4, 2.0), rec(1e-3, 3.0)]) == pytest.approx(3.33e-6)
    assert extension([rec(0.3, 2.0), rec(1.0, 1.0)]) is None  # 3.0 is beyond the bound
    assert extension([rec(1e-4, 2.0), rec(3e-4, 1.0), rec(1e-3, 3.0)]) is None  # interior


def test_pipeline_lr_search_expert_search_and_long_training(tmp_path, cache_dir, capsys):
    common = TINY + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path)]
    assert main(["lr-search", "--exp", "9", "--steps", "4", "--eval-every", "2", "--lrs", "1e-3", "1e-2"] + common) == 0
    assert main(["lr-search", "--exp", "3", "--steps", "4", "--eval-every", "2", "--lrs", "1e-4", "1e-2", "3e-2"]
                + common) == 0
    out = capsys.readouterr().out
    for exp in (9, 3):
        d = next(tmp_path.glob(f"lr_search_exp{exp}_*"))
        for f in ("lr_search_results.json", "lr_recommendation.json", "lr_search_comparison.png"):
            assert (d / f).exists()
        results = json.loads((d / "lr_search_results.json").read_text())["results"]
        assert sorted(p.name for p in (d / "experiments").iterdir()) == sorted(
            f"{lr_search.lr_id(r['config']['train']['muon_lr'])}.json" for r in results)
        ok = [r for r in results if r["status"] == "ok"]
        best = min(ok, key=lambda r: r["best_val_loss"])["config"]["train"]["muon_lr"]  # one seed per LR
        recommendation = json.loads((d / "lr_recommendation.json").read_text())
        assert recommendation["best_learning_rate"] == best
        tried = [r["config"]["train"]["muon_lr"] for r in results]
        if len(tried) == 2:  # two values can never bracket an optimum, and the report says so
            assert "muon_lr was tried at two values only" in out
        elif best == max(tried):  # an unbracketed optimum is said out loud
            assert f"best muon_lr = {best:g} is the largest value tried" in out
        for r in results:
            for key in ("val_loss", "val_accuracy", "val_perplexity", "best_val_loss", "best_step", "early_stopped",
                        "final_train_loss", "final_lr", "steps", "wall_time_s", "params", "status", "history"):
                assert key in r, key
    assert main(["expert-search", "--exp", "3", "--lr", "auto", "--steps", "4", "--eval-every", "2"] + common) == 0
    d = next(tmp_path.glob("expert_search_exp3_*"))
    res = json.loads((d / "expert_search_results.json").read_text())
    assert len(res["configurations"]) == 6
    assert all(c["routing"]["cv"] >= 0 and c["params"]["active"] < c["params"]["total"] for c in res["configurations"])
    lr3 = json.loads(next(tmp_path.glob("lr_search_exp3_*/lr_recommendation.json")).read_text())["best_learning_rate"]
    assert res["results"][0]["config"]["train"]["muon_lr"] == lr3
    expert = json.loads((d / "expert_recommendation.json").read_text())
    assert (d / "expert_search_comparison.png").exists()
    assert main(["train", "--exp", "3", "--lr", "auto", "--steps", "6", "--eval-every", "3", "--checkpoint-every", "3"]
                + [a for a in common if a != "--no-progress"]) == 0
    run = next(tmp_path.glob("exp3_long_term_*"))
    long = json.loads((run / "long_term_results.json").read_text())
    assert long["config"]["train"]["muon_lr"] == lr3
    assert (long["config"]["model"]["num_experts"], long["config"]["model"]["top_k"]) == \
        (expert["num_experts"], expert["top_k"])
    assert (run / "training_curves.png").exists()
    ckpts = run / "checkpoints" / "long_run"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_step_3.pt", "checkpoint_step_6.pt"]
    assert (run / "final_model.pt").exists() and (run / "report.md").exists()

    # resume from the middle checkpoint reproduces the uninterrupted curve exactly
    straight = [h["loss"] for h in long["history"]["train"]]
    assert main(["train", "--resume", str(ckpts / "checkpoint_step_3.pt")]) == 0
    resumed = json.loads((run / "long_term_results.json").read_text())
    assert [h["loss"] for h in resumed["history"]["train"]] == straight


def test_auto_lr_without_a_search_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--exp", "9", "--lr", "auto", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no lr_recommendation.json" in err[0]


def test_then_train_runs_the_long_training_with_the_best_lr(tmp_path, cache_dir):
    common = TINY + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path)]
    assert main(["lr-search", "--exp", "9", "--steps", "3", "--eval-every", "3", "--lrs", "1e-3", "1e-2",
                 "--then-train", "--long-steps", "7"] + common) == 0
    study = next(tmp_path.glob("lr_search_exp9_*"))
    best = json.loads((study / "lr_recommendation.json").read_text())["best_learning_rate"]
    long = json.loads((study / "long_term" / "long_term_results.json").read_text())
    assert long["steps"] == 7 and long["config"]["train"]["muon_lr"] == best
    assert long["settings_from"]["lr_recommendation"].endswith("lr_recommendation.json")


def test_lr_search_resume_keeps_the_stored_study_and_reruns_nothing(tmp_path, cache_dir, capsys):
    common = TINY + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path)]
    assert main(["lr-search", "--exp", "3", "--steps", "2", "--eval-every", "2", "--lrs", "1e-3", "1e-2",
                 "--name", "s"] + common) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "experiments").iterdir()}
    assert main(["lr-search", "--resume", str(tmp_path / "s"), "--no-progress"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "experiments").iterdir()}
    assert after == before
    assert json.loads((tmp_path / "s" / "lr_recommendation.json").read_text())["exp"] == 3
    capsys.readouterr()
    # flags that agree with the stored study are fine, whether the study was started with them or not
    for agreeing in (["--exp", "3"], ["--exp", "3", "--steps", "2", "--lrs", "1e-3", "1e-2"], ["--patience", "3"]):
        assert main(["lr-search", *agreeing, "--resume", str(tmp_path / "s"), "--no-progress"]) == 0, agreeing
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "experiments").iterdir()} == before
    # a flag that defines another study is refused with one line naming the flag and both values
    for conflicting, says in ((["--exp", "9"], "--exp: the study has 3, this command gives 9"),
                              (["--exp", "3", "--steps", "5"], "--steps: the study has 2, this command gives 5"),
                              (["--patience", "7"], "--patience: the study has 3, this command gives 7"),
                              (["--full"], "--full: the study has it unset, this command gives True")):
        capsys.readouterr()
        assert main(["lr-search", *conflicting, "--resume", str(tmp_path / "s"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "experiments").iterdir()} == before


@pytest.mark.parametrize("args", [["train", "--exp", "9", "--lr", "abc"], ["train", "--exp", "3", "--lr", "-1"],
                                  ["expert-search", "--lr", "fast"]])
def test_bad_lr_is_one_line(args, tmp_path, capsys):
    code = None
    try:
        code = main(args + ["--output-dir", str(tmp_path)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "positive number, 'auto' or scaling:DIR" in err[0]
    assert not any(tmp_path.iterdir())


def test_checkpoint_every_zero_turns_checkpoints_off(tmp_path, cache_dir):
    common = TINY + ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path)]
    common.remove("--no-progress")
    assert main(["train", "--exp", "9", "--lr", "1e-3", "--steps", "4", "--checkpoint-every", "0"] + common) == 0
    run = next(tmp_path.glob("exp9_long_term_*"))
    assert json.loads((run / "long_term_results.json").read_text())["checkpoints"] == []
    assert not (run / "checkpoints").exists()
    assert (run / "final_model.pt").exists()


def test_lr_search_runs_on_any_preset_and_model_without_exp(tmp_path, cache_dir, capsys):
    """`lr-search --preset tiny` (no --exp): the user's own model, its own folder name and recommendation."""
    small = [a for a in kill_resume.SMALL if a not in ("--preset", "tiny")]
    assert main(["lr-search", "--preset", "tiny", "--model", "moe", "--lrs", "0.01", "0.05", "--steps", "4",
                 "--eval-every", "2", "--confirm", "0", "--output-dir", str(tmp_path), "--cache-dir", str(cache_dir),
                 *small]) == 0
    folder = next(tmp_path.glob("lr_search_moe_*"))
    rec = json.loads((folder / "lr_recommendation.json").read_text())
    assert rec["exp"] is None and rec["model"] == "moe" and rec["best_learning_rate"] in (0.01, 0.05)
    capsys.readouterr()
    # --exp with another model is one line; an expert search of a dense model too
    assert main(["lr-search", "--exp", "9", "--model", "moe", "--dry-run"]) == 2
    assert main(["expert-search", "--model", "deepseek_mlp", "--dry-run"]) == 2
    assert "no experts" in capsys.readouterr().err
    # --config: the file's preset and [base] settings win over the search's defaults
    cfg = tmp_path / "mine.toml"
    cfg.write_text(kill_resume.study_toml(7, "[0.01]", 0, str(cache_dir), name="mine"))
    assert main(["lr-search", "--config", str(cfg), "--dry-run", "--no-measure"]) == 0
    assert "steps           7 per run" in capsys.readouterr().out


def test_an_lr_search_of_one_lr_says_nothing_brackets_it(tmp_path, cache_dir):
    """Found by the names fuzz: `lr-search --lrs 0.01` (one LR) ended in KeyError 'tested' after training."""
    assert main(["lr-search", "--exp", "9", "--lrs", "0.01", "--steps", "2", "--eval-every", "2", "--output-dir",
                 str(tmp_path), *kill_resume.SMALL, "--cache-dir", str(cache_dir)]) == 0
    (rec,) = [json.loads(p.read_text()) for p in tmp_path.glob("*/lr_recommendation.json")]
    assert rec["best_learning_rate"] == 0.01 and rec["bracketed"] is None and rec["tried"] == [0.01]
