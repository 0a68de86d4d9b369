"""A user's data used whole: .txt splitting, no silent caps, identity by content, epochs, a tokenizer
that never saw validation text, and one line for every bad file."""

import os
import subprocess
import time

import pytest

from moe_ablate.cli import main
from moe_ablate.config import DataConfig
from moe_ablate.data import prepare_data
from moe_ablate.training import train

from .conftest import small_config

QUIET = dict(log=lambda m: None, progress=False)
LINES = [f"line {i} says the {['red', 'green', 'blue'][i % 3]} fox jumped over {i % 7} dogs." for i in range(400)]


def prep(path, tmp_path, **kw):
    return prepare_data(DataConfig(source=str(path), cache_dir=str(tmp_path / "cache"), vocab_size=300, **kw), **QUIET)


@pytest.mark.parametrize("split, documents", [("line", 400), ("paragraph", 1), ("file", 1)])
def test_one_document_per_line_under_each_txt_split(tmp_path, split, documents):
    f = tmp_path / "lines.txt"
    f.write_text("\n".join(LINES) + "\n")
    p = prep(f, tmp_path, txt_split=split).provenance
    assert p["num_documents"] == documents
    text = sum(len(x) for x in LINES)  # every character is read (plus the newlines inside one document)
    if split == "line":
        assert p["num_characters"] == text
    else:
        assert text + len(LINES) - 1 <= p["num_characters"] <= text + len(LINES)
    assert p["train_tokens"] > 0 and p["val_tokens"] > 0
    if documents == 1:  # a single document is cut inside, at a position, instead of failing
        assert "inside document 0" in p["split"]
    assert not p["dropped"]


def test_a_single_long_document_splits_into_disjoint_ranges(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text(" ".join(LINES))
    data = prep(f, tmp_path)
    p = data.provenance
    assert p["num_documents"] == 1 and p["train_range"][1] == p["val_range"][0]
    assert 0.05 < p["val_tokens"] / p["num_tokens"] < 0.15


def test_no_silent_caps_on_local_files(tmp_path):
    f = tmp_path / "lines.txt"
    docs = LINES * 10  # 4,000 documents, more than the seeds' 3,000 cap
    f.write_text("\n".join(docs))
    data = prep(f, tmp_path, txt_split="line")
    p = data.provenance
    assert p["num_documents"] == 4000 and not p["dropped"] and p["caps"] == {}
    tok = data.tokenizer
    expected = sum(len(tok.encode(d)) + 1 for d in docs)  # every token of every document, plus EOS each
    assert p["num_tokens"] == expected == len(data.train) + len(data.val)


def test_a_cap_that_drops_data_is_logged_and_recorded(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("\n".join(LINES))
    logged = []
    data = prepare_data(DataConfig(source=str(f), cache_dir=str(tmp_path / "c"), vocab_size=300, txt_split="line",
                                   num_documents=100, max_doc_chars=20), log=logged.append, progress=False)
    p = data.provenance
    assert p["num_documents"] == 100 and set(p["dropped"]) == {"documents", "characters"}
    assert any("num_documents cap" in m for m in logged) and any("max_doc_chars=20" in m for m in logged)


def test_a_same_length_rewrite_with_the_same_mtime_invalidates_the_cache(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("\n\n".join(LINES))
    first = prep(f, tmp_path)
    st = os.stat(f)
    f.write_text("\n\n".join(x.replace("fox", "cat") for x in LINES))  # same length, other text
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p / rsync -t would leave it
    assert os.stat(f).st_size == st.st_size
    second = prep(f, tmp_path)
    assert not second.provenance["from_cache"]
    assert second.provenance["source_identity"]["sha256"] != first.provenance["source_identity"]["sha256"]
    assert prep(f, tmp_path).provenance["from_cache"]  # unchanged since: the cache is used


def test_cp_p_over_the_file_is_rehashed_though_size_and_mtime_match(tmp_path, monkeypatch):
    """``cp -p new old`` rewrites old in place with text of the same length and restores the mtime; only the
    ctime moves. The racy-second guard is switched off so that the stamp alone has to catch it."""
    from moe_ablate.data import hashing

    monkeypatch.setattr(hashing, "RACY_SECONDS", 0.0)
    hashed = []
    real = hashing.file_sha256
    monkeypatch.setattr(hashing, "file_sha256", lambda p: hashed.append(p) or real(p))
    old, new = tmp_path / "data.txt", tmp_path / "new.txt"
    past = time.time_ns() - 3600 * 10**9
    for f, text in ((old, "\n\n".join(LINES)), (new, "\n\n".join(x.replace("fox", "cat") for x in LINES))):
        f.write_text(text)
        os.utime(f, ns=(past, past))
    first = hashing.content_sha256([old], tmp_path)
    assert hashing.content_sha256([old], tmp_path) == first and len(hashed) == 1  # the shortcut serves it
    before = os.stat(old)
    subprocess.run(["cp", "-p", str(new), str(old)], check=True)
    after = os.stat(old)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    second = hashing.content_sha256([old], tmp_path)
    assert len(hashed) == 2 and second != first
    assert hashing.content_sha256([old], tmp_path) == second and len(hashed) == 2  # and the shortcut again


def test_resume_with_changed_data_content_is_refused(tmp_path, capsys):
    f = tmp_path / "data.txt"
    f.write_text("\n\n".join(LINES))
    args = ["run", "--config", "lr_ablation", "--quick", "--preset", "tiny", "--data", str(f), "--vocab-size", "300",
            "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--seq-len", "16", "--eval-batches", "1",
            "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path), "--name", "s", "--no-progress",
            "--confirm", "0"]
    assert main(args) == 0
    f.write_text("\n\n".join(x.replace("dogs", "cats") for x in LINES))
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "s").rglob("*"))
    assert main(["run", "--resume", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its data changed since it started" in err[-1]
    assert sorted(p.name for p in (tmp_path / "s").rglob("*")) == before


def test_epochs_are_counted_and_repetition_is_announced(cache_dir):
    cfg = small_config(cache_dir, **{"train.steps": 40, "train.batch_size": 8, "data.max_tokens": 8000})
    from moe_ablate.data import prepare_data as prep_data

    data = prep_data(cfg.data, log=lambda m: None)
    logged = []
    result, _ = train(cfg, data, log=logged.append, progress=False)
    assert result["epochs"] == pytest.approx(result["tokens_seen"] / len(data.train))
    assert result["epochs"] > 1
    assert any("warning" in m and "times" in m for m in logged)


def test_the_tokenizer_never_saw_validation_text(tmp_path):
    train_docs = [f"the blorptrain word appears here, doc {i}. " * 5 for i in range(180)]
    val_docs = [f"only zxqvjkwpval appears here, doc {i}. " * 5 for i in range(20)]
    f = tmp_path / "d.txt"
    f.write_text("\n\n".join(train_docs + val_docs))
    data = prep(f, tmp_path)
    tok = data.tokenizer
    assert len(tok.encode(" blorptrain")) <= 2  # frequent in training text: learned as (nearly) one token
    assert len(tok.encode(" zxqvjkwpval")) >= 5  # frequent only in validation: never merged
    assert "zxqvjkwpval" in data.tokenizer.tokenizer.decode(data.val[:400].tolist())


@pytest.mark.parametrize("name, content, message", [
    ("bin.txt", b"\xff\xfe\x00\x81" * 100, "not UTF-8 text"),
    ("empty.txt", b"", "has no text"),
    ("notext.jsonl", b'{"body": "x"}\n{"body": "y"}\n', "has no 'text' field"),
    ("broken.jsonl", b'{"text": "fine"}\n' * 50 + b'{"text": oops\n' + b'{"text": "fine"}\n' * 5, "cannot read"),
    ("folder", None, "no .txt, .jsonl or .parquet files"),
])
def test_bad_data_is_one_line_and_leaves_no_cache_entry(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
        (path / "notes.md").write_text("no text files here")
    else:
        path.write_bytes(content)
    cache = tmp_path / "cache"
    assert main(["data", "prepare", "--data", str(path), "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    tokens = cache / "tokens"
    assert not tokens.exists() or not list(tokens.iterdir())


def test_a_preset_never_caps_a_users_file(tmp_path):
    from moe_ablate.config import preset_config

    f = tmp_path / "lines.txt"
    f.write_text("\n".join(LINES * 5))  # 2,000 documents: more than the tiny preset's 1,500 built-in ones
    cfg = preset_config("tiny").data
    cfg.source, cfg.cache_dir, cfg.vocab_size, cfg.txt_split = str(f), str(tmp_path / "c"), 300, "line"
    p = prepare_data(cfg, **QUIET).provenance
    assert p["num_documents"] == 2000 and not p["dropped"]


def test_a_bad_file_in_a_folder_is_named(tmp_path, capsys):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("\n\n".join(LINES[:50]))
    (folder / "b.txt").write_bytes(b"\xff\xfe\x00\x81" * 100)
    (folder / "c.txt").write_text("\n\n".join(LINES[50:]))
    assert main(["data", "prepare", "--data", str(folder), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(folder / "b.txt") in err[0] and "not UTF-8" in err[0]
