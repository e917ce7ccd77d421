#!/usr/bin/env bash
# OpenMMLab stack for the MMSegmentation adapter (DEPENDENCIES.md, "OpenMMLab"):
# mmengine 0.10.7, full mmcv 2.1.0 (compiled ops; mmseg imports mmcv.ops), mmsegmentation
# 1.2.2 and the two packages mmseg needs without declaring them (ftfy, regex).
#
# mmcv 2.1.0 exists only as an sdist, and its setup.py asks for -std=c++14/17 while torch
# 2.14's headers need C++20. It is therefore downloaded, patched to -std=c++20 and built ONCE
# (about 12 minutes on 2 cores) into a wheel cached under $SEGREFINE_CACHE, keyed by the
# Python and torch versions it was compiled against; later runs install that wheel.
#
# The installed torch / torchvision / numpy are held fixed with a constraints file, and
# opencv-python (pulled in by mmcv / mmengine) is pinned to the installed
# opencv-python-headless version so both distributions ship the same cv2.
set -euo pipefail
: "${PIP:?run through tools/setup_env.sh}" "${SEGREFINE_VENV:?}" "${SEGREFINE_CACHE:?}"
MMCV_VERSION=2.1.0
PY="$SEGREFINE_VENV/bin/python"
export PIP_FIND_LINKS=   # no local torch wheels: the constraints decide

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- constraints: keep the core stack exactly as installed -------------------------------
"$PY" - > "$work/constraints.txt" <<'EOF'
from importlib.metadata import version, PackageNotFoundError
for name in ("torch", "torchvision", "numpy"):
    print(f"{name}=={version(name)}")
try:
    print(f"opencv-python=={version('opencv-python-headless')}")
except PackageNotFoundError:
    pass
print("setuptools<82")
EOF
echo "[20_mmseg] constraints:"; sed 's/^/    /' "$work/constraints.txt"

# --- mmcv: cached wheel, built from the patched sdist when missing ------------------------
key=$("$PY" -c 'import sys, torch; print("cp%d%d-torch%s" % (sys.version_info[0], sys.version_info[1], torch.__version__.split("+")[0]))')
wheel_dir="$SEGREFINE_CACHE/mmcv-$MMCV_VERSION-$key"
wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
    echo "[20_mmseg] building mmcv $MMCV_VERSION for $key (slow, about 12 min on 2 cores)"
    $PIP download --quiet --no-deps --no-binary :all: -d "$work/sdist" "mmcv==$MMCV_VERSION"
    tar -xzf "$work"/sdist/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    if grep -qE -- '-std=c\+\+1[47]' "$src/setup.py" || ! grep -q -- '-std=c++20' "$src/setup.py"; then
        echo "[20_mmseg] could not patch the C++ standard in mmcv's setup.py" >&2
        exit 1
    fi
    mkdir -p "$work/wheel"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" nice -n 5 \
        $PIP wheel --no-deps --no-build-isolation -w "$work/wheel" "$src"
    mkdir -p "$wheel_dir"
    built=$(ls "$work"/wheel/mmcv-"$MMCV_VERSION"-*.whl)
    cp "$built" "$wheel_dir/.$(basename "$built").part"
    mv "$wheel_dir/.$(basename "$built").part" "$wheel_dir/$(basename "$built")"
    wheel="$wheel_dir/$(basename "$built")"
fi
echo "[20_mmseg] installing $wheel"

# --- install everything against the constraints -------------------------------------------
$PIP install --quiet -c "$work/constraints.txt" \
    "$wheel" "mmengine==0.10.7" "mmsegmentation==1.2.2" ftfy regex

# --- check: compiled ops present, mmseg imports, core stack untouched ----------------------
"$PY" - <<'EOF'
import numpy, torch, torchvision, cv2, mmcv, mmengine, mmseg
from mmcv.ops import nms  # needs the compiled mmcv._ext
import mmseg.models, mmseg.apis  # noqa: F401
print(f"[20_mmseg] ok: mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, "
      f"mmseg {mmseg.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"numpy {numpy.__version__}, cv2 {cv2.__version__}")
EOF
