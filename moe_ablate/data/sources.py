"""Text sources named by one string: ``builtin``, a local file or folder, or ``hf:NAME[:CONFIG]``."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..errors import UserError
from .corpus import builtin_documents

FILE_KINDS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # config.DATA_FILE_SUFFIXES
HUB_CHECK_TIMEOUT_S = 3.0


def local_files(source: str) -> list[Path]:
    p = Path(source)
    if not p.exists():
        raise UserError(f"data path does not exist: {source}")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FILE_KINDS)
        if not files:
            raise UserError(f"no .txt, .jsonl or .parquet files in folder {source}")
        return files
    if p.suffix not in FILE_KINDS:
        raise UserError(f"unsupported data file type {p.suffix!r}: use .txt, .jsonl or .parquet")
    if not os.access(p, os.R_OK):
        raise UserError(f"data file is not readable: {source}")
    return [p]


def source_fingerprint(source: str) -> Any:
    """What identifies the source's content for the token cache key."""
    if source == "builtin" or source.startswith("hf:"):
        return source
    return [(str(f.resolve()), f.stat().st_size, int(f.stat().st_mtime)) for f in local_files(source)]


def load_documents(source: str, num_documents: int, max_doc_chars: int, seed: int) -> list[str]:
    if source == "builtin":
        docs = builtin_documents(seed, num_documents)
    elif source.startswith("hf:"):
        docs = _load_hub(source, num_documents)
    else:
        docs = _load_files(source, num_documents)
    docs = [d[:max_doc_chars] for d in docs if d and d.strip()]
    if not docs:
        raise UserError(f"data source {source!r} has no text")
    return docs


def _load_files(source: str, num_documents: int) -> list[str]:
    import datasets

    datasets.disable_progress_bars()
    by_kind: dict[str, list[str]] = {}
    for f in local_files(source):
        by_kind.setdefault(FILE_KINDS[f.suffix], []).append(str(f))
    docs: list[str] = []
    for kind, files in by_kind.items():
        # .txt: one document per blank-line separated paragraph
        kwargs = {"sample_by": "paragraph"} if kind == "text" else {}
        try:
            ds = datasets.load_dataset(kind, data_files=files, split="train", **kwargs)
        except Exception as e:  # datasets raises many types for unreadable files
            raise UserError(f"cannot read {', '.join(files)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        if "text" not in ds.column_names:
            raise UserError(f"{', '.join(files)} has no 'text' field (columns: {', '.join(ds.column_names)})")
        docs.extend(ds.select(range(min(len(ds), num_documents - len(docs))))["text"])
        if len(docs) >= num_documents:
            break
    return docs


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


def ensure_hub(what: str) -> None:
    """Fail fast and clearly when the hub cannot be reached (instead of a minute of retries).

    When unreachable we also set the HF offline switches, so anything already in the local
    Hugging Face cache still loads and nothing else waits on the network.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        raise UserError(f"cannot reach the Hugging Face hub for {what} (offline); use a local source or 'builtin'")


def _load_hub(source: str, num_documents: int) -> list[str]:
    name, _, config = source[3:].partition(":")
    ensure_hub(source)
    import datasets

    try:
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
        docs = []
        for row in ds:
            docs.append(row["text"])
            if len(docs) >= num_documents:
                break
    except Exception as e:
        raise UserError(f"cannot load {source}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return docs
