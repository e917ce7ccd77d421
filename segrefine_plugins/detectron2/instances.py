"""Refining detectron2 ``Instances`` masks (instance and entity segmentation).

Each mask of ``pred_masks`` is refined in its bounding box grown by ``roi_padding``
(:func:`segrefine_plugins.multiobject.refine_segments`):

* instances (may overlap, e.g. Mask R-CNN, PanopticFCN's things): every mask on its own;
* entities (non-overlapping, e.g. EntitySeg), ``fuse=True``: the modified argmax over all of
  them, in order (higher-scored first where masks overlap), as for panoptic segments.

With ``soft_coarse`` and float ``pred_masks`` (probabilities), each ROI's coarse input is the
mask's probability instead of its 0 / 1 threshold (a refiner with ``soft_input=True`` reads it
linearly); boolean / integer masks have no soft values and are used as they are.

Scores, classes, boxes and every other field are kept; the number and order of instances never
change (a mask the fusion empties stays, empty, with its score). ``recompute_boxes`` replaces
``pred_boxes`` by the refined masks' boxes (detectron2's ``BitMasks.get_bounding_boxes``
convention; an empty mask gets (0, 0, 0, 0)).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..inference.base import Refiner
from ..multiobject import RoiOptions, refine_segments


def _mask_tensor(pred_masks: Any) -> Any:
    """The tensor of ``pred_masks``: a BitMasks' ``tensor``, (N, 1, H, W) as (N, H, W); any
    other object as it is (the callers check it)."""
    from detectron2.structures import BitMasks

    masks = pred_masks.tensor if isinstance(pred_masks, BitMasks) else pred_masks
    if isinstance(masks, torch.Tensor) and masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    return masks


def masks_to_bool(pred_masks: Any, shape: Tuple[int, int],
                  mask_threshold: float = 0.5) -> torch.Tensor:
    """``pred_masks`` (BitMasks, or an (N, H, W) / (N, 1, H, W) tensor) -> (N, H, W) bool.

    Float masks are probabilities: foreground where > ``mask_threshold``. Integer masks:
    foreground where non-zero.

    Raises:
        ValueError: another type (e.g. a non-empty list), another shape, or masks of another
            size than ``shape`` (e.g. Mask R-CNN's 28x28 masks before post-processing).
    """
    masks = _mask_tensor(pred_masks)
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f'pred_masks must be a BitMasks or a tensor, got '
                         f'{type(pred_masks).__name__}')
    if masks.dim() != 3:
        raise ValueError(f'pred_masks must be (N, H, W) or (N, 1, H, W), got {tuple(masks.shape)}')
    if tuple(masks.shape[1:]) != tuple(shape):
        raise ValueError(f'pred_masks are {masks.shape[1]}x{masks.shape[2]} but the image is '
                         f'{shape[0]}x{shape[1]} (pass post-processed, full-size masks)')
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point():
        return masks > mask_threshold
    return masks != 0


def soft_mask_probs(pred_masks: Any, indices: Optional[Sequence[int]] = None
                    ) -> Optional[np.ndarray]:
    """Float ``pred_masks`` -> (N, H, W) float32 probabilities in [0, 1] (with ``indices``:
    only those masks, in that order); None for boolean / integer masks (BitMasks included),
    which carry no soft values.

    Raises:
        ValueError: NaN / inf, or values outside [0, 1] (beyond 1e-3 of rounding).
    """
    masks = _mask_tensor(pred_masks)
    if not isinstance(masks, torch.Tensor) or not masks.is_floating_point():
        return None
    if indices is not None:
        masks = masks[torch.as_tensor(list(indices), dtype=torch.long, device=masks.device)]
    arr = masks.detach().float().cpu().numpy()
    if not np.isfinite(arr).all():
        raise ValueError('pred_masks hold NaN / inf values')
    if arr.size and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
        raise ValueError(f'soft_coarse reads float pred_masks as probabilities in [0, 1], got '
                         f'values in [{arr.min():.3g}, {arr.max():.3g}] (logits? apply a '
                         f'sigmoid first)')
    return np.clip(arr, 0.0, 1.0)


def _restore_type(refined: torch.Tensor, like: Any) -> Any:
    """(N, H, W) bool -> the container / dtype / shape of ``like`` (float and int as 0 / 1)."""
    from detectron2.structures import BitMasks

    if isinstance(like, BitMasks):
        return BitMasks(refined.to(like.tensor.device))
    out = refined.to(device=like.device, dtype=like.dtype)
    return out[:, None] if like.dim() == 4 else out


def refine_instances(image: np.ndarray, instances: Any, refiner: Refiner, *,
                     options: Union[RoiOptions, Mapping[str, Any], None] = None, fuse: bool = False,
                     recompute_boxes: bool = False, mask_threshold: float = 0.5,
                     soft_coarse: bool = False,
                     stats: Optional[Callable[[int, int], None]] = None,
                     **option_overrides: Any) -> Any:
    """Refine the masks of a detectron2 ``Instances``.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order, the size of the masks.
        instances: ``Instances`` with ``pred_masks`` (BitMasks or tensor, full size). Without
            ``pred_masks``, or with no instance (PanopticFCN then stores plain empty lists), it
            is returned as it is.
        refiner: a segrefine Refiner.
        options: :class:`~segrefine_plugins.multiobject.RoiOptions` (or a dict of its fields;
            ``**option_overrides`` replace them), see
            :func:`~segrefine_plugins.multiobject.refine_segments`.
        stats: called with (instances refined, instances the do-no-harm gate kept coarse).
        fuse: entities: fuse the masks into a non-overlapping set (modified argmax).
        recompute_boxes: replace ``pred_boxes`` by the refined masks' boxes.
        mask_threshold: binarises float (probability) masks.
        soft_coarse: float masks are also given to the refiner as probabilities (values in
            [0, 1], else ValueError; ``mask_threshold`` must be 0.5, the refiner's own); ROIs,
            the gate and ``fuse`` still use the binarised masks.

    Returns:
        a new ``Instances`` (same image size and fields; ``pred_masks`` in the input's
        container, dtype and device).

    Raises:
        ValueError: see :func:`masks_to_bool`; also when ``instances.image_size`` differs from
            the image.
    """
    from detectron2.structures import BitMasks, Boxes, Instances

    if not instances.has('pred_masks') or len(instances) == 0:
        return instances
    shape = tuple(image.shape[:2])
    if tuple(instances.image_size) != shape:
        raise ValueError(f'instances.image_size {tuple(instances.image_size)} differs from the '
                         f'image size {shape}')
    pred_masks = instances.pred_masks
    masks = masks_to_bool(pred_masks, shape, mask_threshold).cpu().numpy()
    soft = soft_mask_probs(pred_masks) if soft_coarse else None
    if soft is not None and mask_threshold != 0.5:
        raise ValueError(f'soft_coarse needs mask_threshold=0.5 (the soft refiner reads '
                         f'probabilities at 0.5), got {mask_threshold}')
    res = refine_segments(image, masks, refiner, RoiOptions.from_any(options, **option_overrides),
                          fuse=fuse, soft_masks=soft)
    if stats is not None:  # (segments refined, segments the gate kept coarse)
        stats(len({i for i, _ in res.rois}), len(res.gated))
    refined = torch.from_numpy(np.ascontiguousarray(res.masks))
    out = Instances(instances.image_size)
    for name, value in instances.get_fields().items():
        out.set(name, value)
    out.pred_masks = _restore_type(refined, pred_masks)
    if recompute_boxes:
        old = instances.get('pred_boxes') if instances.has('pred_boxes') else None
        boxes = BitMasks(refined).get_bounding_boxes()
        if isinstance(old, Boxes):
            boxes = Boxes(boxes.tensor.to(device=old.tensor.device, dtype=old.tensor.dtype))
        out.pred_boxes = boxes
    return out


__all__ = ['refine_instances', 'masks_to_bool', 'soft_mask_probs']
