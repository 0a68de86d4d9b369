"""Benchmark streamed tokenisation: tokens/s and peak memory of ``prepare_data`` on big text files,
against ``tokenizers``' own batch encoding of the same text with the same tokenizer.

    python scripts/bench_tokenize.py --sizes-mb 50 200

Makes each file from the built-in generator (paragraph per document), prepares it in a child
process (its peak RSS is the child's ru_maxrss), then times ``Tokenizer.encode_batch`` over the
same documents in batches of 1,000 (the reference). Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from moe_ablate.config import DataConfig
from moe_ablate.data import prepare_data
t = time.perf_counter()
d = prepare_data(DataConfig(source=sys.argv[1], cache_dir=sys.argv[2], vocab_size=int(sys.argv[3])),
                 log=lambda m: None, progress=False)
p = d.provenance
print(json.dumps({"seconds": time.perf_counter() - t, "tokens": p["num_tokens"], "documents": p["num_documents"],
                  "pass_seconds": p["pass_seconds"], "tokenizer_json": sys.argv[2] + "/tokens/" + p["cache_key"]
                  + ".tokenizer.json"}))
"""


def make_file(path: Path, mb: int) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from moe_ablate.data.corpus import builtin_document

    size, i = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 2**20:
            doc = builtin_document(7, i) + "\n\n"
            f.write(doc)
            size += len(doc.encode())
            i += 1
    return i


def reference(path: Path, tokenizer_json: str) -> dict:
    """tokenizers' own batch encoding of the same paragraphs, in batches of 1,000."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.loads(Path(tokenizer_json).read_text())["json"])
    t0, n, batch = time.perf_counter(), 0, []
    with open(path, encoding="utf-8") as f:
        para: list[str] = []
        for line in f:
            if line.strip():
                para.append(line)
                continue
            if para:
                batch.append("".join(para).rstrip("\n"))
                para = []
            if len(batch) == 1000:
                n += sum(len(e.ids) + 1 for e in tok.encode_batch(batch, add_special_tokens=False))
                batch = []
        if para:
            batch.append("".join(para))
        if batch:
            n += sum(len(e.ids) + 1 for e in tok.encode_batch(batch, add_special_tokens=False))
    return {"tokens": n, "seconds": time.perf_counter() - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes-mb", type=int, nargs="+", default=[50, 200])
    p.add_argument("--vocab-size", type=int, default=8192)
    args = p.parse_args()
    for mb in args.sizes_mb:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"corpus_{mb}mb.txt"
            t0 = time.perf_counter()
            docs = make_file(path, mb)
            made = time.perf_counter() - t0
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(Path(tmp) / "cache"),
                                  str(args.vocab_size)], capture_output=True, text=True, check=True)
            peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            ours = json.loads(out.stdout.strip().splitlines()[-1])
            ref = reference(path, ours["tokenizer_json"])
            pass3 = ours["pass_seconds"]["tokenize_to_disk"]
            print(json.dumps({
                "file_mb": round(path.stat().st_size / 2**20, 1), "documents": docs, "generate_s": round(made, 1),
                "tokens": ours["tokens"], "prepare_s": round(ours["seconds"], 1), "pass_s": ours["pass_seconds"],
                "prepare_tokens_per_s": round(ours["tokens"] / ours["seconds"]),
                "tokenize_pass_tokens_per_s": round(ours["tokens"] / pass3),
                "reference_tokens_per_s": round(ref["tokens"] / ref["seconds"]), "reference_tokens": ref["tokens"],
                "ratio_reference_over_tokenize_pass": round((ref["tokens"] / ref["seconds"]) / (ours["tokens"] / pass3),
                                                            2),
                "peak_rss_gb": round(max(peak_kb, before) / 2**20, 2),
                "peak_rss_note": "child ru_maxrss (max over children so far)"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
