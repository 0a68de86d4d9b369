import json
import time

import pytest

from moe_ablate.config import DataConfig
from moe_ablate.data import prepare_data
from moe_ablate.data.corpus import builtin_document
from moe_ablate.errors import UserError


def test_builtin_corpus_is_deterministic_and_varied():
    assert builtin_document(1, 5) == builtin_document(1, 5)
    assert builtin_document(1, 5) != builtin_document(1, 6)
    assert builtin_document(1, 5) != builtin_document(2, 5)


def test_train_and_validation_ranges_are_disjoint(small_data):
    p = small_data.provenance
    assert p["train_range"][1] <= p["val_range"][0]  # adjacent unless a token cap dropped the tail of train
    assert len(small_data.train) + len(small_data.val) == p["num_tokens"]
    # the split sits on a document boundary: the last training token is EOS
    assert small_data.train[-1] == small_data.tokenizer.eos_id
    # every validation window comes from the validation range only
    seq = 32
    val_windows = {tuple(x.tolist()) for xb, _ in small_data.val_batches(4, seq, 5) for x in xb}
    train_windows = {tuple(small_data.train[i:i + seq].tolist()) for i in range(len(small_data.train) - seq)}
    assert val_windows and not (val_windows & train_windows)


def test_batches_are_a_function_of_step(small_data):
    a = small_data.train_batch(0, 3, 0, 4, 32)
    b = small_data.train_batch(0, 3, 0, 4, 32)
    c = small_data.train_batch(0, 4, 0, 4, 32)
    assert (a[0] == b[0]).all() and not (a[0] == c[0]).all()
    assert (a[0][:, 1:] == a[1][:, :-1]).all()  # targets are inputs shifted by one


def test_token_cache_is_reused(small_cfg, monkeypatch):
    import moe_ablate.data.tokens as tokens

    def no_loading(*a, **k):
        raise AssertionError("a cached source must not be read or tokenised again")

    monkeypatch.setattr(tokens, "iter_documents", no_loading)
    data = prepare_data(small_cfg.data, log=lambda m: None)
    assert data.provenance["from_cache"]
    assert data.provenance["tokenizer_sha256"] == data.tokenizer.sha256


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet", "folder"])
def test_local_file_sources(tmp_path, kind):
    docs = [f"document number {i} talks about apples and pears. " * 20 for i in range(60)]
    src = tmp_path / "src"
    src.mkdir()
    if kind in ("txt", "folder"):
        (src / "a.txt").write_text("\n\n".join(docs[:30]))
    if kind in ("jsonl", "folder"):
        (src / "b.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs[30:]))
    if kind == "parquet":
        import pandas as pd
        pd.DataFrame({"text": docs}).to_parquet(src / "c.parquet")
    path = src if kind == "folder" else next(src.iterdir())
    cfg = DataConfig(source=str(path), cache_dir=str(tmp_path / "cache"), vocab_size=300)
    data = prepare_data(cfg, log=lambda m: None)
    assert data.provenance["num_documents"] == (60 if kind in ("folder", "parquet") else 30)
    assert data.provenance["source"] == str(path)


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare_data(DataConfig(source=str(tmp_path / "nope.txt"), cache_dir=str(tmp_path)))


def test_hub_source_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub"):
        prepare_data(DataConfig(source="hf:HuggingFaceTB/smollm-corpus:cosmopedia-v2", cache_dir=str(tmp_path)))
    assert time.perf_counter() - t0 < 5


def test_hub_tokenizer_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub for tokenizer"):
        prepare_data(DataConfig(tokenizer="hf:HuggingFaceTB/SmolLM-135M", num_documents=20,
                                cache_dir=str(tmp_path)))
    assert time.perf_counter() - t0 < 5


def test_a_tokenizer_keeps_its_eos_id_through_save_and_load():
    """Hub tokenizers name EOS differently (SmolLM: id 0); it must not be guessed on reload."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from moe_ablate.data.tokenizer import LoadedTokenizer

    raw = Tokenizer(models.WordLevel({"</s>": 0, "a": 1, "b": 2, "[UNK]": 3}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = LoadedTokenizer(raw, 0, "hf:example/tok", "x")
    again = LoadedTokenizer.from_dict(tok.to_dict())
    assert again.eos_id == 0 and again.spec == "hf:example/tok" and again.encode("a b") == [1, 2]


def test_a_folder_says_what_it_did_not_read(tmp_path):
    """Rows without 'text', files of other types and special files are said and recorded, never dropped silently;
    an upper-case suffix is still the file type it names."""
    import os

    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = [json.dumps({"text": f"Document number {i} talks about cats and dogs at some length. " * 4})
            for i in range(120)]
    (folder / "a.jsonl").write_text("\n".join(rows + [json.dumps({"body": "no text"}), json.dumps({"text": None})]))
    (folder / "B.TXT").write_text("An upper-case file that is still text. " * 40)
    (folder / "notes.md").write_text("# not data")
    os.mkfifo(folder / "pipe.txt")
    said = []
    data = prepare_data(DataConfig(source=str(folder), cache_dir=str(tmp_path / "cache"), vocab_size=300),
                        log=said.append, progress=False)
    dropped = data.provenance["dropped"]
    assert "2 row(s) without a 'text' value" in dropped["rows_without_text"]
    assert "2 file(s) in the folder were not read" in dropped["files"]
    assert "notes.md" in dropped["files"] and "pipe.txt" in dropped["files"]
    assert data.provenance["num_documents"] == 121  # 120 rows + the upper-case .TXT file's one paragraph
    assert any("without a 'text' value" in m for m in said) and any("were not read" in m for m in said)


@pytest.mark.parametrize("nth_write", [1, 2, 3])  # the content-hash index, the tokenizer, the token file
def test_a_killed_data_preparation_leaves_temporaries_the_next_one_removes(tmp_path, nth_write):
    """A real SIGKILL between a cache file's temporary and its rename; the next preparation removes what the dead
    writer left (once it is old enough not to be a live writer's on another machine) and keeps a live one's."""
    import os
    import subprocess
    import sys

    from moe_ablate.utils import TMP_SUFFIX

    src = tmp_path / "corpus.txt"
    src.write_text("\n\n".join(f"Paragraph {i} about a cat, a dog and a bird that met one day." for i in range(400)))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "moe_ablate", "data", "prepare", "--data", str(src), "--vocab-size", "300",
           "--cache-dir", str(cache)]
    killed = subprocess.run(cmd, env={**os.environ, "MOE_ABLATE_KILL_AT": f"write:before_rename:{nth_write}"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9
    left = list(cache.rglob(f".*{TMP_SUFFIX}"))
    assert left  # the dead writer's temporary
    live = left[0].parent / f".other.{os.getpid()}.abcdef{TMP_SUFFIX}"  # a writer that still runs (this process)
    live.write_text("x")
    for p in [*left, live]:
        os.utime(p, (p.stat().st_mtime - 3600, p.stat().st_mtime - 3600))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-1500:]
    assert f"removed {len(left)} temporary file(s) a killed data preparation left" in again.stderr
    assert list(cache.rglob(f".*{TMP_SUFFIX}")) == [live]


def test_a_file_edited_while_it_is_tokenised_leaves_no_cache_entry(tmp_path, monkeypatch):
    """The edit lands between the content hash and the end of tokenisation (here: right after the tokens are
    written, a real write to the file). Nothing is cached under the old content's key, so restoring the
    original later tokenises it afresh instead of serving tokens of text the file never held."""
    from moe_ablate.data import tokens

    src = tmp_path / "corpus.txt"
    original = "\n\n".join(f"Paragraph {i}: the cat and the dog walked to the river and back." for i in range(300))
    src.write_text(original)
    cfg = DataConfig(source=str(src), cache_dir=str(tmp_path / "cache"), vocab_size=300)
    real = tokens._tokenize_to

    def then_edit(*args, **kw):
        out = real(*args, **kw)
        src.write_text(original + "\n\nA paragraph added while the file was being read.")
        return out

    monkeypatch.setattr(tokens, "_tokenize_to", then_edit)
    with pytest.raises(UserError, match="changed while it was being read; nothing was cached"):
        prepare_data(cfg, log=lambda m: None, progress=False)
    assert not list((tmp_path / "cache" / "tokens").glob("*.json"))
    monkeypatch.setattr(tokens, "_tokenize_to", real)
    src.write_text(original)
    fresh = prepare_data(cfg, log=lambda m: None, progress=False)
    assert fresh.provenance["from_cache"] is False
    clean = prepare_data(DataConfig(source=str(src), cache_dir=str(tmp_path / "other"), vocab_size=300),
                         log=lambda m: None, progress=False)
    assert list(fresh.train) == list(clean.train) and list(fresh.val) == list(clean.val)


def test_a_same_size_rewrite_the_stamps_miss_is_caught_by_the_bytes(tmp_path, monkeypatch):
    """On a filesystem whose timestamps tick coarsely, a same-size rewrite during tokenisation keeps every
    stamp (size, mtime, ctime, inode) equal. The content is hashed again from its bytes at the end, so the
    tokens of the changed text are never filed under the original content's key."""
    from moe_ablate.data import sources, tokens

    src = tmp_path / "corpus.txt"
    original = "\n\n".join(f"Paragraph {i}: the cat and the dog walked to the river and back." for i in range(300))
    src.write_text(original)
    cfg = DataConfig(source=str(src), cache_dir=str(tmp_path / "cache"), vocab_size=300)
    monkeypatch.setattr(tokens, "file_stats", lambda cfg: {"blind": (0, 0, 0, 0)})  # a coarse tick: no stamp moves
    real = tokens._tokenize_to

    def then_rewrite(*args, **kw):
        out = real(*args, **kw)
        src.write_text(original.replace("cat", "owl"))  # same size
        return out

    monkeypatch.setattr(tokens, "_tokenize_to", then_rewrite)
    with pytest.raises(UserError, match="changed while it was being read; nothing was cached"):
        prepare_data(cfg, log=lambda m: None, progress=False)
    assert not list((tmp_path / "cache" / "tokens").glob("*.json"))
    assert sources.content_unchanged(cfg, {"files": 1, "sha256": "0" * 64}) is False
