"""Detectron2 integration: refine panoptic, instance / entity and semantic outputs.

    from segrefine_plugins.detectron2 import add_segrefine_config, wrap_model
    cfg = get_cfg(); add_segrefine_config(cfg); cfg.merge_from_file(...)
    model = build_model(cfg)        # MODEL.META_ARCHITECTURE: SegRefineWrapper
    model = wrap_model(model, refiner)   # or wrap a model built by other means

Importing this package imports detectron2 (and registers ``SegRefineWrapper`` in its
``META_ARCH_REGISTRY``); the rest of segrefine_plugins never does.
"""
try:
    import detectron2  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'segrefine_plugins.detectron2 needs detectron2, which has no PyPI wheels: install it '
        'from source (see the README section "Detectron2"), or run `make setup`, which builds '
        'a CPU-capable detectron2 0.5 into the project environment') from err

from .config import add_segrefine_config, build_refiner_from_cfg, refiner_config
from .instances import masks_to_bool, refine_instances
from .panoptic import check_panoptic, refine_panoptic
from .soft_coarse import panoptic_soft_masks, sem_seg_probs
from .wrapper import SegRefineWrapper, image_for_refiner, wrap_model, wrapper_options

__all__ = ['add_segrefine_config', 'build_refiner_from_cfg', 'refiner_config',
           'SegRefineWrapper', 'wrap_model', 'wrapper_options', 'image_for_refiner', 'refine_panoptic',
           'check_panoptic', 'refine_instances', 'masks_to_bool', 'panoptic_soft_masks',
           'sem_seg_probs']
