#!/usr/bin/env bash
# Detectron2 stack (optional extra, needed by tests marked `detectron2`).
#
# Detectron2 publishes no wheels (DEPENDENCIES.md). PyPI's `detectron2-cdo==0.5` is an sdist of
# detectron2 v0.5's Python code without its C++ sources, so it does not build as published.
# This script builds it once into a wheel cached in $SEGREFINE_CACHE, with these changes:
#   * no C++ extension: `ext_modules=[]`, and `detectron2/_C.py` is a stub whose attributes
#     raise a clear error (rotated boxes, deformable conv and the fast COCO evaluator need the
#     real extension; PanopticFPN / Mask R-CNN inference and the Python COCO evaluator do not);
#   * `Image.LINEAR` -> `Image.BILINEAR` (removed in Pillow 10);
#   * the removed numpy aliases `np.bool` / `np.int` / `np.float` / `np.str` / `np.object` ->
#     the builtins;
#   * the model-zoo configs are copied to a top-level `configs/` so setup.py packages them
#     (`model_zoo.get_config_file(...)` works);
#   * install_requires without `black==21.4b2`, `tensorboard`, `future`, `pydot` (used only by
#     LazyConfig.save's formatting, the training event writer and caffe2 export);
#   * version `0.5+segrefine1` so the patched build is recognisable in `pip list`.
# Then pycocotools, fvcore / iopath and the other pure-Python dependencies, and the COCO
# panoptic `pq_compute` (panopticapi-lite 0.2.0, installed with --no-deps: it declares numpy<2,
# but its evaluation code runs on numpy 2; the check at the end runs pq_compute on a tiny case).
# torch / torchvision / numpy are pinned with a constraints file so nothing here replaces them.
set -euo pipefail
: "${PIP:?run through tools/setup_env.sh}" "${SEGREFINE_VENV:?}" "${SEGREFINE_CACHE:?}"
PY="$SEGREFINE_VENV/bin/python"
D2_SUFFIX="+segrefine1"            # bump when the patches below change
WHEEL_DIR="$SEGREFINE_CACHE/detectron2"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

CONSTRAINTS="$WORK/constraints.txt"
"$PY" - "$CONSTRAINTS" <<'EOF'
import sys, numpy, torch, torchvision
pins = [f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}", "numpy>=2"]
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
EOF
echo "[30_detectron2] constraints: $(tr '\n' ' ' < "$CONSTRAINTS")"

# Runtime dependencies of detectron2 0.5 (its install_requires minus the ones dropped above).
PIP_FIND_LINKS= $PIP install --quiet -c "$CONSTRAINTS" \
    "pycocotools>=2.0.2" "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" \
    "yacs>=0.1.6" "termcolor>=1.1" tabulate cloudpickle matplotlib \
    "omegaconf>=2.1" "hydra-core>=1.1" "Pillow>=7.1" "tqdm>4.29.0"

WHEEL=$(ls "$WHEEL_DIR"/detectron2_cdo-0.5"$D2_SUFFIX"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
    echo "[30_detectron2] building detectron2-cdo 0.5 without its C++ extension"
    PIP_FIND_LINKS= $PIP download --quiet --no-deps --no-build-isolation --no-binary :all: \
        "detectron2-cdo==0.5" \
        -d "$WORK"
    tar -xzf "$WORK"/detectron2_cdo-0.5.tar.gz -C "$WORK"
    SRC="$WORK/detectron2_cdo-0.5"
    "$PY" - "$SRC" <<'EOF'
import pathlib, re, shutil, sys
src = pathlib.Path(sys.argv[1])

setup = src / "setup.py"
text = setup.read_text()
for old, new in [("ext_modules=get_extensions(),", "ext_modules=[],"),
                 ('"black==21.4b2",', ""), ('"tensorboard",', ""),
                 ('"future",  # used by caffe2', ""), ('"pydot",  # used to save caffe2 SVGs', "")]:
    if old not in text:
        sys.exit(f"setup.py patch failed: {old!r} not found")
    text = text.replace(old, new)
setup.write_text(text)

(src / "detectron2" / "_C.py").write_text('''\
"""Stand-in for detectron2's C++ extension, which this Python-only build does not have.

Importing it works (several modules import it at load time); using any operator raises.
"""


def __getattr__(name):
    raise AttributeError(
        f"detectron2._C.{name} is not available: this detectron2 was built without its C++ "
        "extension (rotated boxes, deformable conv, the fast COCO evaluator need it)")
''')

alias = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?!_)")
changed = 0
for py in list(src.glob("detectron2/**/*.py")) + list(src.glob("projects/**/*.py")):
    text = py.read_text()
    new = alias.sub(r"\1", text).replace("Image.LINEAR", "Image.BILINEAR")
    if new != text:
        py.write_text(new)
        changed += 1
print(f"[30_detectron2] patched numpy aliases / Image.LINEAR in {changed} files")

# setup.py packages the model-zoo configs only from a top-level configs/ folder.
shutil.copytree(src / "detectron2" / "model_zoo" / "configs", src / "configs")
EOF
    (cd "$SRC" && D2_VERSION_SUFFIX="$D2_SUFFIX" PIP_FIND_LINKS= $PIP wheel --quiet --no-deps \
        --no-build-isolation -w "$WORK/dist" .)
    mkdir -p "$WHEEL_DIR"
    cp "$WORK"/dist/detectron2_cdo-*.whl "$WHEEL_DIR"/
    WHEEL=$(ls "$WHEEL_DIR"/detectron2_cdo-0.5"$D2_SUFFIX"-*.whl | head -n1)
fi
echo "[30_detectron2] installing $(basename "$WHEEL")"
$PIP install --quiet --no-deps --force-reinstall "$WHEEL"

# COCO panoptic PQ. panopticapi-lite declares numpy<2; its pq_compute works on numpy 2.
PIP_FIND_LINKS= $PIP install --quiet --no-deps "panopticapi-lite==0.2.0"

# Check: detectron2 imports with its model-zoo configs, PanopticFPN builds, pq_compute runs.
"$PY" - <<'EOF'
import json, os, tempfile
import numpy as np
from PIL import Image
import detectron2
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from panopticapi.evaluation import pq_compute

cfg = get_cfg()
cfg.merge_from_file(model_zoo.get_config_file("COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"))
cfg.MODEL.DEVICE = "cpu"
build_model(cfg)

with tempfile.TemporaryDirectory() as d:
    ids = np.zeros((8, 8), np.uint32); ids[2:6, 2:6] = 1; ids[ids == 0] = 2
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    cats = [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 16},
            {"id": 2, "category_id": 2, "iscrowd": 0, "area": 48}]
    for name in ("gt", "pred"):
        os.makedirs(os.path.join(d, name))
        Image.fromarray(rgb).save(os.path.join(d, name, "a.png"))
        json.dump({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": cats,
                   "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segs}]},
                  open(os.path.join(d, name + ".json"), "w"))
    res = pq_compute(os.path.join(d, "gt.json"), os.path.join(d, "pred.json"))
    assert abs(res["All"]["pq"] - 1.0) < 1e-9, res
print(f"[30_detectron2] detectron2 {detectron2.__version__}, numpy {np.__version__}: "
      "PanopticFPN builds, pq_compute works")
EOF
