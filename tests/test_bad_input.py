"""Bad input never costs a result or a traceback: one regression test per class the careless-user review
found (wrong results with exit 0, the user's files touched, tracebacks, resources, exit codes)."""

import json
import os
import subprocess
import sys

import pytest

from moe_ablate.cli import main
from moe_ablate.data.tokens import chunks
from moe_ablate.errors import UserError
from moe_ablate.studies.kinds import grid, lr_search

from .helpers import write_study

TINY = ["--preset", "tiny", "--steps", "2", "--eval-every", "2", "--eval-batches", "1", "--batch-size", "2",
        "--seq-len", "16", "--num-documents", "300", "--max-tokens", "60000", "--vocab-size", "512",
        "--no-progress"]
STUDY = TINY + ["--confirm", "0"]


def one_line(capsys, code, expected_code=2):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [e for e in err if e.startswith("moe-ablate: error:")]
    assert code == expected_code and len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def cli(*args):
    try:
        return main(list(args))
    except SystemExit as e:  # argparse
        return e.code


def toml(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---------------------------------------------------------------- wrong results with exit 0
def test_close_lrs_get_distinct_ids_and_a_repeated_one_is_refused():
    study = lr_search.make_study(9, lrs=[0.001, 0.0010001], preset="tiny")
    assert [e.id for e in study.experiments] == ["lr_0.001", "lr_0.0010001"]
    with pytest.raises(UserError, match="lists 0.001 twice"):
        lr_search.make_study(9, lrs=[0.001, 0.001], preset="tiny")


@pytest.mark.parametrize("text, message", [
    ('[grid.train]\nmuon_lr = [0.1, 0.1]\n', "lists 0.1 twice"),
    ('[grid.train]\nmuon_lr = [0.1, 1e-1]\n', "lists 0.1 twice"),
    ('[grid.train]\nseed = [1, 2]\n', "cannot be an axis: seeds are repeats"),
    ('[grdi.train]\nmuon_lr = [0.1, 0.3]\n', "unknown section 'grdi' (did you mean 'grid'?)"),
    ('[grid.trian]\nmuon_lr = [0.1, 0.3]\n', "unknown section [grid.trian] (did you mean 'train'?)"),
    ('', "defines no axes"),
    ('[study]\nmetric = "val_accuracy"\n[grid.train]\nmuon_lr = [0.1]\n', "is higher-is-better"),
    ('[study]\nmetric = "val_los"\n[grid.train]\nmuon_lr = [0.1]\n', "unknown metric 'val_los' (did you mean"),
    ('[grid.train]\nmuon_lr = [0.1, nan]\n', "non-finite value nan"),
    ('[grid.train]\nmuon_lr = [0.1, inf]\n', "non-finite value inf"),
    ('study = 5\n', "study: input should be a valid dictionary"),
    ('[[grid]]\nmuon_lr = 1\n', "grid: input should be a valid dictionary"),
    ('[grid.train]\nmuon_lr = ["fast"]\n', "train.muon_lr must be float"),
    ('[study]\nseeds = 0\n[grid.train]\nmuon_lr = [0.1]\n', "study.seeds: input should be greater than 0"),
    ('[study]\ndescription = 3\n[grid.train]\nmuon_lr = [0.1]\n', "study.description: input should be a valid string"),
    ('[study]\nname = "../../x"\n[grid.train]\nmuon_lr = [0.1]\n', "must be a plain folder name"),
    ('[grid.train]\nmuon_lrr = [0.1]\n', "unknown setting 'train.muon_lrr' (did you mean 'train.muon_lr'?)"),
])
def test_a_bad_study_file_is_one_line_before_anything_is_written(text, message, tmp_path, capsys):
    path = toml(tmp_path, text)
    code = cli("run", "--config", path, "--output-dir", str(tmp_path / "out"), *STUDY)
    assert message in one_line(capsys, code)
    assert not (tmp_path / "out").exists()


def test_a_grid_too_large_to_enumerate_is_sampled_not_enumerated():
    axes = "\n".join(f"{k} = {[round(0.01 * (i + 1), 3) for i in range(10)]}" for k in
                     ("muon_lr", "adamw_lr_ratio", "weight_decay", "warmup_frac", "min_lr_frac", "grad_clip",
                      "momentum"))
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(f"[study]\npreset = \"tiny\"\n[grid.train]\n{axes}\n")
    with pytest.raises(UserError, match="10,000,000 configurations; run a subset with --max-experiments"):
        grid.make_study(f.name)
    study = grid.make_study(f.name, max_experiments=12)
    lrs = [e.overrides["train.muon_lr"] for e in study.experiments]
    assert len(study.experiments) == 12 and len(set(lrs)) == 10  # every value of the axis appears
    assert len({e.id for e in study.experiments}) == 12
    os.unlink(f.name)


# ---------------------------------------------------------------- the user's files
def test_resume_removes_only_the_tools_own_temporaries(tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "r", "--no-progress"]) == 0
    d = tmp_path / "r"
    (d / ".my_notes.tmp").write_text("mine")
    (d / "experiments" / ".exp_000.json.abc123.moe-ablate.tmp").write_text("left by a killed run")
    assert main(["run", "--resume", str(d), "--no-progress"]) == 0
    assert (d / ".my_notes.tmp").read_text() == "mine"
    assert not (d / "experiments" / ".exp_000.json.abc123.moe-ablate.tmp").exists()


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", ""])
def test_a_name_cannot_leave_the_output_folder(name, tmp_path, capsys):
    out = tmp_path / "a" / "b"
    code = cli("run", "--quick", "--name", name, "--output-dir", str(out), *STUDY)
    assert "--name must be a plain folder name" in one_line(capsys, code)
    assert not (tmp_path / "x").exists() and not out.exists()


def test_a_fifo_named_txt_is_refused_not_read_forever(tmp_path, capsys):
    fifo = tmp_path / "data.txt"
    os.mkfifo(fifo)
    code = cli("train", "--data", str(fifo), "--output-dir", str(tmp_path / "o"), *TINY)
    assert "is not a regular file" in one_line(capsys, code)


# ---------------------------------------------------------------- HellaSwag files
GOOD = {"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["w", "x", "y", "z"], "label": 1}


@pytest.mark.parametrize("change, message", [
    ({"label": 4}, "'label' must be an integer index of the 4 endings, got 4"),
    ({"label": -1}, "got -1"),
    ({"label": 1.5}, "got 1.5"),
    ({"label": True}, "got True"),
    ({"endings": "wxyz"}, "'endings' must be a list of at least two texts"),
    ({"endings": ["only one"]}, "'endings' must be a list of at least two texts"),
    ({"endings": [1, 2, 3, 4]}, "'endings' must be a list of at least two texts"),
    ({"ctx_a": None}, "'ctx_a' must be text"),
])
def test_a_bad_hellaswag_item_is_refused_with_its_number(change, message, tmp_path):
    from moe_ablate.hellaswag import load_items

    f = tmp_path / "hs.jsonl"
    f.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, **change}) + "\n")
    with pytest.raises(UserError, match="item 2 is not in the HellaSwag format") as e:
        load_items(str(f))
    assert message in str(e.value)
    f.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(UserError, match="not UTF-8"):
        load_items(str(f))


# ---------------------------------------------------------------- resources
@pytest.mark.parametrize("flag, value, what", [("--vocab-size", "1000000000", "vocabulary 1000000000"),
                                               ("--num-experts", "100000", "100000 experts"),
                                               ("--batch-size", "100000000", "batch 100000000")])
def test_a_run_that_cannot_fit_is_one_line_before_anything_is_built(flag, value, what, tmp_path, capsys):
    code = cli("train", *TINY, flag, value, "--output-dir", str(tmp_path / "o"))
    line = one_line(capsys, code)
    assert "does not fit on cpu" in line and what in line and "GiB is free" in line
    assert not (tmp_path / "o").exists()


def test_long_documents_reach_the_tokenizer_in_pieces_that_tokenise_the_same():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = " ".join(f"word{i % 97} and  more" for i in range(3000))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    pieces = list(chunks(text, size=1000))
    assert len(pieces) > 20 and all(len(p) <= 1000 for p, _, _ in pieces) and "".join(p for p, _, _ in pieces) == text
    assert not any(hard for _, hard, _ in pieces) and [last for _, _, last in pieces].count(True) == 1
    assert sum((tok.encode(p).ids for p, _, _ in pieces), []) == tok.encode(text).ids  # cut before a space
    hard = list(chunks("x" * 2500, size=1000))
    assert [len(p) for p, _, _ in hard] == [1000, 1000, 500] and [h for _, h, _ in hard] == [True, True, False]
    from moe_ablate.data.tokens import HARD_CUT_CHARS
    assert max(len(p) for p, _, _ in chunks("y" * (3 * HARD_CUT_CHARS), size=1 << 20)) == HARD_CUT_CHARS


# ---------------------------------------------------------------- exit codes and messages that tell the truth
def test_a_study_whose_every_experiment_failed_exits_1_naming_the_cause(tmp_path, cache_dir, capsys, monkeypatch):
    import moe_ablate.training

    def broken(*a, **k):
        raise RuntimeError("a bug in the model")

    monkeypatch.setattr(moe_ablate.training, "train", broken)
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.01]")
    code = cli("run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "f", "--no-progress")
    line = one_line(capsys, code, expected_code=1)
    assert "every experiment failed (2 of 2: error: RuntimeError: a bug in the model)" in line
    assert (tmp_path / "f" / "report.md").exists()  # the study's files are written all the same


def test_min_steps_beyond_the_run_is_refused(tmp_path, capsys):
    code = cli("run", "--quick", "--halving", "2", "--min-steps", "5", "--output-dir", str(tmp_path / "o"), *STUDY)
    assert "--min-steps (5) must be below the steps of a run (2)" in one_line(capsys, code)
    assert not (tmp_path / "o").exists()


def test_halving_with_ray_is_refused_before_any_folder(tmp_path, capsys):
    code = cli("run", "--quick", "--halving", "2", "--executor", "ray", "--output-dir", str(tmp_path / "o"), *STUDY)
    one_line(capsys, code)
    assert not (tmp_path / "o").exists()


def test_flags_without_effect_say_so(tmp_path, capsys, monkeypatch):
    from moe_ablate.cli import build_parser
    from moe_ablate.cli.args import notes_on_unused_flags

    said = []
    # --device cpu: the note holds on any host, a CUDA one included (it used to assume a CPU-only machine)
    notes_on_unused_flags(build_parser().parse_args(["run", "--min-steps", "5", "--compile", "--device", "cpu"]),
                          said.append)
    notes_on_unused_flags(build_parser().parse_args(["run", "--resume", "d", "--name", "n"]), said.append)
    assert any("--min-steps has no effect without --halving" in s for s in said)
    assert any("--name has no effect with --resume" in s for s in said)
    assert any("--compile has no effect on CPU" in s for s in said)


def test_an_unwritable_output_folder_fails_before_training(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=False, capture_output=True)
    if os.access(ro, os.W_OK) and not os.path.ismount(ro):
        os.chmod(ro, 0o500)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        done = subprocess.run([sys.executable, "-m", "moe_ablate", "train", *TINY, "--output-dir", str(ro / "o")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and ("Read-only file system" in done.stderr or "Permission denied" in done.stderr)
        assert "step 2/2" not in done.stderr  # refused before training
    finally:
        subprocess.run(["umount", str(ro)], check=False, capture_output=True)


def test_resuming_a_study_with_another_kinds_command_names_the_right_one(tmp_path, cache_dir, capsys):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "g", "--no-progress"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "g").rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    for command in (["lr-search"], ["expert-search"], ["batch-seqlen"], ["train"]):
        code = cli(*command, "--resume", str(tmp_path / "g"))
        assert "is a grid study; resume it with `moe-ablate run --resume" in one_line(capsys, code)
    assert {p: p.read_bytes() for p in (tmp_path / "g").rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_lr_transfer_with_two_configurations_reports_instead_of_crashing(tmp_path, cache_dir):
    code = cli("run", "--config", "lr_transfer", "--quick", "--max-experiments", "2", "--output-dir", str(tmp_path),
               "--name", "t", "--cache-dir", str(cache_dir), *STUDY)
    assert code == 0 and (tmp_path / "t" / "report.md").exists()


@pytest.mark.parametrize("index", ["[1, 2]", '{"x": 3}', '{"x": {"stamp": 1}}', "not json"])
def test_a_damaged_hash_index_is_only_a_lost_shortcut(index, tmp_path):
    from moe_ablate.data.hashing import content_sha256, file_sha256

    f = tmp_path / "d.txt"
    f.write_text("some text")
    (tmp_path / "file_hashes.json").write_text(index)
    content_sha256([f], tmp_path)  # no exception, and the index is rebuilt
    assert json.loads((tmp_path / "file_hashes.json").read_text())[str(f.resolve())]["sha256"] == file_sha256(f)


@pytest.mark.parametrize("flag, name, content, said", [
    ("auto", "lr_recommendation.json", "[1, 2]", "damaged one(s) passed over"),
    ("auto", "lr_recommendation.json", '{"exp": 9, "best_learning_rate": "abc"}', "damaged one(s) passed over"),
    ("auto", "lr_recommendation.json", '{"exp": 9, "best_learning_rate": -1}', "damaged one(s) passed over"),
    ("scaling", "scaling_law.json", "[1]", "is damaged (not a scaling law's file)"),
    ("scaling", "scaling_law.json", '{"fits": {"lr": {"fitted": true, "coef": "x", "exponent": 1}}}',
     "is damaged (coef 'x'"),
    ("scaling", "scaling_law.json", '{"fits": {"lr": {"fitted": true, "coef": 1e400, "exponent": 1}}}',
     "is damaged"),
])
def test_a_damaged_recommendation_or_law_is_one_line_before_anything_trains(tmp_path, capsys, flag, name, content,
                                                                           said):
    folder = tmp_path / "out" / "old_study"
    folder.mkdir(parents=True)
    (folder / name).write_text(content)
    lr = "auto" if flag == "auto" else f"scaling:{folder}"
    assert main(["train", "--exp", "9", "--lr", lr, "--steps", "2", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old_study"]  # nothing started


@pytest.mark.parametrize("section, axis, said", [
    ("[grid.model]", "vocab_size = [256, 512]", "model.vocab_size cannot be a grid axis"),
    ("[grid.train]", 'amp = ["off", "bf16"]', "train.amp cannot be a grid axis on CPU"),
    ("[grid.train]", "compile = [false, true]", "train.compile cannot be a grid axis on CPU"),
])
def test_an_axis_that_cannot_take_effect_is_refused_before_anything_runs(tmp_path, cache_dir, capsys, section, axis,
                                                                         said):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]")
    text = cfg.read_text()
    cfg.write_text(text.replace(f"{section}\n", f"{section}\n{axis}\n") if section in text
                   else f"{text}\n{section}\n{axis}\n")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, said", [
    ('\n[scaling]\ntarget_preset = "tiny"\n', "[scaling] belongs to a scaling study"),
    ('\n[[strategy]]\nname = "x"\nbatch_size = 4\nseq_len = 32\n', "[[strategy]] belongs to a batch-seqlen study"),
])
def test_a_section_of_another_kind_in_a_grid_toml_is_refused_not_ignored(tmp_path, cache_dir, capsys, extra, said):
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.05]", extra=extra)
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hellaswag_on_a_checkpoint_whose_config_does_not_match_its_weights_is_one_line(tmp_path, cache_dir, capsys):
    import torch

    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--steps", "1", "--eval-every", "1", "--num-documents", "300",
                 "--vocab-size", "512", "--cache-dir", str(cache_dir), "--output-dir", str(out), "--device", "cpu",
                 "--no-progress"]) == 0
    ckpt = torch.load(out / "final_model.pt", weights_only=False)
    ckpt["config"]["model"]["d_model"] = 2 * ckpt["config"]["model"]["d_model"]
    torch.save(ckpt, tmp_path / "edited.pt")
    items = tmp_path / "hs.jsonl"
    items.write_text(json.dumps(GOOD) + "\n")
    capsys.readouterr()
    assert main(["hellaswag", "--checkpoint", str(tmp_path / "edited.pt"), "--data", str(items)]) == 2
    err = capsys.readouterr().err
    assert "its weights do not match its config (size mismatch" in err and len(err.strip().splitlines()) == 1
