#!/usr/bin/env bash
# Core stack: one torch that can also carry mmcv (built with C++20 flags) and a torchvision
# that imports on CPU-only machines (DEPENDENCIES.md): the registry's torch 2.14.1 and
# torchvision 0.29.2. PIP_FIND_LINKS is emptied so pip does not pick a local CPU-only torch
# that no torchvision matches. setuptools<82 keeps pkg_resources for mmcv / detectron2.
set -euo pipefail
PIP_FIND_LINKS= $PIP install --quiet \
    "torch==2.14.1" "torchvision==0.29.2" "setuptools<82" wheel ninja \
    "numpy>=1.24" opencv-python-headless tqdm pillow \
    pytest pytest-timeout
