#!/usr/bin/env bash
# Create (or reuse) the project's Python environment and install everything the tests need.
#
#   tools/setup_env.sh          every part (core, mmengine, mmseg with the mmcv build, detectron2)
#   tools/setup_env.sh core     only the core part (torch, numpy, OpenCV, tqdm: enough for the
#                               `segrefine` CLI, the Python API and `make demo`)
#
#   SEGREFINE_VENV   where the virtual environment lives (default ~/.cache/segrefine/venv)
#   SEGREFINE_CACHE  where built wheels are cached (default ~/.cache/segrefine/wheels)
#
# Each part in tools/env/NN_*.sh runs once and is skipped afterwards while its script is
# unchanged (a stamp file in the venv records the script's hash). Idempotent and resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
export SEGREFINE_VENV="${SEGREFINE_VENV:-$HOME/.cache/segrefine/venv}"
export SEGREFINE_CACHE="${SEGREFINE_CACHE:-$HOME/.cache/segrefine/wheels}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$SEGREFINE_CACHE"
if [ ! -x "$SEGREFINE_VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $SEGREFINE_VENV"
    "$PYTHON" -m venv "$SEGREFINE_VENV"
fi
export PIP="$SEGREFINE_VENV/bin/python -m pip"
case "${1:-all}" in
    core) parts=(tools/env/10_core.sh) ;;
    all) parts=(tools/env/[0-9]*.sh) ;;
    *) echo "usage: $0 [core|all]" >&2; exit 2 ;;
esac
for part in "${parts[@]}"; do
    stamp="$SEGREFINE_VENV/.segrefine-$(basename "$part" .sh)"
    want=$(sha256sum "$part" | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "[setup] $(basename "$part"): up to date"
        continue
    fi
    echo "[setup] $(basename "$part"): installing"
    bash "$part"
    echo "$want" > "$stamp"
done
$PIP install --quiet --no-deps --no-build-isolation -e .
echo "[setup] ready: $SEGREFINE_VENV"
