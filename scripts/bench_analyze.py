"""How long ``analyze`` takes on a large grid, and how long its answer is (issue 31: <= 10 s CPU for 270
configurations x 3 seeds, a first paragraph under 1,200 characters).

    python scripts/bench_analyze.py                 # 270 configurations x 3 seeds
    python scripts/bench_analyze.py --seeds 2 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe_ablate.analysis.stats import analyze  # noqa: E402

AXES = dict(muon_lr=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3], adamw_lr_ratio=[0.01, 0.05, 0.1, 0.2, 0.5],
            momentum=[0.9, 0.95, 0.99], weight_decay=[0.01, 0.1, 0.5])


def records(seeds: int, rng: np.random.Generator) -> list[dict]:
    """A 270-configuration grid with a bowl in the LR, seed offsets and run noise."""
    seed_fx = rng.normal(0, 0.02, seeds)
    out = []
    for i, hp in enumerate(itertools.product(*AXES.values())):
        for s in range(seeds):
            out.append({"experiment_id": f"exp_{i:03d}_s{s}", "config_id": f"exp_{i:03d}", "status": "ok",
                        "stage": "grid", "hyperparameters": {**dict(zip(AXES, hp)), "seed": s},
                        "val_loss": 3.0 + 0.05 * (np.log10(hp[0]) + 1.5) ** 2 + seed_fx[s] + rng.normal(0, 0.02)})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    times = []
    for _ in range(a.repeats):
        recs = records(a.seeds, rng)
        t0 = time.process_time()
        out = analyze(recs)
        times.append(time.process_time() - t0)
    text = out["recommendation"]["text"]
    print(f"analyze of {len(recs) // a.seeds} configurations x {a.seeds} seeds: {np.median(times):.2f} s CPU "
          f"(median of {a.repeats}; {', '.join(f'{t:.2f}' for t in times)}); answer {len(text)} characters")
    print(text[:400] + ("..." if len(text) > 400 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
