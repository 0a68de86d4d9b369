"""``data prepare`` (tokenise into the cache ahead of time) and ``data info`` (what is cached)."""

from __future__ import annotations

import json

from .args import EXPERIMENT_FLAGS, experiment_overrides, log


def _describe(p: dict) -> str:
    lines = [f"source     {p['source']} ({', '.join(f'{k} {v}' for k, v in p.get('source_identity', {}).items())})",
             f"documents  {p['num_documents']:,} ({p.get('num_characters', 0):,} characters)",
             f"tokens     {p['num_tokens']:,}: train {p['train_tokens']:,} / validation {p['val_tokens']:,} "
             f"({p['split']})",
             f"tokenizer  {p['tokenizer']}, vocab {p['vocab_size']:,}{_asked(p)}, sha256 {p['tokenizer_sha256'][:12]}",
             f"cache      {p['token_file']} ({p['dtype']}), key {p['cache_key']}",
             f"time       {p['tokenize_seconds']:.1f} s ({p['tokens_per_s']:,} tokens/s)"
             + ("; from the cache" if p.get("from_cache") else "")]
    lines += [f"dropped    {v}" for v in p.get("dropped", {}).values()]
    return "\n".join(lines)


def _asked(p: dict) -> str:
    asked = p.get("vocab_size_asked")
    return f" (the BPE stopped short of the {asked:,} asked)" if asked and asked > p["vocab_size"] else ""


def cmd_prepare(args) -> int:
    from ..config import apply_overrides, preset_config, validate
    from ..data import prepare_data

    cfg = validate(apply_overrides(preset_config(args.preset or "tiny"), experiment_overrides(args)))
    data = prepare_data(cfg.data, log=log)
    print(_describe(data.provenance))
    return 0


def cmd_info(args) -> int:
    from ..data.cache import cache_root

    root = cache_root(args.cache_dir or "")
    found = sorted((root / "tokens").glob("*.json"))
    entries = []
    for meta in found:
        if meta.name.endswith(".tokenizer.json"):
            continue
        try:
            m = json.loads(meta.read_text())
            size = meta.with_suffix(".bin").stat().st_size
        except (ValueError, OSError):
            continue
        entries.append((m, size))
    if not entries:
        print(f"no prepared data in {root}")
        return 0
    print(f"{'key':<22} {'source':<40} {'docs':>9} {'tokens':>13} {'vocab':>7} {'MB':>8}")
    for m, size in entries:
        print(f"{m['cache_key']:<22} {m['source'][-40:]:<40} {m['num_documents']:>9,} {m['num_tokens']:>13,} "
              f"{m['vocab_size']:>7,} {size / 2**20:>8.1f}")
    return 0


def register(sub) -> None:
    d = sub.add_parser("data", help="prepare (tokenise) data ahead of time, or list what is cached")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=type(d))
    p = dsub.add_parser("prepare", help="tokenise a source into the cache and print its provenance",
                        description="Read and tokenise --data (streamed, bounded memory) into the token cache, "
                                    "exactly as a study with the same data flags would, and print the provenance.")
    p.add_argument("--preset", default=None, help="preset whose data settings apply (default tiny)")
    for flag in ("--data", "--tokenizer", "--vocab-size", "--builtin-documents", "--num-documents", "--max-doc-chars",
                 "--max-tokens",
                 "--txt-split", "--cache-dir"):
        key, typ, help_ = EXPERIMENT_FLAGS[flag]
        p.add_argument(flag, type=typ, default=None, help=help_)
    p.set_defaults(func=cmd_prepare)
    i = dsub.add_parser("info", help="list the prepared data in the cache")
    i.add_argument("--cache-dir", default=None, help="the cache folder (default $MOE_ABLATE_CACHE, else the user "
                                                     "cache folder)")
    i.set_defaults(func=cmd_info)
