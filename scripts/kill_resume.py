"""Kill a study at random moments, resume it until it is done, and compare it with an uninterrupted run.

    python scripts/kill_resume.py --kind run --kills 10 --seed 0
    python scripts/kill_resume.py --kind all --kills 5

Checks, per study kind: the same experiment set as the uninterrupted run, each experiment exactly
once (one record each, no duplicate in the stored study), identical metrics (runs are
deterministic on CPU), and no temporary file left behind. The test suite runs the same loop with
fewer kills (tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("status", "val_loss", "best_val_loss", "final_train_loss", "val_accuracy", "steps")
SMALL = ["--preset", "tiny", "--eval-batches", "1", "--num-documents", "300", "--max-tokens", "60000",
         "--vocab-size", "512", "--batch-size", "4", "--seq-len", "32", "--no-progress", "--device", "cpu"]
STUDY_TOML = """
[study]
name = "{name}"
preset = "tiny"
{confirm}
[base.model]
d_model = 32
n_heads = 2
n_layers = 1
d_ff = 64
num_experts = 4
max_seq_len = 32
[base.train]
steps = {steps}
batch_size = 4
seq_len = 32
eval_every = 4
eval_batches = 2
log_every = 4
device = "cpu"
[base.data]
num_documents = 300
max_tokens = 60000
vocab_size = 512
{cache}
[grid.train]
muon_lr = {lrs}
weight_decay = [0.0, 0.1]
"""


def scaling_toml(steps: int, cache: str | None = None, name: str = "scaling", seeds: int = 2,
                 lrs: str = "[0.01, 0.03, 0.1]", widths: str = "[16, 32, 48]") -> str:
    """A scaling ladder of very small models: 3 widths x len(lrs) LRs x ``seeds`` seeds."""
    text = study_toml(steps, lrs, 0, cache, name).replace('preset = "tiny"', f'preset = "tiny"\nkind = "scaling"\n'
                                                                          f'seeds = {seeds}')
    text = text.replace("weight_decay = [0.0, 0.1]\n", "").replace("d_model = 32\n", "")
    return text + f"[grid.model]\nd_model = {widths}\n[scaling]\ntarget_preset = \"tiny\"\ntarget_steps = 500\n" \
                  "bootstrap = 200\n"


def study_toml(steps: int, lrs: str = "[0.01, 0.05]", confirm: int | None = None, cache: str | None = None,
               name: str = "faults") -> str:
    """A study of a very small model: len(lrs) x 2 configurations (the test suite uses it too)."""
    return STUDY_TOML.format(name=name, steps=steps, lrs=lrs, confirm="" if confirm is None else f"confirm = {confirm}",
                             cache="" if cache is None else f'cache_dir = "{cache}"')


def commands(kind: str, work: Path, out: Path, steps: int, cache: Path) -> tuple[list[str], list[str]]:
    """(fresh command, resume command with DIR as a placeholder) for one study kind."""
    cache_flags = ["--cache-dir", str(cache)]
    if kind == "run":
        cfg = work / "faults.toml"
        cfg.write_text(study_toml(steps))
        return (["run", "--config", str(cfg), "--output-dir", str(out), "--no-progress", *cache_flags],
                ["run", "--resume", "DIR", "--no-progress"])
    if kind == "scaling":
        cfg = work / "scaling.toml"
        cfg.write_text(scaling_toml(steps))
        return (["scaling", "--config", str(cfg), "--output-dir", str(out), "--no-progress", *cache_flags],
                ["scaling", "--resume", "DIR", "--no-progress"])
    if kind == "lr-search":
        return (["lr-search", "--exp", "9", "--lrs", "0.003", "0.01", "0.03", "--steps", str(steps), "--eval-every",
                 "5", "--output-dir", str(out), *SMALL, *cache_flags], ["lr-search", "--resume", "DIR",
                                                                        "--no-progress"])
    if kind == "expert-search":
        return (["expert-search", "--lr", "0.01", "--steps", str(steps), "--eval-every", "5", "--confirm", "0",
                 "--output-dir", str(out), *SMALL, *cache_flags], ["expert-search", "--resume", "DIR", "--no-progress"])
    if kind == "batch-seqlen":
        small = [a for a in SMALL if a not in ("--batch-size", "4", "--seq-len", "32")]
        return (["batch-seqlen", "--steps", str(steps), "--eval-every", "5", "--confirm", "0", "--output-dir", str(out),
                 *small, *cache_flags], ["batch-seqlen", "--resume", "DIR", "--no-progress"])
    if kind == "train":
        return (["train", "--exp", "9", "--lr", "0.01", "--steps", str(steps * 3), "--eval-every", "5",
                 "--checkpoint-every", "10", "--output-dir", str(out), *SMALL, *cache_flags],
                ["train", "--resume", "DIR", "--no-progress"])
    raise SystemExit(f"unknown kind {kind}")


KINDS = ("run", "lr-search", "expert-search", "batch-seqlen", "train", "scaling")


def study_dir(out: Path) -> Path | None:
    found = [p for p in out.glob("*") if (p / "config.json").exists()] if out.exists() else []
    return found[0] if found else None


def _popen(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "moe_ablate", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)


def run_to_end(fresh: list[str], resume: list[str], out: Path, env: dict, kills: int = 0,
               rng: random.Random | None = None, max_delay: float = 10.0) -> tuple[Path, int, float]:
    """Run, SIGKILL ``kills`` times at random moments (resuming in between), then finish.
    Returns (study folder, kills that landed, seconds of the last, uninterrupted leg)."""
    landed = 0
    for _ in range(kills + 1):
        d = study_dir(out)
        args = [a if a != "DIR" else str(d) for a in resume] if d else fresh
        t0 = time.perf_counter()
        proc = _popen(args, env)
        if landed < kills:
            left = 1.0
            if d is not None and (d / "config.json").exists():  # scale by the share of work still to do
                planned = json.loads((d / "config.json").read_text())["study"]["experiments"]
                left = max(0.15, 1 - len(records(d)) / max(1, len(planned)))
            delay = rng.uniform(0.3, 0.75) * max_delay * left  # inside the run, whatever the machine speed
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                landed += 1
                continue
        _, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {err.decode()[-1500:]}")
        return study_dir(out), landed, time.perf_counter() - t0
    raise AssertionError("unreachable")


def records(d: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((d / "experiments").glob("*.json"))}


def compare(reference: Path, other: Path) -> list[str]:
    """Problems found (empty: the killed-and-resumed study equals the uninterrupted one)."""
    problems = []
    a, b = records(reference), records(other)
    if sorted(a) != sorted(b):
        problems.append(f"experiment sets differ: {sorted(set(a) ^ set(b))}")
    planned = [e["id"] for e in json.loads((other / "config.json").read_text())["study"]["experiments"]]
    if len(planned) != len(set(planned)):
        problems.append("the stored study lists an experiment twice")
    if sorted(planned) != sorted(b):
        problems.append(f"planned vs recorded differ: {sorted(set(planned) ^ set(b))}")
    for k in sorted(set(a) & set(b)):
        for m in METRICS:
            if a[k].get(m) != b[k].get(m):
                problems.append(f"{k}: {m} {a[k].get(m)} != {b[k].get(m)}")
        curve = [[h["loss"] for h in r.get("history", {}).get("train", [])] for r in (a[k], b[k])]
        if curve[0] != curve[1]:
            problems.append(f"{k}: training curve differs")
    leftovers = [str(p) for p in other.rglob("*.tmp")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    return problems


def killed_at(fresh: list[str], resume: list[str], out: Path, env: dict, at: str) -> tuple[Path, int]:
    """Run with the failpoint ``at`` ("<point>:<n>", ``moe_ablate/failpoints.py``): the process SIGKILLs itself
    there; then resume to the end. Returns (study folder, 1 if the kill happened else 0)."""
    proc = _popen(fresh, {**env, "MOE_ABLATE_KILL_AT": at})
    _, err = proc.communicate(timeout=1200)
    landed = int(proc.returncode == -signal.SIGKILL)
    if not landed and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(fresh)} exited {proc.returncode}: {err.decode()[-1500:]}")
    d, _, _ = run_to_end(fresh, resume, out, env)
    return d, landed


def trial(kind: str, kills: int, seed: int, work: Path, steps: int = 20, cache: Path | None = None,
          at: str | None = None) -> dict:
    """One kind: an uninterrupted reference run, then a run killed ``kills`` times at random moments (or once
    at the failpoint ``at``) and resumed."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("MOE_ABLATE_KILL_AT", None)
    cache = cache or work / "cache"
    # the data every kind trains on, tokenised before the reference is timed: the kill moments are drawn from the
    # reference's time, and a reference that paid for the tokenisation made them land after a warm run had ended
    subprocess.run([sys.executable, "-m", "moe_ablate", "data", "prepare", "--preset", "tiny", "--num-documents", "300",
                    "--max-tokens", "60000", "--vocab-size", "512", "--cache-dir", str(cache)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fresh, resume = commands(kind, work, work / "reference", steps, cache)
    ref, _, seconds = run_to_end(fresh, resume, work / "reference", env)
    fresh, resume = commands(kind, work, work / "killed", steps, cache)
    if at:
        got, landed = killed_at(fresh, resume, work / "killed", env, at)
    else:
        got, landed, _ = run_to_end(fresh, resume, work / "killed", env, kills, random.Random(seed), max_delay=seconds)
    problems = compare(ref, got)
    return {"kind": kind, "kills": landed, "experiments": len(records(got)), "problems": problems,
            "reference_seconds": round(seconds, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", default="all", choices=("all", *KINDS))
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs per study kind (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per experiment")
    p.add_argument("--at", default=None, help="kill once at a failpoint instead, e.g. write:before_rename:3 "
                                               "(moe_ablate/failpoints.py lists them)")
    args = p.parse_args()
    failed = 0
    for kind in KINDS if args.kind == "all" else (args.kind,):
        with tempfile.TemporaryDirectory() as tmp:
            r = trial(kind, args.kills, args.seed, Path(tmp), args.steps, at=args.at)
        ok = not r["problems"]
        failed += not ok
        print(f"{kind:14s} {'ok  ' if ok else 'FAIL'} {r['kills']} kills landed, {r['experiments']} experiments, "
              f"each once, metrics identical to the uninterrupted run ({r['reference_seconds']} s), no temporaries"
              if ok else f"{kind:14s} FAIL {r['kills']} kills: " + "; ".join(r["problems"][:5]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
