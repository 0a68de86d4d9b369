"""Text sources named by one string: ``builtin``, a local file or folder, or ``hf:NAME[:CONFIG]``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import UserError
from .corpus import builtin_document

FILE_KINDS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # config.DATA_FILE_SUFFIXES
HUB_CHECK_TIMEOUT_S = 3.0


def local_files(source: str) -> list[Path]:
    p = Path(source)
    if not p.exists():
        raise UserError(f"data path does not exist: {source}")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FILE_KINDS)
        if not files:
            raise UserError(f"no .txt, .jsonl or .parquet files in folder {source}")
        return files
    if p.suffix.lower() not in FILE_KINDS:
        raise UserError(f"unsupported data file type {p.suffix!r}: use .txt, .jsonl or .parquet")
    if not p.is_file():  # a FIFO, socket or device would block or never end
        raise UserError(f"data path is not a regular file: {source}")
    if not os.access(p, os.R_OK):
        raise UserError(f"data file is not readable: {source}")
    return [p]


# The seeds' caps, for the hub corpus they described (cosmopedia): a user's own files are read whole.
HUB_DEFAULTS = {"num_documents": 3000, "max_doc_chars": 3000, "max_tokens": 1_000_000}
BATCH = 1000  # documents per read / tokenisation batch


@dataclass(frozen=True)
class Caps:
    """What is read of a source. None = everything. Applied in this order: documents, characters per
    document (the rest of a longer document is dropped), tokens (train and val each keep their share)."""

    num_documents: int | None
    max_doc_chars: int | None
    max_tokens: int | None


def caps_for(cfg: DataConfig) -> Caps:
    if cfg.source.startswith("hf:"):
        return Caps(cfg.num_documents or HUB_DEFAULTS["num_documents"],
                    cfg.max_doc_chars or HUB_DEFAULTS["max_doc_chars"], cfg.max_tokens or HUB_DEFAULTS["max_tokens"])
    if cfg.source == "builtin":  # a generator of builtin_documents documents (a num_documents cap may cut it)
        n = min(cfg.num_documents or cfg.builtin_documents, cfg.builtin_documents)
        return Caps(n, cfg.max_doc_chars or None, cfg.max_tokens or None)
    return Caps(cfg.num_documents or None, cfg.max_doc_chars or None, cfg.max_tokens or None)  # 0 = no cap


def source_identity(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the source's *content* (the token cache key and the study's data identity)."""
    if cfg.source == "builtin":
        return {"builtin_seed": cfg.seed}
    if cfg.source.startswith("hf:"):
        return {"hub": cfg.source}
    from .cache import cache_root
    from .hashing import content_sha256

    files = local_files(cfg.source)
    return {"files": len(files), "sha256": content_sha256(files, cache_root(cfg.cache_dir))}


def content_unchanged(cfg: DataConfig, identity: dict[str, Any]) -> bool:
    """Whether the local files still hold the content ``identity`` names, hashed again from their bytes (no
    shortcut). The stamps of ``file_stats`` miss a same-size rewrite within one timestamp tick of a coarse
    filesystem; the bytes do not."""
    if "sha256" not in identity:
        return True
    from .cache import cache_root
    from .hashing import content_sha256

    try:
        return content_sha256(local_files(cfg.source), cache_root(cfg.cache_dir), shortcut=False) == identity["sha256"]
    except (UserError, OSError):  # gone or unreadable now: not the content that was read
        return False


def file_stats(cfg: DataConfig) -> dict[str, tuple[int, int, int, int]] | None:
    """(size, mtime, ctime, inode) of each local data file (None for builtin and hub sources): compared before
    and after a preparation, so that a file edited while it is read never leaves a cache entry filed under the
    content it held before."""
    if cfg.source == "builtin" or cfg.source.startswith("hf:"):
        return None
    out = {}
    for f in local_files(cfg.source):
        st = f.stat()
        out[str(f)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return out


def skipped_in_folder(source: str) -> list[Path]:
    """What a data folder holds besides the files read: other file types, and special files (a FIFO, a socket)
    with a data suffix. Said and recorded by ``prepare_data``, never dropped silently."""
    p = Path(source)
    if not p.is_dir():
        return []
    return sorted(f for f in p.rglob("*") if not f.is_dir() and not (f.is_file() and f.suffix.lower() in FILE_KINDS))


def iter_documents(cfg: DataConfig, caps: Caps, stats: dict[str, int] | None = None) -> Iterator[list[str]]:
    """The source's non-empty documents, in order, in batches; at most ``caps.num_documents``.
    Read errors become one-line UserErrors naming the file (never an OSError about the cache)."""
    n = 0
    for batch in _raw_batches(cfg, caps.num_documents, stats if stats is not None else {}):
        docs = [d for d in batch if d and not d.isspace()]  # (no strip(): it would copy a 200 MB document)
        if caps.num_documents is not None:
            docs = docs[: caps.num_documents - n]
        n += len(docs)
        if docs:
            yield docs
        if caps.num_documents is not None and n >= caps.num_documents:
            return


def _raw_batches(cfg: DataConfig, limit: int | None, stats: dict[str, int]) -> Iterator[list[str]]:
    if cfg.source == "builtin":
        count = limit or cfg.builtin_documents
        for start in range(0, count, BATCH):
            yield [builtin_document(cfg.seed, i) for i in range(start, min(count, start + BATCH))]
    elif cfg.source.startswith("hf:"):
        yield from _hub_batches(cfg.source)
    else:
        by_kind: dict[str, list[Path]] = {}
        for f in local_files(cfg.source):
            by_kind.setdefault(FILE_KINDS[f.suffix.lower()], []).append(f)
        for files in by_kind.values():  # one streaming dataset per file type: its setup is paid once
            try:
                yield from _file_batches(files, cfg.txt_split, stats)
            except UserError:
                if len(files) == 1:
                    raise
                for f in files:  # name the file that failed (only on this error path)
                    for _ in _file_batches([f], cfg.txt_split, {}):
                        pass
                raise


TEXT_CHUNK = 8 << 20  # characters read at a time from a .txt file


def _text_documents(path: Path, txt_split: str) -> Iterator[str]:
    """A .txt file's documents, exactly as ``datasets``' text builder splits them (universal newlines;
    paragraphs split on blank lines, lines without their newline, or the whole file), read in chunks.
    Written here because that builder holds one paragraph several times over (the read buffer, its
    concatenation, the Arrow array and the Python string): a 200 MB single-line file then needs over
    2 GB. This reader holds a document once, plus the pieces it is joined from."""
    with open(path, encoding="utf-8") as f:
        if txt_split == "file":
            yield f.read()
            return
        if txt_split == "line":
            for line in f:
                yield line.rstrip("\n")
            return
        parts: list[str] = []

        def document() -> str:  # joined and released before it is yielded: one copy alive, not two
            doc = "".join(parts)
            parts.clear()
            return doc

        while chunk := f.read(TEXT_CHUNK):
            start = 0
            if parts and parts[-1].endswith("\n") and chunk.startswith("\n"):  # a separator across chunks
                parts[-1] = parts[-1][:-1]
                yield document()
                start = 1
            while (i := chunk.find("\n\n", start)) >= 0:
                parts.append(chunk[start:i])
                yield document()
                start = i + 2
            parts.append(chunk[start:])
            del chunk
        if parts:
            yield document()


def _file_batches(files: list[Path], txt_split: str, stats: dict[str, int]) -> Iterator[list[str]]:
    """Files of one type in streaming mode (bounded memory whatever their size): .txt with
    ``_text_documents`` (one document per paragraph, per line, or the whole file), .jsonl/.parquet
    through ``datasets``."""
    if FILE_KINDS[files[0].suffix.lower()] == "text":
        for path in files:
            try:
                batch: list[str] = []
                for doc in _text_documents(path, txt_split):
                    batch.append(doc)
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
                if batch:
                    yield batch
            except UnicodeDecodeError:
                raise UserError(f"cannot read {path}: not UTF-8 text (a binary file?)") from None
            except OSError as e:
                raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        return
    import datasets
    from datasets.utils import logging as ds_logging

    datasets.disable_progress_bars()
    level = ds_logging.get_verbosity()
    ds_logging.set_verbosity(ds_logging.CRITICAL)  # a read error is our one line, not their log line too
    try:
        yield from _datasets_batches(datasets, files, txt_split, stats)
    finally:
        ds_logging.set_verbosity(level)


def _datasets_batches(datasets, files: list[Path], txt_split: str, stats: dict[str, int]) -> Iterator[list[str]]:
    kind = FILE_KINDS[files[0].suffix.lower()]
    kwargs = {"sample_by": {"paragraph": "paragraph", "line": "line", "file": "document"}[txt_split]} \
        if kind == "text" else {}
    f = files[0] if len(files) == 1 else f"one of {len(files)} {files[0].suffix} files in {files[0].parent}"
    try:
        ds = datasets.load_dataset(kind, data_files=[str(x) for x in files], split="train", streaming=True,
                                   **kwargs)
        for batch in ds.iter(batch_size=BATCH):
            if "text" not in batch:
                raise UserError(f"{f} has no 'text' field (fields: {', '.join(batch) or 'none'})")
            texts = batch["text"]
            if any(not isinstance(t, str) for t in texts if t is not None):
                raise UserError(f"{f}: the 'text' field must hold strings")
            stats["rows_without_text"] = stats.get("rows_without_text", 0) + sum(t is None for t in texts)
            yield [t for t in texts if t]
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"cannot read {f}: not UTF-8 text (a binary file?)") from None
    except Exception as e:  # datasets/pyarrow raise many types for unreadable or malformed files
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"cannot read {f}: {type(e).__name__}: {first}") from None


def hub_reachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the hub? Run in a thread so slow DNS cannot hang us."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    ok = [False]

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return ok[0]


def ensure_hub(what: str, offline_hint: str = "use a local source or 'builtin'") -> None:
    """Fail fast and clearly when the hub cannot be reached (instead of a minute of retries).

    When unreachable we also set the HF offline switches, so anything already in the local
    Hugging Face cache still loads and nothing else waits on the network.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        raise UserError(f"cannot reach the Hugging Face hub for {what} (offline); {offline_hint}")


def _hub_batches(source: str) -> Iterator[list[str]]:
    name, _, config = source[3:].partition(":")
    ensure_hub(source)
    import datasets

    try:
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
        for batch in ds.iter(batch_size=BATCH):
            yield batch["text"]
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"cannot load {source}: {type(e).__name__}: {first}") from None
