#!/usr/bin/env bash
# Export stack for segrefine_plugins.export and its tests (issue 13, item 5): onnx (the file
# format, checker), onnxscript (torch.onnx's default dynamo exporter builds on it) and
# onnxruntime (CPU inference of the exported networks; the benchmark's backend='onnxruntime'
# mode). All optional for the core package: export / the onnxruntime backend say what is
# missing when these are not installed. A constraints file keeps the core stack where
# 10_core.sh put it (no other torch, numpy 2 kept).
set -euo pipefail
: "${PIP:?run through tools/setup_env.sh}" "${SEGREFINE_VENV:?}"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$SEGREFINE_VENV/bin/python" - > "$constraints" <<'PYEOF'
from importlib.metadata import version
for name in ("torch", "torchvision", "numpy"):
    print(f"{name}=={version(name)}")
print("setuptools<82")
PYEOF
PIP_FIND_LINKS= $PIP install --quiet -c "$constraints" \
    "onnx==1.23.2" "onnxruntime==1.31.1" "onnxscript==0.7.2"
"$SEGREFINE_VENV/bin/python" -c "import onnx, onnxruntime, onnxscript; print('onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'onnxscript', onnxscript.__version__)"
