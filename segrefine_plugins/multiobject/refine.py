"""Refining many objects with a single-object refiner: label maps and segment lists.

:func:`refine_label_map` is CascadePSP's published scene-parsing protocol (REFERENCE.md
section 4) for any semantic label map; :func:`refine_segments` applies it to a list of segment
masks (panoptic segments, entities, instances). Each ROI goes through ``refiner.refine`` (so
CascadePSP and CRM both work, with their own settings) and is fused at once
(:class:`~segrefine_plugins.multiobject.fusion.ModifiedArgmax`): no (N, H, W) float array is
ever allocated unless asked for (``return_probs``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..inference.base import Refiner, check_image
from .components import (Box, Roi, check_binary_mask, check_label_map, check_roi_options,
                         ensure_min_size, label_map_rois, segment_rois)
from .fusion import ModifiedArgmax

#: The published multiplier of 'stuff' probabilities in the fusion.
STUFF_SCALE = 0.51


@dataclass
class LabelMapResult:
    """Output of :func:`refine_label_map`.

    Attributes:
        labels: (H, W) refined class ids, the input's dtype.
        confidence: (H, W) float32 fused confidence (0.5 where no refined probability won;
            stuff probabilities are the scaled ones), or None unless requested.
        rois: ``(class_id, (y0, y1, x0, x1))`` of every refined ROI, in refinement order.
    """

    labels: np.ndarray
    confidence: Optional[np.ndarray]
    rois: List[Tuple[int, Box]]


@dataclass
class SegmentsResult:
    """Output of :func:`refine_segments`.

    Attributes:
        ids: the N segment ids, in input order.
        id_map: (H, W) int64 fused id map (``fuse=True``), else None.
        confidence: (H, W) float32 fused confidence (``fuse=True``), else None.
        probs: (N, H, W) float32 refined probabilities, 0 outside a segment's ROIs
            (``return_probs=True`` only), else None.
        rois: ``(segment_index, (y0, y1, x0, x1))`` of every refined ROI, in order.
        masks: (N, H, W) bool — the refined masks (``fuse=False``), or the segments of the
            fused id map (``fuse=True``, computed on first access).
    """

    ids: List[int]
    id_map: Optional[np.ndarray]
    confidence: Optional[np.ndarray]
    probs: Optional[np.ndarray]
    rois: List[Tuple[int, Box]]
    _masks: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def masks(self) -> np.ndarray:
        if self._masks is None:
            assert self.id_map is not None
            ids = np.asarray(self.ids, dtype=np.int64).reshape(-1, 1, 1)
            self._masks = self.id_map[None] == ids
        return self._masks


def _check_refiner(refiner: Refiner) -> None:
    if not callable(getattr(refiner, 'refine', None)):
        raise ValueError(f'refiner must be a segrefine Refiner (with .refine(image, mask)), '
                         f'got {type(refiner).__name__}')


def _check_scale(scale: float) -> float:
    if not isinstance(scale, (int, float, np.integer, np.floating)) or isinstance(scale, bool) \
            or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f'stuff_scale must be a finite number > 0, got {scale!r}')
    return float(scale)


def _min_roi_size(refiner: Refiner, min_roi_size: Optional[int]) -> int:
    """The explicit ``min_roi_size``, else the refiner's ``min_input_size`` attribute, else 1."""
    if min_roi_size is None:
        min_roi_size = getattr(refiner, 'min_input_size', 1)
    if isinstance(min_roi_size, bool) or not isinstance(min_roi_size, (int, np.integer)) \
            or min_roi_size < 1:
        raise ValueError(f'min_roi_size must be an integer >= 1, got {min_roi_size!r}')
    return int(min_roi_size)


def _refine_roi(refiner: Refiner, image: np.ndarray, roi: Roi) -> np.ndarray:
    """Run the single-object refiner on one ROI; returns (h, w) float32 in [0, 1]."""
    y0, y1, x0, x1 = roi.box
    prob = refiner.refine(image[y0:y1, x0:x1], roi.mask)
    if not isinstance(prob, np.ndarray) or prob.shape != roi.mask.shape:
        raise ValueError(f'refiner returned {getattr(prob, "shape", type(prob).__name__)} for '
                         f'an ROI of size {roi.mask.shape}')
    return prob.astype(np.float32, copy=False)


def refine_label_map(image: np.ndarray, labels: np.ndarray, refiner: Refiner, *,
                     ignore_index: Optional[int] = 255, min_area: int = 1024,
                     kernel_size: int = 10, roi_padding: float = 0.25,
                     stuff_classes: Sequence[int] = (), stuff_scale: float = STUFF_SCALE,
                     classes: Optional[Sequence[int]] = None,
                     return_confidence: bool = False,
                     min_roi_size: Optional[int] = None) -> LabelMapResult:
    """Refine every object of a semantic label map (CascadePSP's scene-parsing protocol).

    For every class present (ascending; not ``ignore_index``; only ``classes`` when given) that
    covers more than ``min_area`` pixels: dilate its map with a disk kernel, split it into
    8-connected components, erode each back, skip components of <= ``min_area`` pixels (eroded
    area); the input mask is the component AND (labels == class), its ROI the mask's bounding
    box grown by ``roi_padding`` (see :mod:`.components`). Each ROI is refined with
    ``refiner.refine`` and fused at once with the modified argmax (:mod:`.fusion`): where the
    probability (times ``stuff_scale`` for ``stuff_classes``) beats the running confidence
    (0.5 at first) the pixel takes the class. Pixels nothing beats keep their input label —
    including ``ignore_index`` pixels, which a refined neighbour may claim.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order (RGB unless it has ``bgr=True``).
        labels: (H, W) integer class ids, any integer dtype.
        refiner: any segrefine :class:`~segrefine_plugins.inference.base.Refiner`.
        ignore_index: class never refined (None: none).
        min_area: published 1024; a class or component of <= min_area pixels is skipped.
        kernel_size: disk kernel size (published 10; even sizes are slightly asymmetric, see
            :func:`~segrefine_plugins.multiobject.components.disk_kernel`).
        roi_padding: ROI growth (published 0.25 = 12.5 % of the box size on every side).
        stuff_classes: class ids whose probabilities are multiplied by ``stuff_scale``.
        stuff_scale: published 0.51, > 0.
        classes: restrict refinement to these class ids (None: all).
        return_confidence: also return the fused confidence map.
        min_roi_size: ROIs with a side shorter than this are grown to it (centred, inside the
            image) before refining; None: the refiner's ``min_input_size`` attribute if it
            has one, else 1 (no change, the published protocol).

    Returns:
        :class:`LabelMapResult`; with nothing to refine, ``labels`` is an unchanged copy.

    Raises:
        ValueError: on a bad image, label map, refiner or option.
    """
    check_image(image)
    check_label_map(labels, image.shape[:2])
    _check_refiner(refiner)
    stuff_scale = _check_scale(stuff_scale)
    stuff = {int(c) for c in stuff_classes}
    min_size = _min_roi_size(refiner, min_roi_size)
    rois_iter = label_map_rois(labels, ignore_index=ignore_index, min_area=min_area,
                               kernel_size=kernel_size, roi_padding=roi_padding, classes=classes)
    fusion = ModifiedArgmax(labels)
    rois: List[Tuple[int, Box]] = []
    for roi in rois_iter:
        roi = ensure_min_size(roi, min_size, labels.shape)
        prob = _refine_roi(refiner, image, roi)
        fusion.add(prob, roi.box, roi.label, stuff_scale if roi.label in stuff else 1.0)
        rois.append((roi.label, roi.box))
    refined, confidence = fusion.result()
    return LabelMapResult(refined, confidence if return_confidence else None, rois)


def _segment_ids(ids: Optional[Sequence[int]], count: int, background_id: int) -> List[int]:
    if ids is None:
        out = list(range(1, count + 1))
    else:
        out = [int(i) for i in ids]
        if len(out) != count:
            raise ValueError(f'ids has {len(out)} entries for {count} masks')
    if len(set(out)) != len(out):
        raise ValueError(f'segment ids must be distinct, got {out}')
    if background_id in out:
        raise ValueError(f'background_id {background_id} is also a segment id; pass ids that '
                         f'differ from it')
    return out


def segments_to_id_map(masks: np.ndarray, ids: Sequence[int], background_id: int = 0) -> np.ndarray:
    """(N, H, W) bool masks -> (H, W) int64 id map; overlaps go to the earlier mask.

    Pixels no mask covers get ``background_id``. "Earlier wins" matches lists sorted by score,
    best first (detectron2's instances and panoptic merging).
    """
    id_map = np.full(masks.shape[1:], background_id, dtype=np.int64)
    for i in range(masks.shape[0] - 1, -1, -1):
        id_map[masks[i]] = ids[i]
    return id_map


def refine_segments(image: np.ndarray, masks: np.ndarray, refiner: Refiner, *,
                    ids: Optional[Sequence[int]] = None,
                    is_stuff: Optional[Sequence[bool]] = None, min_area: int = 0,
                    roi_padding: float = 0.25, stuff_scale: float = STUFF_SCALE,
                    fuse: bool = True, background_id: int = 0,
                    fallback: Optional[np.ndarray] = None, split_components: bool = False,
                    kernel_size: int = 10, return_probs: bool = False,
                    min_roi_size: Optional[int] = None) -> SegmentsResult:
    """Refine a list of segment masks (panoptic segments, entities, instances).

    Each segment is refined in its bounding box grown by ``roi_padding`` (or, with
    ``split_components``, per component as in :func:`refine_label_map`); segments (or
    components) of <= ``min_area`` pixels are not refined.

    * ``fuse=True``: the modified argmax over the segments, in input order, starting from
      ``fallback`` with confidence 0.5; stuff segments' probabilities are multiplied by
      ``stuff_scale``. Where nothing exceeds 0.5 the pixel keeps ``fallback`` — by default the
      input segments' own id map, so a segment only loses pixels that another segment claims;
      pass ``fallback=np.full((H, W), background_id)`` to let segments shrink to their refined
      extent.
    * ``fuse=False``: every segment on its own: inside its ROI(s) the mask is prob > 0.5 (the
      highest probability where its ROIs overlap), outside them (and for skipped segments) the
      input mask. ``stuff_scale`` plays no part.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order.
        masks: (N, H, W) bool segment masks (N may be 0).
        refiner: any segrefine Refiner.
        ids: N distinct segment ids (default 1..N), none equal to ``background_id``.
        is_stuff: N flags marking stuff segments (default all False).
        min_area: skip segments (components) of <= this many pixels; empty ones always.
        roi_padding: ROI growth (published 0.25).
        stuff_scale: multiplier of stuff probabilities in the fusion (published 0.51).
        fuse: fuse into one non-overlapping id map, or refine every mask separately.
        background_id: id of pixels no segment covers in the default ``fallback``.
        fallback: (H, W) integer id map kept where nothing exceeds 0.5 (``fuse=True``);
            default: the input masks' id map (earlier masks win overlaps).
        split_components: split each segment into the published components first.
        kernel_size: disk kernel size for ``split_components``.
        return_probs: also return (N, H, W) float32 probabilities (memory: 4 N H W bytes).
        min_roi_size: grow smaller ROIs to this size (see :func:`refine_label_map`).

    Returns:
        :class:`SegmentsResult`.

    Raises:
        ValueError: on bad image, masks, ids, fallback, refiner or options.
    """
    check_image(image)
    shape = image.shape[:2]
    check_binary_mask(masks, 'masks', ndim=3, shape=shape)
    _check_refiner(refiner)
    stuff_scale = _check_scale(stuff_scale)
    min_area, kernel_size, roi_padding = check_roi_options(min_area, kernel_size, roi_padding)
    min_size = _min_roi_size(refiner, min_roi_size)
    count = masks.shape[0]
    background_id = int(background_id)
    seg_ids = _segment_ids(ids, count, background_id)
    stuff_flags = [False] * count if is_stuff is None else [bool(s) for s in is_stuff]
    if len(stuff_flags) != count:
        raise ValueError(f'is_stuff has {len(stuff_flags)} entries for {count} masks')
    fusion: Optional[ModifiedArgmax] = None
    if fuse:
        if fallback is None:
            start = segments_to_id_map(masks, seg_ids, background_id)
        else:
            start = check_label_map(fallback, shape, 'fallback').astype(np.int64)
        fusion = ModifiedArgmax(start)
    refined_masks = None if fuse else masks.copy()
    probs = np.zeros(masks.shape, dtype=np.float32) if return_probs else None
    # per-segment best probability over its ROIs, only where a per-segment output is asked
    keep = refined_masks is not None or probs is not None
    rois: List[Tuple[int, Box]] = []
    for i in range(count):
        seg_rois = [ensure_min_size(roi, min_size, shape) for roi in segment_rois(
            masks[i], seg_ids[i], i, min_area=min_area, roi_padding=roi_padding,
            split_components=split_components, kernel_size=kernel_size)]
        if not seg_rois:
            continue
        scale = stuff_scale if stuff_flags[i] else 1.0
        uy0, uy1, ux0, ux1 = _union_box([roi.box for roi in seg_rois])
        best = np.full((uy1 - uy0, ux1 - ux0) if keep else (0, 0), -1.0, dtype=np.float32)
        for roi in seg_rois:
            prob = _refine_roi(refiner, image, roi)
            if fusion is not None:
                fusion.add(prob, roi.box, seg_ids[i], scale)
            if keep:
                y0, y1, x0, x1 = roi.box
                view = best[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0]
                np.maximum(view, prob, out=view)
            rois.append((i, roi.box))
        if refined_masks is not None:
            covered = best >= 0
            refined_masks[i, uy0:uy1, ux0:ux1][covered] = best[covered] > 0.5
        if probs is not None:
            probs[i, uy0:uy1, ux0:ux1] = np.maximum(best, 0.0)
    if fusion is not None:
        id_map, confidence = fusion.result()
        return SegmentsResult(seg_ids, id_map, confidence, probs, rois)
    return SegmentsResult(seg_ids, None, None, probs, rois, _masks=refined_masks)


def _union_box(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))
