#!/usr/bin/env bash
# mmengine 0.10.7 (training runners, registries) for segrefine_plugins.training and tools/train.py.
# A constraints file keeps the core stack (torch 2.14.1, torchvision 0.29.2, numpy 2) where
# 10_core.sh put it: mmengine must not pull another torch or downgrade numpy.
set -euo pipefail
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf '%s\n' "torch==2.14.1" "torchvision==0.29.2" "numpy>=2" "setuptools<82" > "$constraints"
PIP_FIND_LINKS= $PIP install --quiet -c "$constraints" "mmengine==0.10.7"
"${SEGREFINE_VENV}/bin/python" -c "import mmengine, torch; assert mmengine.__version__ == '0.10.7'; print('mmengine', mmengine.__version__, 'torch', torch.__version__)"
