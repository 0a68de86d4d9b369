#!/usr/bin/env python
"""Everything a lent GPU should measure, in one command of at most ~8 minutes (``scripts/gpu_check.sh`` wraps it).

    python scripts/gpu_check.py --out $OUT                  # on the device
    GPU_CHECK_DRY=1 python scripts/gpu_check.py --out /tmp/x  # the same steps on CPU, tiny sizes (the slow tier)

Steps, each in its own subprocess with its own time limit, each writing its result to ``--out`` the moment it
has it (a command killed by its lease still returns what was measured):

1. ``env``: GPU name, torch and CUDA versions, a measured bf16 matmul rate (8192^3, median of 10): the peak
   that every "share of peak" below divides by;
2. ``tests``: the CUDA tier, ``pytest -m cuda`` (``tests/test_cuda.py``);
3. ``bench``: ``scripts/bench.py`` for the ``seed``, ``exp9`` and ``exp3`` presets, bf16, eager and compiled at
   the preset's batch, and compiled at a larger batch (``--big-batch``): ms/step, tokens/s, model FLOP/s and
   its share of the measured peak, peak memory, the phase shares (Muon's among them), host syncs per step;
   a torch.profiler summary for the compiled ``exp3``;
4. ``grid``: a slice of the ``seed``-preset 270-experiment grid (configs/lr_ablation.toml, 50 steps, eval
   every 5, compiled once per study): N experiments in one process, then P processes side by side on the
   GPU, and the 270-experiment wall time extrapolated from each (method in ``grid.json``);
5. ``summary.json`` and ``summary.md`` (a table per model, the grid estimate, the tests' outcome).

Files in ``--out`` (at most 8, what a device call returns): env.json, cuda_tests.txt, bench.json, profile_*.txt,
grid.json, log.txt (every command's output), summary.json, summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRY = bool(os.environ.get("GPU_CHECK_DRY"))
TINY_DATA = ["--num-documents", "300", "--max-tokens", "60000", "--vocab-size", "512"]


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], timeout: float, out_file: Path | None = None, env: dict | None = None) -> tuple[int, str, float]:
    """Run ``cmd``; (exit code, combined output, seconds). A timeout is exit code 124, never an exception."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        code, text = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        code = 124
        text = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
               ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")) + \
               f"\n[timed out after {timeout:.0f} s]"
    seconds = time.perf_counter() - t0
    if out_file is not None:
        with out_file.open("a") as f:  # the device returns at most 8 files: one log for every command
            f.write(f"$ {' '.join(cmd)}\n[exit {code}, {seconds:.1f} s]\n{text}\n")
    return code, text, seconds


def write(out: Path, name: str, obj) -> None:
    (out / name).write_text(json.dumps(obj, indent=1, default=str))


def step_env(out: Path, device: str, limit: float) -> dict:
    code = ("import json, sys, torch; sys.path.insert(0, 'scripts'); import bench\n"
            f"d = {device!r}\n"
            "info = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'python': sys.version.split()[0]}\n"
            "if d.startswith('cuda'):\n"
            "    p = torch.cuda.get_device_properties(0)\n"
            "    info.update(gpu=p.name, sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),\n"
            "                bf16=torch.cuda.is_bf16_supported(), "
            "capability=list(torch.cuda.get_device_capability()))\n"
            f"n = {512 if DRY else 8192}\n"
            "info['matmul_n'] = n\n"
            "info['matmul_peak_gflops'] = bench.matmul_peak(d, n)\n"
            "info['matmul_dtype'] = 'bf16' if d.startswith('cuda') else 'fp32'\n"
            "print(json.dumps(info))\n")
    rc, text, s = sh([sys.executable, "-c", code], limit, out / "log.txt")
    info = {"ok": rc == 0, "seconds": round(s, 1)}
    smi = sh(["nvidia-smi", "-L"], 20)[1].strip() if not DRY else "dry run: no nvidia-smi"
    info["nvidia_smi"] = smi
    if rc == 0:
        info.update(json.loads(text.strip().splitlines()[-1]))
    write(out, "env.json", info)
    log(f"env: {info.get('gpu', 'cpu')}, torch {info.get('torch')}, CUDA {info.get('cuda')}, "
        f"matmul peak {info.get('matmul_peak_gflops', float('nan')):,.0f} GFLOP/s")
    return info


def step_tests(out: Path, limit: float) -> dict:
    (out / "cuda_tests.txt").unlink(missing_ok=True)
    rc, text, s = sh([sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-o", "addopts=", "-q", "-p",
                      "no:cacheprovider", "-rfEs", "--no-header"], limit, out / "cuda_tests.txt")
    last = next((ln for ln in reversed(text.strip().splitlines()) if " in " in ln), "")
    res = {"exit": rc, "summary": last.strip("= "), "seconds": round(s, 1)}
    log(f"CUDA tier: {res['summary']} (exit {rc})")
    return res


def bench_runs(big_batch: int) -> list[dict]:
    if DRY:
        return [{"preset": "tiny", "compile": False, "batch": 2, "profile": True}]
    runs = []
    for preset in ("seed", "exp9", "exp3"):
        runs += [{"preset": preset, "compile": False}, {"preset": preset, "compile": True, "profile": preset == "exp3"},
                 {"preset": preset, "compile": True, "batch": big_batch}]
    return runs


def step_bench(out: Path, device: str, peak: float | None, limit: float, big_batch: int) -> list[dict]:
    results = []
    for r in bench_runs(big_batch):
        tag = f"{r['preset']}_{'compiled' if r['compile'] else 'eager'}" + (f"_b{r['batch']}" if r.get("batch") else "")
        js = out / f"bench_{tag}.json"
        cmd = [sys.executable, "scripts/bench.py", "--preset", r["preset"], "--device", device, "--json", str(js),
               "--phases", "--steps", "3" if DRY else "20", "--warmup", "1" if DRY else "5"]
        if DRY:
            cmd += ["--seq", "32", "--vocab", "512"]
        if r.get("batch"):
            cmd += ["--batch", str(r["batch"])]
        if r["compile"]:
            cmd.append("--compile")
        if device.startswith("cuda"):
            cmd.append("--sync-check")
        if r.get("profile"):
            cmd += ["--profile", str(out / f"profile_{tag}.txt")]
        rc, text, s = sh(cmd, limit, out / "log.txt")
        row = {"run": tag, "exit": rc, "seconds": round(s, 1)}
        if rc == 0 and js.exists():
            row.update(json.loads(js.read_text()))
            js.unlink()  # folded into bench.json (the device returns at most 8 files)
            if peak:
                row["share_of_measured_peak"] = row["model_gflops_per_s"] / peak
        else:
            row["error"] = text.strip().splitlines()[-3:] if text.strip() else "no output"
        results.append(row)
        write(out, "bench.json", results)
        log(f"bench {tag}: " + (f"{row['ms_per_step']:.1f} ms/step, {row['tokens_per_s']:,.0f} tok/s, "
                                f"{row.get('share_of_measured_peak', float('nan')):.1%} of peak" if rc == 0 else
                                f"failed (exit {rc}): {row['error']}"))
    return results


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("experiments/*.json"))]


def step_grid(out: Path, device: str, limit: float, n: int, parallel: int) -> dict:
    """N experiments in one process, then P processes at once; the 270-grid wall time extrapolated from each."""
    work = Path(os.environ.get("GPU_CHECK_WORK") or (Path("/tmp") / f"gpu_check_grid_{os.getpid()}"))
    cache = work / "cache"
    common = ["--steps", "50", "--eval-every", "5", "--confirm", "0", "--no-progress", "--device", device,
              "--cache-dir", str(cache), "--max-experiments", str(n)]
    if DRY:
        common = ["--preset", "tiny", "--steps", "4", "--eval-every", "2", "--eval-batches", "1", "--batch-size", "2",
                  "--seq-len", "32", *TINY_DATA, *[c for c in common if c not in ("50", "5", "--steps",
                                                                                  "--eval-every")]]
    else:
        common.append("--compile")
    ma = [sys.executable, "-m", "moe_ablate"]
    res: dict = {"experiments_per_process": n, "processes": parallel, "steps": 4 if DRY else 50,
                 "preset": "tiny (dry run)" if DRY else "seed", "grid": "configs/lr_ablation.toml (270 configurations)"}
    prep = ["data", "prepare", "--cache-dir", str(cache)] + (["--preset", "tiny", *TINY_DATA] if DRY else [])
    rc, text, s = sh(ma + prep, limit / 4, out / "log.txt")
    res["data_prepare_s"] = round(s, 1)
    if rc != 0:
        res["error"] = f"data prepare failed: {text.strip().splitlines()[-1:]}"
        write(out, "grid.json", res)
        return res
    seq_dir = work / "sequential"
    rc, text, s = sh(ma + ["run", *common, "--output-dir", str(seq_dir), "--name", "seq"], limit / 2)
    recs = _records(seq_dir)
    res["sequential"] = {"exit": rc, "wall_s": round(s, 1), "records": len(recs)}
    if recs:
        walls = [r.get("experiment_wall_time_s") or 0 for r in recs]
        train_s = [(r.get("train_time_s") or 0) for r in recs]
        eval_s = [(r.get("eval_time_s") or 0) for r in recs]
        per_exp = sum(walls) / len(walls)
        startup = max(0.0, s - sum(walls))
        res["sequential"].update(
            mean_experiment_s=round(per_exp, 2), mean_train_s=round(sum(train_s) / len(recs), 2),
            mean_eval_s=round(sum(eval_s) / len(recs), 2),
            mean_overhead_s=round(per_exp - (sum(train_s) + sum(eval_s)) / len(recs), 2),
            first_experiment_s=round(walls[0], 2), process_startup_and_analysis_s=round(startup, 1),
            statuses=sorted({r["status"] for r in recs}), tokens_per_s=round(sum(r.get("tokens_per_s") or 0
                                                                                 for r in recs) / len(recs)))
        # 270 x the mean of experiments 2..N (the first one pays compilation once per study) + the first + startup
        later = walls[1:] or walls
        res["estimate_270_sequential_min"] = round((walls[0] + 269 * sum(later) / len(later) + startup) / 60, 1)
    write(out, "grid.json", res)
    log(f"grid sequential: {res['sequential']}")
    if parallel > 1:
        par_dir = work / "parallel"
        procs, t0 = [], time.perf_counter()
        for i in range(parallel):
            procs.append(subprocess.Popen(ma + ["run", *common, "--output-dir", str(par_dir / f"p{i}"), "--name", "s"],
                                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(1.0, limit / 2 - (time.perf_counter() - t0))))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(124)
        wall = time.perf_counter() - t0
        recs = _records(par_dir)
        res["parallel"] = {"exits": codes, "wall_s": round(wall, 1), "records": len(recs),
                           "experiments_per_s": round(len(recs) / wall, 4) if wall else None}
        if recs and len(recs) == parallel * n:
            walls = [r.get("experiment_wall_time_s") or 0 for r in recs]
            shared = sum(walls) / len(walls)  # one experiment's wall time while P of them share the GPU
            startup = max(0.0, wall - n * shared)
            res["parallel"].update(mean_experiment_s=round(shared, 2), process_startup_and_analysis_s=round(startup, 1))
            res["estimate_270_parallel_min"] = round((startup + 270 / parallel * shared) / 60, 1)
        res["method"] = ("sequential: the first experiment (compiles) + 269 x the mean wall time of the later ones "
                         "+ process start and analysis; parallel: P processes each take 270/P experiments at the "
                         "mean wall time measured while P shared the GPU, + one process start and analysis")
    write(out, "grid.json", res)
    log(f"grid parallel: {res.get('parallel')}; 270-grid estimate: sequential {res.get('estimate_270_sequential_min')} "
        f"min, parallel {res.get('estimate_270_parallel_min')} min")
    return res


def summary(out: Path, env: dict, tests: dict | None, bench: list[dict], grid: dict | None) -> None:
    lines = [f"# gpu_check: {env.get('gpu', 'CPU (dry run)')}", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}; measured {env.get('matmul_dtype')} matmul "
             f"{env.get('matmul_n')}^3: {env.get('matmul_peak_gflops', 0):,.0f} GFLOP/s (the peak below)", ""]
    if tests:
        lines += [f"CUDA tier: {tests['summary']} (exit {tests['exit']})", ""]
    if bench:
        lines += ["| run | batch x seq | ms/step | tokens/s | model TFLOP/s | share of peak | peak mem GiB | Muon "
                  "share "
                  "| host syncs/step |", "|---|---|---|---|---|---|---|---|---|"]
        for r in bench:
            if r["exit"] != 0:
                lines.append(f"| {r['run']} | failed (exit {r['exit']}) | | | | | | | |")
                continue
            muon = (r.get("phase_share") or {}).get("muon")
            lines.append(f"| {r['run']} | {r['batch']} x {r['seq']} | {r['ms_per_step']:.1f} | "
                         f"{r['tokens_per_s']:,.0f} | "
                         f"{r['model_gflops_per_s'] / 1e3:.2f} | {r.get('share_of_measured_peak', float('nan')):.1%} | "
                         f"{r.get('peak_memory_gb', float('nan')):.2f} | "
                         f"{'' if muon is None else f'{muon:.1%}'} | {r.get('host_syncs_per_step', '')} |")
        prof = next((r["profile_summary"] for r in bench if r.get("profile_summary")), None)
        if prof:
            lines += ["", "Profile (device time per step by category, ms): " + ", ".join(
                f"{k} {v:.2f}" for k, v in prof["by_category_ms_per_step"].items()) +
                      f"; device busy {prof['device_busy_share']:.0%} of the wall time (host gaps "
                      f"{prof['host_gap_share']:.0%}); ranges: " + ", ".join(
                f"{k} {v:.2f}" for k, v in prof["ranges_ms_per_step"].items())]
    if grid:
        lines += ["", f"Grid slice ({grid.get('preset')}, {grid.get('steps')} steps): sequential "
                      f"{grid.get('sequential')}; parallel {grid.get('parallel')}",
                  f"270-experiment estimate: sequential {grid.get('estimate_270_sequential_min')} min, parallel "
                  f"{grid.get('estimate_270_parallel_min')} min ({grid.get('method', '')})"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    write(out, "summary.json", {"env": env, "tests": tests, "bench": bench, "grid": grid})
    print("\n".join(lines), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    p.add_argument("--steps", default="env,tests,bench,grid", help="comma-separated subset of env,tests,bench,grid")
    p.add_argument("--big-batch", type=int, default=64, help="the larger batch of the compiled bench runs")
    p.add_argument("--grid-n", type=int, default=2 if DRY else 6, help="experiments per grid process")
    p.add_argument("--grid-parallel", type=int, default=2 if DRY else 3, help="grid processes sharing the GPU")
    p.add_argument("--limit-env", type=float, default=60)
    p.add_argument("--limit-tests", type=float, default=150)
    p.add_argument("--limit-bench", type=float, default=75, help="seconds per bench run")
    p.add_argument("--limit-grid", type=float, default=240 if not DRY else 300)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if DRY else "cuda"
    steps = set(args.steps.split(","))
    t0 = time.perf_counter()
    env = step_env(out, device, args.limit_env) if "env" in steps else {}
    tests = step_tests(out, args.limit_tests) if "tests" in steps else None
    bench = step_bench(out, device, env.get("matmul_peak_gflops"), args.limit_bench, args.big_batch) \
        if "bench" in steps else []
    grid = step_grid(out, device, args.limit_grid, args.grid_n, args.grid_parallel) if "grid" in steps else None
    summary(out, env, tests, bench, grid)
    log(f"done in {time.perf_counter() - t0:.0f} s; files in {out}")
    failed = (tests is not None and tests["exit"] not in (0, 5)) or any(r["exit"] != 0 for r in bench) or \
        (grid is not None and "sequential" not in grid)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
