#!/usr/bin/env bash
# The GPU check: on a GPU machine with only this repository, set up, run the CUDA tests, then
# measure step times, FPS, peak memory and the ratios in one process (gfl-repro gpu-check).
# Writes results/gpu/gpu_check.csv, results/gpu/cuda_tests.txt and results/gpu/cuda_report.jsonl.
# Usage: tools/gpu_check.sh [OUT_DIR]   (make gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/gpu}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}

# Set up. A machine without the package index (a lent GPU node) uses the Python and torch it
# has, with the source tree on PYTHONPATH (below): no venv, since its python3 may itself be a venv
# whose packages a --system-site-packages venv would not see, and its Python may be newer than
# pyproject's range. A package it lacks (pycocotools, tidecv-light) travels as a wheel: pip
# install --target DIR, and DIR on PYTHONPATH before calling this script.
if [ -x .venv/bin/python ] && .venv/bin/python -c "import gfl_repro, torch" 2>/dev/null; then
  py=.venv/bin/python
elif "$PYTHON" -c "import torch, torchvision, pycocotools, scipy, pandas" 2>/dev/null; then
  py=$PYTHON
else
  make setup
  py=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"

# The CUDA tests (skipped without a device); the R-50 peak memory goes to cuda_report.jsonl.
rm -f "$out/cuda_report.jsonl"
GFL_GPU_REPORT="$out/cuda_report.jsonl" timeout 240 "$py" -m pytest tests/test_cuda.py -v -rs -p no:cacheprovider \
  | tee "$out/cuda_tests.txt" || echo "gpu_check: CUDA tests failed (see $out/cuda_tests.txt)" >&2

# The measurements, interleaved in one process.
timeout 300 "$py" -m gfl_repro.cli gpu-check --out "$out/gpu_check.csv" ${GPU_CHECK_ARGS:-}
