"""Tokenise once (streamed to disk), cache, split into disjoint train/validation ranges, batch.

The split is two contiguous token ranges cut at a document boundary (inside a document only when
there are too few): validation windows are never shifted copies of training windows (the original
scripts' random window split had ~99% overlap), and the tokenizer never sees validation text. Training batch ``step``
is a pure function of (seed, step, micro-batch), so a resumed
run sees exactly the batches it would have seen, and the data position is just the step.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DataConfig
from ..errors import UserError
from ..log import to_stderr
from ..utils import atomic_write, atomic_write_json, remove_dead_writers_temporaries
from .cache import cache_root
from .sources import Caps, caps_for, content_unchanged, file_stats, iter_documents, skipped_in_folder, source_identity
from .tokenizer import LoadedTokenizer, load_hub_tokenizer, train_bpe

CACHE_VERSION = 3  # 3: streamed to a memmapped .bin; tokenizer trained on training text only


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


BPE_SAMPLE_CHARS = 50_000_000  # the local BPE learns from at most this much training text


def _cache_key(cfg: DataConfig, identity: dict, caps: Caps) -> str:
    key = {"v": CACHE_VERSION, "source": identity, "tokenizer": cfg.tokenizer,
           "vocab": cfg.vocab_size if cfg.tokenizer == "bpe" else None, "caps": caps.__dict__,
           "txt_split": cfg.txt_split if not cfg.source.startswith(("builtin", "hf:")) else None,
           "val_fraction": cfg.val_fraction}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class SplitPlan:
    """Documents before ``doc`` are training text; ``doc`` itself is validation text, or, when
    ``at`` is set (too few documents to cut between them), its first ``at`` characters train and
    the rest validate. Everything after it validates. Decided on characters, before any tokenizer
    exists, so the tokenizer can be trained on training text only."""

    doc: int
    at: int | None
    kind: str

    def bounds(self, index: int, length: int, part: str) -> tuple[int, int]:
        """[start, end) of the training ("train") or validation ("val") part of document ``index`` (empty
        when it has none): bounds rather than a slice, since a document may be 200 MB."""
        if index < self.doc:
            return (0, length) if part == "train" else (0, 0)
        if index > self.doc or self.at is None:
            return (0, length) if part == "val" else (0, 0)
        return (0, self.at) if part == "train" else (self.at, length)



def plan_split(lengths: np.ndarray, val_fraction: float) -> SplitPlan:
    total = int(lengths.sum())
    target = total * (1 - val_fraction)  # characters of training text
    cum = np.cumsum(lengths)
    k = int(np.searchsorted(cum, target))  # the boundary after document k reaches the target
    if k < len(lengths) - 1 and total - cum[k] >= 0.5 * val_fraction * total:
        return SplitPlan(k + 1, None, "contiguous ranges at a document boundary")
    j = int(np.searchsorted(cum, target, side="right"))  # the document holding the target character
    j = min(j, len(lengths) - 1)
    at = int(target - (cum[j] - lengths[j]))
    return SplitPlan(j, max(1, at), f"contiguous ranges cut inside document {j} (too few documents to cut "
                                    "between them)")


class _Docs:
    """The source's documents after the per-document character cap, each time from the start."""

    def __init__(self, cfg: DataConfig, caps: Caps):
        self.cfg, self.caps = cfg, caps

    def __iter__(self):
        cap = self.caps.max_doc_chars
        i = 0
        for batch in iter_documents(self.cfg, self.caps):
            for d in batch:
                yield i, d[:cap] if cap else d
                i += 1


def cached_vocab_size(cfg: DataConfig) -> int | None:
    """The vocabulary of ``cfg``'s prepared data when it is in the cache (what its runs' models use), else None."""
    key = _cache_key(cfg, source_identity(cfg), caps_for(cfg))
    try:
        return int(json.loads((cache_root(cfg.cache_dir) / "tokens" / f"{key}.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_data(cfg: DataConfig, log=to_stderr, progress: bool = True) -> TokenData:
    """Load, tokenise and split the data named by ``cfg``, using the token cache when it can.

    Three streamed passes over the source, so memory stays bounded whatever its size: count
    characters (to place the split), train the BPE on training text only, then tokenise in
    batches into a ``uint16``/``uint32`` file that training reads through ``np.memmap``."""
    caps = caps_for(cfg)
    stats = file_stats(cfg)  # before the content hash: any edit from here to the end is seen
    identity = source_identity(cfg)
    key = _cache_key(cfg, identity, caps)
    cache = cache_root(cfg.cache_dir) / "tokens"
    root = cache_root(cfg.cache_dir)
    for folder in (root, cache, root / "tokenizers"):  # left by a preparation that was killed
        if (n := remove_dead_writers_temporaries(folder)):
            log(f"removed {n} temporary file(s) a killed data preparation left in {folder}")
    bin_path, meta_path, tok_path = cache / f"{key}.bin", cache / f"{key}.json", cache / f"{key}.tokenizer.json"
    if bin_path.exists() and meta_path.exists() and tok_path.exists():
        try:
            return _load(bin_path, json.loads(meta_path.read_text()),
                         LoadedTokenizer.from_dict(json.loads(tok_path.read_text(encoding="utf-8"))), cached=True)
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            log(f"token cache {key} is unreadable; rebuilding it")

    t0 = time.perf_counter()
    docs = _Docs(cfg, caps)
    lengths, dropped = _count(cfg, caps)  # pass 1: how much text, where the split goes, what the caps drop
    plan = plan_split(lengths, cfg.val_fraction)
    t_count = time.perf_counter()
    if cfg.tokenizer == "bpe":  # pass 2: the tokenizer, from training text only
        tok, sampled = _train_tokenizer(docs, plan, cfg, key)
        if tok.vocab_size < cfg.vocab_size:
            log(f"data {cfg.source}: the BPE stopped at {tok.vocab_size:,} tokens of the {cfg.vocab_size:,} asked (the "
                "training text has no more pairs to merge); the models use the real size. More text gives more")
        if sampled:
            log(f"BPE trained on a sample of the training text (the first {BPE_SAMPLE_CHARS:,} characters, of which at "
                f"most {BPE_SPACE_FREE_CHARS:,} without spaces); every character is tokenised")
    else:
        tok = load_hub_tokenizer(cfg.tokenizer)
    t_tok = time.perf_counter()
    dtype = np.uint16 if tok.vocab_size <= 65535 else np.uint32
    train_n, val_n = _tokenize_to(bin_path, docs, plan, tok, dtype, progress, lambda m: log(f"data {cfg.source}: {m}"))
    keep_train, keep_val = train_n, val_n
    if caps.max_tokens and train_n + val_n > caps.max_tokens:
        keep_train = min(train_n, int(caps.max_tokens * (1 - cfg.val_fraction)))
        eos = np.flatnonzero(np.memmap(bin_path, dtype=dtype, mode="r")[:keep_train] == tok.eos_id)
        keep_train = int(eos[-1]) + 1 if len(eos) else keep_train  # end training on a document boundary
        keep_val = min(val_n, caps.max_tokens - keep_train)
        dropped["tokens"] = (f"kept {keep_train + keep_val:,} of {train_n + val_n:,} tokens (max_tokens cap): train "
                             f"{keep_train:,} of {train_n:,}, validation {keep_val:,} of {val_n:,}")
    seconds = time.perf_counter() - t0
    meta = {
        "source": cfg.source, "source_identity": identity, "num_documents": int(len(lengths)),
        "num_characters": int(lengths.sum()), "num_tokens": int(keep_train + keep_val),
        "tokens_written": int(train_n + val_n), "train_written": int(train_n), "dtype": np.dtype(dtype).name,
        "keep_train": int(keep_train), "keep_val": int(keep_val), "tokenizer": cfg.tokenizer,
        "tokenizer_sha256": tok.sha256, "vocab_size": tok.vocab_size,
        "vocab_size_asked": cfg.vocab_size if cfg.tokenizer == "bpe" else None, "cache_key": key, "split": plan.kind,
        "caps": {k: v for k, v in caps.__dict__.items() if v}, "dropped": dropped,
        "txt_split": cfg.txt_split if "files" in identity else None,
        "tokenize_seconds": round(seconds, 2), "tokens_per_s": round((train_n + val_n) / max(seconds, 1e-9)),
        "pass_seconds": {"read_and_count": round(t_count - t0, 2), "tokenizer": round(t_tok - t_count, 2),
                         "tokenize_to_disk": round(time.perf_counter() - t_tok, 2)},
    }
    # edited while it was read (the stamps, then the bytes hashed again): the tokens are not the content the key names
    if file_stats(cfg) != stats or not content_unchanged(cfg, identity):
        for stale in (bin_path, cache_root(cfg.cache_dir) / "tokenizers" / f"bpe_{cfg.vocab_size}_{key[:16]}.json"):
            stale.unlink(missing_ok=True)
        raise UserError(f"data {cfg.source} changed while it was being read; nothing was cached: run again once "
                        "it no longer changes")
    for what in dropped.values():
        log(f"data {cfg.source}: {what}")
    atomic_write_json(tok_path, tok.to_dict())
    atomic_write_json(meta_path, meta)  # last: its presence marks a complete cache entry
    return _load(bin_path, meta, tok, cached=False)


def _count(cfg: DataConfig, caps: Caps) -> tuple[np.ndarray, dict[str, Any]]:
    """Pass 1: each kept document's length in characters, and what the caps drop (said and recorded)."""
    lengths, chars_dropped, more_documents = [], 0, False
    peek = Caps(caps.num_documents + 1, None, None) if caps.num_documents else Caps(None, None, None)
    stats: dict[str, int] = {}
    for batch in iter_documents(cfg, peek, stats):
        for d in batch:
            if caps.num_documents and len(lengths) == caps.num_documents:
                more_documents = True
                break
            keep = min(len(d), caps.max_doc_chars) if caps.max_doc_chars else len(d)
            chars_dropped += len(d) - keep
            lengths.append(keep)
    batch = d = None  # noqa: F841  (release the last document: it may be 200 MB)
    if not lengths:
        raise UserError(f"data source {cfg.source!r} has no text")
    lengths = np.asarray(lengths, dtype=np.int64)
    dropped: dict[str, Any] = {}
    if more_documents and cfg.source != "builtin":  # builtin: num_documents is the generator's size
        dropped["documents"] = f"read the first {len(lengths):,} documents (num_documents cap); the source has more"
    if stats.get("rows_without_text"):
        dropped["rows_without_text"] = (f"{stats['rows_without_text']:,} row(s) without a 'text' value (missing or "
                                        "null) were skipped")
    skipped = skipped_in_folder(cfg.source) if cfg.source not in ("builtin",) and not cfg.source.startswith("hf:") \
        else []
    if skipped:
        dropped["files"] = (f"{len(skipped)} file(s) in the folder were not read (not a regular .txt, .jsonl or "
                            f".parquet file): {', '.join(str(f) for f in skipped[:5])}"
                            + (", ..." if len(skipped) > 5 else ""))
    if chars_dropped:
        dropped["characters"] = (f"{chars_dropped:,} characters past max_doc_chars={caps.max_doc_chars:,} "
                                 f"({100 * chars_dropped / (chars_dropped + lengths.sum()):.1f}% of the text read)")
    return lengths, dropped


def _tokenize_to(bin_path: Path, docs: _Docs, plan: SplitPlan, tok: LoadedTokenizer, dtype, progress: bool,
                 log) -> tuple[int, int]:
    """Pass 3: tokenise in batches straight to disk (train, then validation); (train, validation) token counts."""
    counts = {"train": 0, "val": 0}
    bar = tqdm(unit="tok", unit_scale=True, desc="tokenising", disable=None if progress else True, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    hard_cuts = [0]

    def write(f) -> None:
        for part in ("train", "val"):
            for batch in _chunk_batches(_part(docs, plan, part), hard_cuts):
                encs = tok.tokenizer.encode_batch([text for text, _ in batch], add_special_tokens=False)
                ids = [enc.ids + [tok.eos_id] if last else enc.ids for enc, (_, last) in zip(encs, batch)]
                arr = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype)
                f.write(arr.tobytes())
                counts[part] += len(arr)
                bar.update(len(arr))

    try:
        atomic_write(bin_path, write)
    finally:
        bar.close()
    if hard_cuts[0]:
        log(f"{hard_cuts[0]:,} cut(s) inside runs of text without a space: such runs are tokenised in "
            f"{HARD_CUT_CHARS:,}-character pieces (every character kept; tokens may split differently at those cuts)")
    return counts["train"], counts["val"]


def _part(docs: _Docs, plan: SplitPlan, part: str):
    """(document, start, end) of each document's part, in order."""
    for i, text in docs:
        if part == "train" and i > plan.doc:
            return  # the rest is validation text: no need to read it
        start, end = plan.bounds(i, len(text), part)
        if end > start:
            yield text, start, end


BPE_PIECE_CHARS = 4096  # the BPE trainer sees text in pieces this long (a space-free run is cut)
BPE_SPACE_FREE_CHARS = 2_000_000  # at most this much space-free text trains the BPE (its memory grows per character)
CHUNK_CHARS = 1 << 20  # a document longer than this reaches the tokenizer in pieces of at most this size
HARD_CUT_CHARS = 1 << 16  # a run without a space is cut this short: BPE on one huge "word" is slow and large
BATCH_CHARS = 1 << 20  # characters handed to one encode_batch call


def chunks(text: str, size: int = CHUNK_CHARS, start: int = 0, end: int | None = None):
    """``text`` in pieces of at most ``size`` characters, yielded as (piece, cut without a space, last),
    each but the last cut just before a space that follows a non-space character: the byte-level
    pre-tokenizer splits there anyway, so the tokens are those of the whole text. Text with no such space
    is cut every ``HARD_CUT_CHARS`` characters (second value True). Lazy, so the tokenizer's memory stays
    bounded whatever a document's length (one 200 MB line). ``start``/``end``: the part of ``text`` to cut."""
    end = len(text) if end is None else end
    while end - start > size:
        cut = text.rfind(" ", start + 1, start + size)
        while cut > start and text[cut - 1].isspace():
            cut = text.rfind(" ", start + 1, cut)
        hard = cut <= start
        cut = start + min(size, HARD_CUT_CHARS) if hard else cut
        yield text[start:cut], hard, False
        start = cut
    while end - start > HARD_CUT_CHARS and text.find(" ", start + 1, end) < 0:  # a space-free tail
        yield text[start:start + HARD_CUT_CHARS], True, False
        start += HARD_CUT_CHARS
    yield (text if start == 0 and end == len(text) else text[start:end]), False, True


def _chunk_batches(texts, hard_cuts: list[int]):
    """Batches of (piece, ends its document) of at most about ``BATCH_CHARS`` characters."""
    batch, size = [], 0
    for text, start, end in texts:
        for piece, hard, last in chunks(text, CHUNK_CHARS, start, end):
            hard_cuts[0] += hard
            batch.append((piece, last))
            size += len(piece)
            if size >= BATCH_CHARS or len(batch) >= 1000:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _train_tokenizer(docs: _Docs, plan: SplitPlan, cfg: DataConfig, key: str) -> tuple[LoadedTokenizer, bool]:
    sampled = [False]

    def training_text():
        budget, space_free = BPE_SAMPLE_CHARS, BPE_SPACE_FREE_CHARS
        for text, start, end in _part(docs, plan, "train"):
            stop = min(end, start + budget)
            for piece, hard, _ in chunks(text, BPE_PIECE_CHARS, start, stop):  # no "word" the trainer cannot handle
                if hard:  # every space-free piece is a distinct "word" the trainer keeps whole: bound them
                    space_free -= len(piece)
                    if space_free < 0:
                        sampled[0] = True
                        continue
                yield piece
            budget -= end - start
            if budget <= 0:
                sampled[0] = True
                return

    tok = train_bpe(training_text(), cfg.vocab_size, cache_root(cfg.cache_dir), key)
    return tok, sampled[0]


def _load(bin_path: Path, meta: dict, tok: LoadedTokenizer, cached: bool) -> TokenData:
    tokens = np.memmap(bin_path, dtype=meta["dtype"], mode="r")
    if len(tokens) != meta["tokens_written"]:
        raise ValueError("token file size does not match its metadata")
    cut = meta["train_written"]
    train, val = tokens[: meta["keep_train"]], tokens[cut: cut + meta["keep_val"]]
    if len(val) < 2 or len(train) < 2:
        raise UserError(f"data source {meta['source']!r} gives too few tokens ({meta['num_tokens']}) to split")
    provenance = {k: v for k, v in meta.items() if k not in ("keep_train", "keep_val", "train_written")}
    provenance.update(train_tokens=int(len(train)), val_tokens=int(len(val)), train_range=[0, int(len(train))],
                      val_range=[int(cut), int(cut + len(val))], from_cache=cached,
                      token_file=str(bin_path))
    return TokenData(train=train, val=val, tokenizer=tok, provenance=provenance)
