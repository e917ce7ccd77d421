"""MMSegmentation 1.x integration; importing it registers everything into mmseg's registries.

* ``MODELS``: ``CascadePSPRefiner``, ``CRMRefiner`` (the core refiners, :mod:`.refiners`) and
  ``RefinedSegmentor`` (:mod:`.segmentor`).
* ``HOOKS``: ``SegRefineHook`` (:mod:`.hook`), which refines the test (and optionally the
  validation) loop from the config's top-level ``refiner`` / ``refine_cfg`` entries.
* ``METRICS``: ``BoundaryMetric`` (:mod:`.metric`): mIoU, multi-class mBA, mean Boundary IoU.

Configs need no ``custom_imports``: the shipped fragment ``configs/_base_/segrefine_runtime.py``
names the hook by its import path (``type='segrefine_plugins.mmseg.SegRefineHook'``), which
mmengine imports, registering everything here. ``custom_imports =
dict(imports=['segrefine_plugins.mmseg'])`` in a config's own list works too (README, section
"MMSegmentation").
Needs mmseg 1.x, mmengine and the compiled mmcv (``make setup`` installs them).
"""
try:
    import mmseg.registry  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(f'segrefine_plugins.mmseg needs MMSegmentation 1.x with mmengine and the '
                      f'compiled mmcv ({err}); install them with `make setup` (tools/env/'
                      f'20_mmseg.sh) or `pip install segrefine_plugins[mmseg]`') from err

from .hook import SegRefineHook
from .images import original_image
from .metric import BoundaryMetric
from .refiners import REFINER_TYPES, build_mmseg_refiner, register_refiners
from .segmentor import RefinedSegmentor

__all__ = ['SegRefineHook', 'RefinedSegmentor', 'BoundaryMetric', 'REFINER_TYPES',
           'build_mmseg_refiner', 'register_refiners', 'original_image']
