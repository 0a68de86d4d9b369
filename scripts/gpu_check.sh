#!/usr/bin/env bash
# One command for a lent GPU (see scripts/gpu_check.py for what it measures):
#
#   here, once:     bash scripts/gpu_wheels.sh           # py3.12 wheels the device image lacks -> .gpu_wheels/
#   on the device:  run(command="bash scripts/gpu_check.sh", carry=[".gpu_wheels"], timeout_s=540)
#   on CPU:         GPU_CHECK_DRY=1 bash scripts/gpu_check.sh /tmp/gpu_dry   # the same steps, tiny sizes
#
# On the device: a venv over the image's python3 (torch, transformers, pandas, scipy, statsmodels, seaborn...
# come from the image, --system-site-packages), the carried wheels installed into it with --no-deps, the
# project on PYTHONPATH (no build, no network). Results go to $1, else $OUT, else ./gpu_check_out.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
if [ -z "${GPU_CHECK_DRY:-}" ]; then
  V=/tmp/gpu_check_venv
  if [ ! -x "$V/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$V"
    if compgen -G ".gpu_wheels/*.whl" > /dev/null; then
      "$V/bin/python" -m pip install -q --no-deps --no-index .gpu_wheels/*.whl 2>&1 | tail -3
    else
      echo "no .gpu_wheels/: run scripts/gpu_wheels.sh here and carry .gpu_wheels"
    fi
  fi
  PY="$V/bin/python"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv 2>&1 | tee "$OUT_DIR/log.txt"
  "$PY" -c "import moe_ablate.cli, datasets, pydantic, statsmodels, seaborn, transformers; print('imports ok')" 2>&1 \
    | tail -2 | tee -a "$OUT_DIR/log.txt"
fi
exec "$PY" scripts/gpu_check.py --out "$OUT_DIR" "${@:2}"
