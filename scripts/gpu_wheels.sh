#!/usr/bin/env bash
# Fetch, on this machine (which reaches PyPI), the Python 3.12 wheels that the device image lacks, into
# .gpu_wheels/ (git-ignored), so that `run` can carry them: the device reaches no registry. The image has
# torch, transformers, tokenizers, pandas, scipy, statsmodels, seaborn, matplotlib, tqdm, pyarrow, pytest and
# hypothesis already (see the device notes); it lacks datasets (with dill, multiprocess) and pydantic.
#   bash scripts/gpu_wheels.sh && carry .gpu_wheels
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu_wheels
mkdir -p "$dest"
common=(--quiet --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$dest")
# pydantic with its own dependencies (pydantic-core is pinned by pydantic: resolve them together)
pip download "${common[@]}" "pydantic>=2" 2>&1 | grep -v "^WARNING: Location" || true
# datasets without its dependencies: the image has pandas, pyarrow, fsspec, huggingface-hub, xxhash
pip download "${common[@]}" --no-deps datasets dill multiprocess 2>&1 | grep -v "^WARNING: Location" || true
rm -f "$dest"/typing_extensions-*.whl  # the image's own is newer than pydantic needs
ls -1 "$dest"
