"""Tokenise once, cache as a numpy array, split into disjoint train/validation ranges, batch.

The split is two contiguous token ranges cut at a document boundary: validation windows are
never shifted copies of training windows (the original scripts' random window split had ~99%
overlap). Training batch ``step`` is a pure function of (seed, step, micro-batch), so a resumed
run sees exactly the batches it would have seen, and the data position is just the step.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from ..errors import UserError
from ..utils import atomic_write, atomic_write_json
from .sources import load_documents, source_fingerprint
from .tokenizer import LoadedTokenizer, load_hub_tokenizer, train_bpe

CACHE_VERSION = 2  # 2: the cached tokenizer carries its EOS id


@dataclass
class TokenData:
    train: np.ndarray  # token ids of the training range
    val: np.ndarray  # token ids of the validation range (disjoint from train)
    tokenizer: LoadedTokenizer
    provenance: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def train_batch(self, seed: int, step: int, micro: int, batch_size: int, seq_len: int,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.train) - seq_len - 1
        if n <= 0:
            raise UserError(f"training split ({len(self.train)} tokens) is shorter than seq_len {seq_len}")
        rng = np.random.default_rng([seed, step, micro])
        starts = rng.integers(0, n, size=batch_size)
        return _windows(self.train, starts, seq_len, device)

    def val_batches(self, batch_size: int, seq_len: int, max_batches: int,
                    device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of non-overlapping validation windows (the same for every evaluation)."""
        n_windows = (len(self.val) - 1) // seq_len
        if n_windows < 1:
            raise UserError(f"validation split ({len(self.val)} tokens) is shorter than seq_len {seq_len}; "
                            "use more data or a larger val_fraction")
        starts = np.arange(min(n_windows, batch_size * max_batches)) * seq_len
        return [_windows(self.val, starts[i:i + batch_size], seq_len, device)
                for i in range(0, len(starts), batch_size)]


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    block = torch.from_numpy(tokens[idx].astype(np.int64))
    if str(device).startswith("cuda"):
        block = block.pin_memory().to(device, non_blocking=True)
    return block[:, :-1], block[:, 1:]


def _cache_key(cfg: DataConfig) -> str:
    key = {
        "v": CACHE_VERSION, "source": source_fingerprint(cfg.source), "tokenizer": cfg.tokenizer,
        "vocab": cfg.vocab_size if cfg.tokenizer == "bpe" else None, "docs": cfg.num_documents,
        "max_tokens": cfg.max_tokens, "max_doc_chars": cfg.max_doc_chars,
        "seed": cfg.seed if cfg.source == "builtin" else None,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def prepare_data(cfg: DataConfig, log=print) -> TokenData:
    """Load, tokenise and split the data named by ``cfg``, using the token cache when it can."""
    cache = Path(cfg.cache_dir) / "tokens"
    key = _cache_key(cfg)
    arr_path, meta_path, tok_path = cache / f"{key}.npy", cache / f"{key}.json", cache / f"{key}.tokenizer.json"
    if arr_path.exists() and meta_path.exists() and tok_path.exists():
        try:
            tokens = np.load(arr_path, mmap_mode="r")
            meta = json.loads(meta_path.read_text())
            tok = LoadedTokenizer.from_dict(json.loads(tok_path.read_text(encoding="utf-8")))
            return _split(tokens, tok, meta, cfg, cached=True)
        except (ValueError, OSError, KeyError):
            log(f"token cache {key} is unreadable; rebuilding it")

    t0 = time.perf_counter()
    docs = load_documents(cfg.source, cfg.num_documents, cfg.max_doc_chars, cfg.seed)
    docs_hash = hashlib.sha256("\x00".join(docs).encode()).hexdigest()
    if cfg.tokenizer == "bpe":
        tok = train_bpe(docs, cfg.vocab_size, Path(cfg.cache_dir), docs_hash)
    else:
        tok = load_hub_tokenizer(cfg.tokenizer)
    ids: list[int] = []
    for enc in tok.tokenizer.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(tok.eos_id)  # documents are separated by EOS
        if len(ids) >= cfg.max_tokens:
            break
    dtype = np.uint16 if tok.vocab_size <= 65535 else np.uint32
    tokens = np.asarray(ids[: cfg.max_tokens], dtype=dtype)
    meta = {
        "source": cfg.source, "num_documents": len(docs), "num_tokens": int(len(tokens)),
        "documents_sha256": docs_hash, "tokenizer": cfg.tokenizer, "tokenizer_sha256": tok.sha256,
        "vocab_size": tok.vocab_size, "cache_key": key, "tokenize_seconds": round(time.perf_counter() - t0, 2),
    }
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(arr_path, lambda f: np.save(f, tokens))
    atomic_write_json(tok_path, tok.to_dict())
    atomic_write_json(meta_path, meta)
    return _split(tokens, tok, meta, cfg, cached=False)


def _split(tokens: np.ndarray, tok: LoadedTokenizer, meta: dict, cfg: DataConfig, cached: bool) -> TokenData:
    cut = int(len(tokens) * (1 - cfg.val_fraction))
    # move the cut to the next document boundary so no document straddles train and val
    eos_after = np.flatnonzero(np.asarray(tokens[cut:]) == tok.eos_id)
    if len(eos_after):
        cut += int(eos_after[0]) + 1
    train, val = np.asarray(tokens[:cut]), np.asarray(tokens[cut:])
    if len(val) < 2 or len(train) < 2:
        raise UserError(f"data source {cfg.source!r} gives too few tokens ({len(tokens)}) to split")
    provenance = dict(meta, train_tokens=int(len(train)), val_tokens=int(len(val)),
                      split="contiguous token ranges at a document boundary",
                      train_range=[0, int(cut)], val_range=[int(cut), int(len(tokens))], from_cache=cached)
    return TokenData(train=train, val=val, tokenizer=tok, provenance=provenance)
