"""Refining a detectron2 panoptic output ``(id_map, segments_info)``.

Every segment, things and stuff, is refined in its padded ROI and the results are fused with
the modified argmax (:func:`segrefine_plugins.multiobject.refine_segments`, stuff
probabilities multiplied by ``stuff_scale``). The output is consistent:

* ids are kept (a pixel only ever takes the id of a listed segment, or stays void = 0);
* ``area`` is recomputed for every segment (and added where the model gave none, as
  PanopticFPN does for things);
* segments that lose all their pixels are dropped from ``segments_info``;
* every other field (``isthing``, ``category_id``, ``score``, ``instance_id``, ...) is kept.

Works for PanopticFPN's and PanopticFCN's outputs alike (both give an int32 id map with 0 for
void and a list of dicts with ``id`` / ``isthing`` / ``category_id``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..inference.base import Refiner, tensor_from_numpy
from ..multiobject import RoiOptions, refine_segments

IdMap = Union[torch.Tensor, np.ndarray]


def check_segments_info(segments_info: Any) -> List[Dict[str, Any]]:
    """Validate a panoptic output's segment list alone (cheap: no pass over the id map).

    Returns:
        the list.

    Raises:
        ValueError: not a list (e.g. Panoptic-DeepLab's ``None``), entries without ``id`` /
            ``isthing``, repeated or non-positive ids.
    """
    if not isinstance(segments_info, (list, tuple)):
        raise ValueError(f'segments_info must be a list of dicts, got '
                         f'{type(segments_info).__name__} (outputs that encode the category in '
                         f'the id, segments_info=None, are not supported)')
    seen = set()
    for info in segments_info:
        if not isinstance(info, dict) or 'id' not in info or 'isthing' not in info:
            raise ValueError(f'every segments_info entry needs "id" and "isthing", got {info!r}')
        if not isinstance(info['isthing'], (bool, np.bool_, int, np.integer)):
            raise ValueError(f'"isthing" must be a bool, got {info["isthing"]!r} in {info!r} '
                             f'(a string such as "False" would read as true)')
        sid = int(info['id'])
        if sid <= 0 or sid in seen:
            raise ValueError(f'segment ids must be distinct and > 0, got {sid} in '
                             f'{[s.get("id") for s in segments_info]}')
        seen.add(sid)
    return list(segments_info)


def check_panoptic(id_map: IdMap, segments_info: Any,
                   shape: Tuple[int, int]) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Validate a panoptic output against the image size.

    Args:
        id_map: (H, W) integer tensor / array; 0 = void, segment ids > 0.
        segments_info: list of dicts, each with a distinct int ``id`` > 0 and ``isthing``.
        shape: (H, W) the output must have.

    Returns:
        the id map as an int64 numpy array and the list.

    Raises:
        ValueError: wrong size / dtype, ``segments_info`` not a list (e.g. Panoptic-DeepLab's
            ``None``, whose label-divisor encoding is not supported), entries without ``id`` /
            ``isthing``, repeated or non-positive ids, negative ids in the map, or ids in the
            map that ``segments_info`` does not list. Listed ids absent from the map are
            allowed (such segments have area 0 and are dropped from the output).
    """
    arr = id_map.detach().cpu().numpy() if isinstance(id_map, torch.Tensor) else id_map
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise ValueError(f'panoptic id map must be (H, W), got '
                         f'{getattr(arr, "shape", type(arr).__name__)}')
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f'panoptic id map must hold integers, got {arr.dtype}')
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f'panoptic id map is {arr.shape[0]}x{arr.shape[1]} but the image is '
                         f'{shape[0]}x{shape[1]}')
    seen = set(int(s['id']) for s in check_segments_info(segments_info))
    arr = arr.astype(np.int64, copy=False)
    present = np.unique(arr)
    if present.size and present[0] < 0:
        raise ValueError(f'panoptic id map has negative ids {present[present < 0].tolist()}; '
                         f'void must be 0')
    unknown = sorted(set(present.tolist()) - seen - {0})
    if unknown:
        raise ValueError(f'panoptic id map has ids {unknown} that segments_info does not list')
    return arr, list(segments_info)


def refine_panoptic(image: np.ndarray, id_map: IdMap, segments_info: Sequence[Dict[str, Any]],
                    refiner: Refiner, options: Union[RoiOptions, Mapping[str, Any], None] = None,
                    stats: Optional[Callable[[int, int], None]] = None,
                    soft_masks: Optional[Sequence[Optional[np.ndarray]]] = None,
                    **option_overrides: Any) -> Tuple[IdMap, List[Dict[str, Any]]]:
    """Refine every segment of a panoptic output and fuse them.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order (RGB unless ``refiner.bgr``).
        id_map: (H, W) integer tensor or array, 0 = void.
        segments_info: detectron2's list of segment dicts (``id``, ``isthing``,
            ``category_id``, ...).
        refiner: a segrefine Refiner.
        options: :class:`~segrefine_plugins.multiobject.RoiOptions` (or a dict of its fields;
            ``**option_overrides`` replace them): ``roi_padding``, ``min_area`` (segments of
            <= ``min_area`` pixels are not refined but may still lose pixels to a refined
            neighbour), ``stuff_scale``, ``max_upscale``, ``roi_batch_size``, the gate.
        stats: called with (segments refined, segments the do-no-harm gate kept coarse).
        soft_masks: optional soft coarse input, aligned with ``segments_info``: per segment an
            (H, W) float probability map in [0, 1] or None (hard), e.g.
            :func:`~segrefine_plugins.detectron2.soft_coarse.panoptic_soft_masks`. Only a
            refiner with ``soft_input=True`` reads the values; ROIs, the gate and the fusion
            still come from the id map.

    Returns:
        ``(id_map, segments_info)``: the id map in the input's type, dtype and device, and new
        dicts (deep copies; the input is not modified), in input order, without the segments
        that vanished, with ``area`` recomputed.

    Raises:
        ValueError: see :func:`check_panoptic`.
    """
    arr, infos = check_panoptic(id_map, segments_info, image.shape[:2])
    ids = np.array([int(s['id']) for s in infos], dtype=np.int64)
    if ids.size:
        masks = arr[None] == ids[:, None, None]
        res = refine_segments(image, masks, refiner, RoiOptions.from_any(
                                  options, **option_overrides), ids=ids.tolist(),
                              is_stuff=[not bool(s['isthing']) for s in infos],
                              fuse=True, background_id=0, fallback=arr,
                              soft_masks=None if soft_masks is None else list(soft_masks))
        if stats is not None:  # (segments refined, segments the gate kept coarse)
            stats(len({i for i, _ in res.rois}), len(res.gated))
        refined = res.id_map
    else:
        refined = arr.copy()
    out_infos = _recount(refined, infos)
    return _like(refined, id_map), out_infos


def _recount(id_map: np.ndarray, infos: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """New segments_info: areas from ``id_map``, vanished segments dropped."""
    ids, counts = np.unique(id_map, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    out = []
    for info in infos:
        n = area.get(int(info['id']), 0)
        if n > 0:
            new = copy.deepcopy(info)
            new['area'] = int(n)
            out.append(new)
    return out


def _like(arr: np.ndarray, ref: IdMap) -> IdMap:
    if isinstance(ref, torch.Tensor):
        return tensor_from_numpy(arr.astype(np.int64, copy=False)).to(device=ref.device,
                                                                      dtype=ref.dtype)
    return arr.astype(ref.dtype, copy=False)


__all__ = ['refine_panoptic', 'check_panoptic', 'check_segments_info']
