#!/usr/bin/env python
"""HellaSwag scoring throughput (items/s) for a preset/model; the last line printed is JSON.

    python scripts/bench_hellaswag.py --preset exp9 --model deepseek_mlp --items 40

Items are synthetic but in the official format and of HellaSwag's typical size (a ~60-word
context, four ~20-word endings), scored with the real evaluator on an untrained model: speed does
not depend on the weights. Use ``--data FILE`` to time real items instead.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe_ablate.config import DataConfig, preset_config  # noqa: E402
from moe_ablate.data import prepare_data  # noqa: E402
from moe_ablate.data.corpus import builtin_document  # noqa: E402
from moe_ablate.hellaswag import HellaSwagEvaluator  # noqa: E402
from moe_ablate.models import build_model  # noqa: E402
from moe_ablate.utils import resolve_device  # noqa: E402


def synthetic_items(n: int, path: Path) -> None:
    rng = random.Random(0)
    words = " ".join(builtin_document(7, i) for i in range(50)).split()
    with open(path, "w") as f:
        for i in range(n):
            s = rng.randrange(len(words) - 200)
            ctx = " ".join(words[s:s + 60])
            ends = [" ".join(words[s + 60 + 20 * j: s + 80 + 20 * j]) for j in range(4)]
            f.write(json.dumps({"ind": i, "activity_label": "Story", "ctx_a": ctx, "ctx_b": "", "endings": ends,
                                "label": rng.randrange(4)}) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--model", default="moe")
    p.add_argument("--items", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8, help="items per forward pass (x4 endings)")
    p.add_argument("--data", default=None, help="a HellaSwag JSONL file (default: synthetic items)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    cfg = preset_config(args.preset, args.model)
    data = prepare_data(DataConfig(), log=lambda m: None)  # the default builtin tokenizer
    cfg.model.vocab_size = data.vocab_size
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.data or str(Path(tmp) / "items.jsonl")
        if not args.data:
            synthetic_items(args.items, Path(source))
        ev = HellaSwagEvaluator(source, data.tokenizer, cfg.model.max_seq_len, args.items, args.batch_size, device)
        ev(model)  # warm-up
        res = ev(model)
    out = {"preset": args.preset, "model": args.model, "device": device, "threads": torch.get_num_threads(),
           "items": res["n"], "items_per_s": round(res["items_per_s"], 2), "params": model.param_counts()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
