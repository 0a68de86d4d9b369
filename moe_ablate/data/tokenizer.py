"""Tokenizers: a byte-level BPE trained locally with ``tokenizers`` (cached by content hash),
or a hub tokenizer (``hf:NAME``) when the hub is reachable."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..errors import UserError

EOS = "<|endoftext|>"


@dataclass
class LoadedTokenizer:
    tokenizer: Tokenizer
    eos_id: int
    spec: str  # "bpe" or "hf:NAME"
    sha256: str  # hash of the serialised tokenizer: identifies it exactly

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def to_dict(self) -> dict:
        """Everything needed to rebuild it exactly (the EOS id is not derivable for hub tokenizers)."""
        return {"json": self.tokenizer.to_str(), "spec": self.spec, "eos_id": self.eos_id}

    @classmethod
    def from_dict(cls, d: dict) -> LoadedTokenizer:
        return cls._from_json(d["json"], d["spec"], d["eos_id"])

    @classmethod
    def _from_json(cls, text: str, spec: str, eos_id: int | None = None) -> LoadedTokenizer:
        tok = Tokenizer.from_str(text)
        eos = eos_id if eos_id is not None else tok.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"tokenizer {spec} has no {EOS} token and no EOS id was given")
        return cls(tok, eos, spec, hashlib.sha256(text.encode()).hexdigest())


def train_bpe(docs: Iterable[str], vocab_size: int, cache_dir: Path, key: str) -> LoadedTokenizer:
    """Train (or load the cached) byte-level BPE for these documents (``key`` names them) and vocab."""
    path = Path(cache_dir) / "tokenizers" / f"bpe_{vocab_size}_{key[:16]}.json"
    if path.exists():
        return LoadedTokenizer._from_json(path.read_text(encoding="utf-8"), "bpe")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    from ..utils import atomic_write_text

    atomic_write_text(path, tok.to_str())
    return LoadedTokenizer._from_json(tok.to_str(), "bpe")


def load_hub_tokenizer(spec: str) -> LoadedTokenizer:
    from .sources import ensure_hub

    name = spec[3:]
    ensure_hub(f"tokenizer {name}")
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise UserError(f"cannot load tokenizer {name}: {type(e).__name__}") from None
    backend = hf.backend_tokenizer
    text = backend.to_str()
    eos = hf.eos_token_id if hf.eos_token_id is not None else backend.get_vocab_size() - 1
    return LoadedTokenizer(backend, eos, spec, hashlib.sha256(text.encode()).hexdigest())
