"""A stored study is validated like an input (issue 36): copies, foreign and tampered records, and a hand-edited
config.json are skipped with their reason or refused in one line; never ranked, never a traceback."""

import json
import shutil

import pytest

from moe_ablate.cli import main

from .helpers import kill_resume, write_study


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """A finished 4-configuration study (one seed each), made once and copied per test."""
    tmp = tmp_path_factory.mktemp("tamper")
    cfg = write_study(tmp, cache_dir, steps=4, lrs="[0.01, 0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp / "out"), "--name", "s", "--no-progress"]) == 0
    return tmp / "out" / "s"


@pytest.fixture
def study(finished, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(finished, d)
    return d


def analysis(d):
    return json.loads((d / "analysis.json").read_text())


def edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_file_managers_copy_of_a_record_is_not_a_second_seed(study, capsys):
    """Before: 'better than every other configuration ... CI [+0.2031, +0.2031], adjusted p = 0' from a copy."""
    shutil.copy(study / "experiments" / "exp_000.json", study / "experiments" / "exp_000 copy.json")
    assert main(["analyze", "--results-dir", str(study)]) == 0
    a = analysis(study)
    assert a["n_experiments"] == 4 and "exp_000 copy.json" in a["skipped_files"]
    assert a["recommendation"]["verdict"] == "cannot_tell"  # one seed each: no noise estimate, no claim
    assert "another file name" in capsys.readouterr().err


@pytest.mark.parametrize("change, reason", [
    (lambda r: r.update(config_id="exp_002"), "names configuration"),
    (lambda r: r.update(status="weird"), "unknown status"),
    (lambda r: r.pop("status"), "unknown status"),
    (lambda r: r.update(hyperparameters="lr=0.1"), "hyperparameters is not a table"),
    (lambda r: r.update(config_id=["a", "b"]), "names configuration"),
    (lambda r: r["config"]["data"].update(num_documents=999), "made with other settings (data.num_documents"),
    (lambda r: r["config"]["train"].update(steps=40), "made with other settings (train.steps"),
    # a record copied in from a study of another tokenisation (same settings, other text): before, ranked
    (lambda r: r["data"].update(cache_key="0123456789abcdef"), "made on other data (tokenisation 0123456789ab"),
    # fields the analysis reads, of the wrong type (the record schema, engine/records.py StoredRecord)
    (lambda r: r.update(val_loss="0.1"), "malformed: val_loss = '0.1'"),
    (lambda r: r.update(val_loss=True), "malformed: val_loss = True"),
    (lambda r: r.update(history={"train": "flat"}), "malformed: history.train = 'flat'"),
    (lambda r: r.update(data=[1]), "malformed: data = [1]"),
])
def test_a_tampered_or_foreign_record_is_skipped_with_its_reason(study, capsys, change, reason):
    edit(study / "experiments" / "exp_001.json", change)
    assert main(["analyze", "--results-dir", str(study)]) == 0
    a = analysis(study)
    assert a["n_experiments"] == 3 and a["skipped_files"] == ["exp_001.json"]
    assert "exp_001" not in {c["config_id"] for c in a["configurations"]}
    err = capsys.readouterr().err
    assert "skipped experiment file exp_001.json" in err and reason in err


def test_a_base_setting_edited_in_config_json_never_mixes_runs_made_otherwise(study, capsys):
    """Before: the resume reran one missing experiment with the new steps and ranked it against the old runs."""
    edit(study / "config.json", lambda c: c["study"]["base"]["train"].update(steps=6))
    (study / "experiments" / "exp_003.json").unlink()
    assert main(["run", "--resume", str(study), "--no-progress"]) == 0
    records = [json.loads(p.read_text()) for p in sorted((study / "experiments").glob("*.json"))]
    assert len(records) == 4 and {r["steps"] for r in records} == {6}
    assert len(list((study / "experiments" / "set_aside").glob("*.json"))) == 3  # kept, not overwritten
    assert "made with other settings (train.steps 4 != 6)" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda c: c["study"]["experiments"].append(c["study"]["experiments"][0]), "more than once"),
    (lambda c: c["study"].update(metric="val_accuracy"), "higher-is-better"),
    (lambda c: c["study"].update(metric="nonsense"), "unknown metric"),
    (lambda c: c["study"].update(confirm="two"), "confirm = 'two'"),
    (lambda c: c["study"].update(halving=10 ** 400), "halving ="),
    (lambda c: c["study"]["experiments"][0].update(id="../../escaped"), "not a plain file name"),
    (lambda c: c["study"]["experiments"][0].update(stage="warmup"), "study.experiments.0.stage = 'warmup'"),
    (lambda c: c["study"]["experiments"][1].update(overrides=["train.muon_lr", 0.1]), "study.experiments.1.overrides"),
    (lambda c: c["study"]["experiments"][0].update(labels="best"), "study.experiments.0.labels = 'best'"),
    (lambda c: c["study"].update(base={"model": 1}), "study.base.model = 1"),
    (lambda c: c["study"].update(halving_restart="yes"), "study.halving_restart = 'yes'"),
    (lambda c: c["study"].update(flags=[1]), "study.flags = [1]"),
])
def test_a_hand_edited_config_json_is_one_line(study, capsys, change, message):
    edit(study / "config.json", change)
    before = {p.name: p.read_bytes() for p in (study / "experiments").iterdir()}
    for args in (["analyze", "--results-dir", str(study)], ["run", "--resume", str(study), "--no-progress"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert {p.name: p.read_bytes() for p in (study / "experiments").iterdir()} == before


def test_a_huge_integer_flag_is_one_line(capsys):
    """Before: OverflowError inside the argparse type (any integer flag with 309+ digits)."""
    with pytest.raises(SystemExit) as e:  # argparse's exit
        main(["train", "--steps", "9" * 400, "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "below 2**63" in err[0]


def test_a_lock_that_is_a_symlink_truncates_nothing(study, tmp_path, capsys):
    """Before: os.open followed the planted .lock symlink and truncated the file it points to."""
    precious = tmp_path / "notes.txt"
    precious.write_text("a user's notes")
    (study / ".lock").unlink(missing_ok=True)
    (study / ".lock").symlink_to(precious)
    assert main(["analyze", "--results-dir", str(study)]) == 2
    assert precious.read_text() == "a user's notes"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a lock file this tool made" in err[0]


def test_a_strategy_name_cannot_leave_the_output_folder(tmp_path, cache_dir, capsys):
    """Before: [[strategy]] name = "../../../../escaped" wrote its record above --output-dir."""
    cfg = tmp_path / "bs.toml"
    cfg.write_text('[study]\nname = "bs"\nlrs = [0.01]\n[[strategy]]\nname = "../../escaped"\nbatch_size = 4\n'
                   'seq_len = 32\n')
    out = tmp_path / "deep" / "out"
    assert main(["batch-seqlen", "--config", str(cfg), "--preset", "tiny", "--steps", "2", "--output-dir", str(out),
                 "--cache-dir", str(cache_dir), "--no-progress"]) == 2
    assert "must be a plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("*escaped*"))


def test_analyze_waits_for_the_writer(study, capsys):
    """Before: analyze wrote report.md beside a study that was still writing (no lock)."""
    from moe_ablate.studies.engine.lock import study_lock

    before = (study / "report.md").read_bytes()
    with study_lock(study):
        assert main(["analyze", "--results-dir", str(study)]) == 2
    assert "in use by" in capsys.readouterr().err and (study / "report.md").read_bytes() == before


def test_an_empty_resume_never_starts_a_new_study(tmp_path, capsys):
    """Before: `--resume ""` (an unset shell variable) started a new study."""
    assert main(["run", "--resume", "", "--output-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume needs a study folder" in err[0] and not list(tmp_path.iterdir())


def test_a_huge_scaling_bootstrap_is_refused_before_anything_trains(tmp_path, cache_dir, capsys):
    """Before: bootstrap = 100000000 hung after the whole ladder had trained."""
    import kill_resume

    cfg = tmp_path / "scaling.toml"
    cfg.write_text(kill_resume.scaling_toml(2, str(cache_dir)).replace("bootstrap = 200", "bootstrap = 100000000"))
    assert main(["scaling", "--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bootstrap" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, flags, words", [
    # before: expanded its experiment list until killed
    (("[study]\n", "[study]\nseeds = 1000000000000000\n"), [], "study.seeds"),
    # before: accepted and trained, then its folder was refused on every later read
    (("[study]\n", "[study]\nconfirm = 1000000000000000\n"), [], "study.confirm"),
    # 11 LRs x 10 weight decays x 1,000 seeds: each bound holds, the product does not
    (("muon_lr = [0.01, 0.05]", "muon_lr = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.2]"),
     ["--seeds", "1000"], "110,000 runs"),
    # before: a traceback from torch's size arithmetic while the memory check built the model on the meta device
    (("d_model = 32\n", "d_model = 3000000000000\n"), [], "model.d_model must be at most"),
    (("d_model = 32\nn_heads = 2\nn_layers = 1\nd_ff = 64\nnum_experts = 4\n",
      "d_model = 16777216\nn_heads = 2\nn_layers = 1\nd_ff = 16777216\nnum_experts = 1000000\n"), [],
     "too large to build"),
    (None, ["--seeds", "100000"], "--seeds"),
    (None, ["--confirm", "1000"], "--confirm"),
    (None, ["--halving", "100000"], "--halving"),
    (None, ["--max-experiments", "10000000000"], "--max-experiments"),
])
def test_a_study_number_beyond_its_bound_is_one_line_before_anything_runs(edit, flags, words, tmp_path, capsys):
    """Every number that sizes a study has a bound at the flag and the TOML boundary, and the same bound holds
    where the stored study is read back (before: confirm = 10**15 was accepted, and its folder then refused)."""
    import kill_resume

    cfg = tmp_path / "study.toml"
    text = kill_resume.study_toml(2)
    if edit:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    cfg.write_text(text.replace("weight_decay = [0.0, 0.1]", "weight_decay = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, "
                                "0.7, 0.8, 0.9]"))
    try:
        code = main(["run", "--config", str(cfg), *flags, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    except SystemExit as e:  # argparse's exit
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_fifo_as_config_is_one_line_not_a_hang(tmp_path):
    """Before: `run --config` naming a FIFO blocked forever."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "study.toml"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "moe_ablate", "run", "--config", str(fifo), "--output-dir",
                        str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a regular file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_hellaswag_output_never_overwrites_its_checkpoint(tmp_path, capsys):
    """Before: `hellaswag --output` equal to `--checkpoint` replaced the model with the JSON result."""
    model = tmp_path / "final_model.pt"
    model.write_bytes(b"the user's model")
    assert main(["hellaswag", "--checkpoint", str(model), "--data", str(tmp_path / "h.jsonl"),
                 "--output", str(model)]) == 2
    assert model.read_bytes() == b"the user's model"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would overwrite the --checkpoint input" in err[0]


def test_two_studies_started_in_the_same_second_get_two_folders(tmp_path, cache_dir, monkeypatch, capsys):
    """Before: without --name both took <name>_<time>, and the second was refused with "in use by ...; wait for it
    to finish (or stop it) before resuming" although nothing was being resumed. Here the other process claims
    the name right after this one chose it (the race), holding the folder's lock as a running study does."""
    import kill_resume

    from moe_ablate import tracking
    from moe_ablate.cli import study_cmds
    from moe_ablate.studies.engine import pipeline
    from moe_ablate.studies.engine.lock import study_lock

    real, held = study_cmds.study_dir_for, []

    def chosen_then_taken(args, name):
        path = real(args, name)
        lock = study_lock(path)
        lock.__enter__()  # the other study: same second, same name, running
        held.append((path, lock))
        return path

    monkeypatch.setattr(study_cmds, "study_dir_for", chosen_then_taken)
    tracked = []  # the tracker runs' names: they must name the study's own folder, the "_2" one

    class Tracker:
        def __init__(self, spec, run, hparams, start_step):
            tracked.append(run)
        log = finish = lambda self, *a: None

    monkeypatch.setattr(tracking.TrackingSpec, "check_installed", lambda self: None)
    monkeypatch.setitem(tracking.ADAPTERS, "tensorboard", Tracker)
    monkeypatch.setattr(pipeline, "attach_study_outputs", lambda *a: None)
    cfg = tmp_path / "s.toml"
    cfg.write_text(kill_resume.study_toml(2, "[0.01]", 0, str(cache_dir), name="twin"))
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--output-dir", str(out), "--no-progress", "--tracker", "tensorboard",
                 "--tracking-dir", str(tmp_path / "tracking")]) == 0
    taken, lock = held[0]
    lock.__exit__(None, None, None)
    assert sorted(p.name for p in out.iterdir()) == [taken.name, f"{taken.name}_2"]
    assert tracked and all(run.startswith(f"{taken.name}_2/") for run in tracked), tracked
    assert (out / f"{taken.name}_2" / "config.json").exists() and not (taken / "config.json").exists()
    assert "in use" not in capsys.readouterr().err


def test_a_name_too_long_for_a_file_name_is_refused_before_anything_runs(tmp_path, capsys):
    """Before: 200 two-byte characters passed the name check and failed as "File name too long" at the folder,
    after the data had been prepared. Names are measured in the bytes a file name holds."""
    out = tmp_path / "out"
    assert main(["run", "--quick", "--preset", "tiny", "--name", "é" * 101, "--output-dir", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "202 bytes" in err[0] and not out.exists()


@pytest.mark.parametrize("key, value", [("design", {"budget": "12"}), ("design", {"budget": 12, "optimum_ci": 0.5}),
                                        ("validate", {"scale": {"model.d_model": 64}, "lrs": 10 ** 9}),
                                        ("validate", {"scale": "wide", "lrs": 4})])
def test_a_scaling_design_or_validation_scale_edited_in_config_json_is_one_line(tmp_path, cache_dir, key, value):
    """The stored study's [scaling] budget/optimum_ci and validation scale are checked on every read, as their
    TOML was: a budget of "12" was a TypeError in the design round, validate_lrs = 10**9 a list that size."""
    from moe_ablate.errors import UserError
    from moe_ablate.studies.kinds import scaling

    cfg = tmp_path / "s.toml"
    cfg.write_text(kill_resume.scaling_toml(2, str(cache_dir)))
    study = scaling.make_study(str(cfg))
    study.params[key] = value
    first = (lambda: scaling.design_round(study, [])) if key == "design" else (
        lambda: scaling.validation_experiments(study, [], print))
    for read in (first, lambda: scaling.planned_follow_on(study)):  # the round that adds runs, and --dry-run
        with pytest.raises(UserError, match="is not what this tool wrote"):
            read()
