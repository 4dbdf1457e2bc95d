#!/usr/bin/env bash
# Set up .venv with the CPU build of torch first: an unpinned torch pulled in by another package
# would fetch gigabytes of CUDA wheels on a CPU-only machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
# train: torch (pinned above), transformers and the rest of training; serve alone is torch-free.
# ray: ~70 MB of wheels and a few small dependencies, so its tests (tests/test_ray.py, under a minute) run in CI;
# openvino: ~60 MB (openvino and nncf), so tests/test_openvino.py runs in CI too.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[train,onnx,serve,parquet,ray,ray-serve,openvino,dev]"
echo "toxdistill set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
