#!/usr/bin/env bash
# The GPU check of issue #6, in one call of under 8 minutes on a single H200:
# synthetic CIFAR-shaped data (50,000 images); time per epoch against batch size for resnet18 and
# mobilenetv3_large_100; the signal and profile overhead ratios; a 10-epoch fixed-vs-DEBA
# comparison for resnet18 with bf16 and channels_last; samples/s at batch 1024 against the same
# model fed from pre-made tensors. Writes benchmarks/results/<gpu-name>.{json,md} (or under $OUT).
#
# The machine has torch, timm and torchvision but no network: carry the other wheels in .whl/
# (omegaconf, antlr4-python3-runtime, pluggy, PyYAML; see ../.library/device/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m benchmarks --gpu --out "${OUT:-benchmarks/results}"
# docs/cluster.md: the same run on 1, 2, 4, ... GPUs (torchrun + DDP, NCCL), up to the GPUs present
python3 -m benchmarks.ddp --gpu --out "${OUT:-benchmarks/results}"
