#!/usr/bin/env bash
# The WSD trunk/branch machinery and the scaling study on CUDA (bf16 + torch.compile), in one short run:
#
#   bash scripts/device_check.sh [OUT_DIR]
#
# 1. WSD horizons {200, 400} x 2 seeds on the seed model, branched, against the 200-step horizon run on its
#    own: on CUDA (bf16 autocast, nondeterministic kernels) a branch cannot be bitwise the dedicated run, so
#    this prints how far apart they land next to the seed-to-seed spread.
# 2. configs/scaling.toml's quick ladder (3 widths x 3 LRs x 2 seeds, 300 steps): the whole scaling
#    pipeline on the GPU, its answer and timings.
# Copies the reports, scaling_law.json and the figure to OUT_DIR (default $OUT, else ./device_out).
set -uo pipefail
OUT_DIR=${1:-${OUT:-./device_out}}
# a CPU smoke test of this script: PRESET=tiny H1=20 H2=40 SCALE_STEPS=10 bash scripts/device_check.sh /tmp/x
PRESET=${PRESET:-seed} H1=${H1:-200} H2=${H2:-400} SCALE_STEPS=${SCALE_STEPS:-300}
mkdir -p "$OUT_DIR"
W=$(mktemp -d)
export PYTHONUNBUFFERED=1
MA="python3 -m moe_ablate"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

cat > "$W/wsd.toml" <<EOF
[study]
name = "wsd_cuda"
preset = "$PRESET"
seeds = 2
confirm = 0
[base.train]
schedule = "wsd"
warmup_steps = 20
min_lr_frac = 0.0
eval_every = 50
eval_batches = 8
log_every = 25
compile = true
[base.data]
builtin_documents = 8000
cache_dir = "$W/cache"
[grid.train]
steps = [$H1, $H2]
muon_lr = [0.02]
EOF
sed -e "s/steps = \[$H1, $H2\]/steps = [$H1]/" -e 's/wsd_cuda/wsd_cuda_dedicated/' "$W/wsd.toml" > "$W/wsd_dedicated.toml"

t0=$(date +%s)
$MA run --config "$W/wsd.toml" --output-dir "$W" --name branched --no-progress ${DEVICE_FLAGS:-} 2>&1 | grep -v "step [0-9]*/" | tail -25
t1=$(date +%s)
$MA run --config "$W/wsd_dedicated.toml" --output-dir "$W" --name dedicated --no-progress ${DEVICE_FLAGS:-} 2>&1 | tail -4
t2=$(date +%s)
echo "wall: branched study ($H1+$H2 steps, 2 seeds) $((t1 - t0)) s, dedicated $H1-step study (2 seeds) $((t2 - t1)) s"
python3 - "$W" "$H1" <<'EOF'
import json, sys
from pathlib import Path
w, h1 = Path(sys.argv[1]), int(sys.argv[2])
recs = lambda d: {r["hyperparameters"]["seed"]: r for r in (json.loads(p.read_text()) for p in (w / d / "experiments").glob("*.json"))
                  if r["config"]["train"]["steps"] == h1}
b, d = recs("branched"), recs("dedicated")
for seed in sorted(b):
    print(f"seed {seed}: branch val_loss {b[seed]['val_loss']:.5f} (from {b[seed].get('branched_from')}), dedicated "
          f"{d[seed]['val_loss']:.5f}, |diff| {abs(b[seed]['val_loss'] - d[seed]['val_loss']):.5f}; amp {b[seed]['amp']}, "
          f"compiled {b[seed]['compiled']}, {b[seed]['tokens_per_s']:,.0f} tok/s")
seeds = sorted(d)
if len(seeds) == 2:
    print(f"seed-to-seed |diff| of the dedicated runs: {abs(d[seeds[0]]['val_loss'] - d[seeds[1]]['val_loss']):.5f}")
print(json.dumps(json.loads((w / "branched" / "branching.json").read_text())["families"], indent=None)[:600])
EOF

[ -n "${SKIP_SCALING:-}" ] && exit 0
t3=$(date +%s)
$MA scaling --config scaling --quick --steps $SCALE_STEPS --seeds 2 --preset $PRESET --builtin-documents 8000 --cache-dir "$W/cache" \
  --output-dir "$W" --name scaling_quick --no-progress ${DEVICE_FLAGS:-} 2>&1 | grep -v "step [0-9]*/" | tail -12
t4=$(date +%s)
echo "wall: scaling quick ladder (18 runs x $SCALE_STEPS steps) $((t4 - t3)) s"
for f in branched/report.md branched/branching.json scaling_quick/report.md scaling_quick/scaling_law.json \
         scaling_quick/scaling_law.png; do
  cp "$W/$f" "$OUT_DIR/$(echo "$f" | tr '/' '_')" 2>/dev/null
done
ls -la "$OUT_DIR"
