"""Refining many objects with a single-object refiner: label maps and segment lists.

:func:`refine_label_map` is CascadePSP's published scene-parsing protocol (REFERENCE.md
section 4) for any semantic label map; :func:`refine_segments` applies it to a list of segment
masks (panoptic segments, entities, instances). Each ROI goes through ``refiner.refine`` (so
CascadePSP and CRM both work, with their own settings) and is fused at once
(:class:`~segrefine_plugins.multiobject.fusion.ModifiedArgmax`): no (N, H, W) float array is
ever allocated unless asked for (``return_probs``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..inference.base import Refiner, check_image
from ..masks import REFINE_FOREGROUND_ABOVE
from .components import (INT64_MAX, Box, Roi, check_binary_mask, check_label_map, disk_kernel,
                         ensure_min_size, label_map_rois, segment_rois)
from .fusion import ModifiedArgmax
from ..options import to_bool
from .options import STUFF_SCALE, RoiOptions

OptionsLike = Union[RoiOptions, Mapping[str, Any], None]


@dataclass
class LabelMapResult:
    """Output of :func:`refine_label_map`.

    Attributes:
        labels: (H, W) refined class ids, the input's dtype.
        confidence: (H, W) float32 fused confidence (0.5 where no refined probability won;
            stuff probabilities are the scaled ones), or None unless requested.
        rois: ``(class_id, (y0, y1, x0, x1))`` of every refined ROI, in refinement order.
        gated: how many ROIs the do-no-harm gate kept coarse (0 with the gate off).
        unrefined: how many ROIs were passed through unrefined, their input labels kept,
            because the refiner cannot take their size (an image side below its minimum,
            e.g. CRM's 33 px, that no growing can reach).
    """

    labels: np.ndarray
    confidence: Optional[np.ndarray]
    rois: List[Tuple[int, Box]]
    gated: int = 0
    unrefined: int = 0


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
        gated: indices of the segments the do-no-harm gate kept coarse (in some ROI).
        unrefined: indices of the segments with an ROI passed through unrefined (input mask
            kept there) because the refiner cannot take its size (see LabelMapResult).
        masks: (N, H, W) bool — the refined masks (``fuse=False``), or the segments of the
            fused id map (``fuse=True``, computed on first access).
    """

    ids: List[int]
    id_map: Optional[np.ndarray]
    confidence: Optional[np.ndarray]
    probs: Optional[np.ndarray]
    rois: List[Tuple[int, Box]]
    gated: List[int] = field(default_factory=list)
    unrefined: List[int] = field(default_factory=list)
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


def _min_roi_size(refiner: Refiner, options: RoiOptions) -> int:
    """``options.min_roi_size``, else the refiner's ``min_input_size`` attribute, else 1."""
    if options.min_roi_size is not None:
        return options.min_roi_size
    size = getattr(refiner, 'min_input_size', 1)
    return size if isinstance(size, int) and size >= 1 else 1


def _fit_roi(roi: Roi, refiner: Refiner, min_size: int, shape: Tuple[int, int]) -> Roi:
    """Grow ``roi`` to the refiner's minimum size, then its short side to what the refiner
    needs for that long side (``min_short_side``: e.g. CascadePSP resizes to long side ``L``,
    so a 2 x 1900 px wire would shrink to 0 rows)."""
    roi = ensure_min_size(roi, min_size, shape)
    need = getattr(refiner, 'min_short_side', None)
    if not callable(need):
        return roi
    h, w = roi.mask.shape
    short = int(need(max(h, w)))
    if min(h, w) >= short:
        return roi
    return ensure_min_size(roi, (short, 1) if h < w else (1, short), shape)


def _mirror(prob: np.ndarray, weak: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """``prob`` with the ``weak`` pixels mirrored to the coarse side (``1 - p``; 0.5 itself
    becomes just above 0.5 where coarse is set)."""
    if not weak.any():
        return prob
    out = prob.copy()
    out[weak] = 1.0 - out[weak]
    tie = weak & coarse & (out <= 0.5)
    out[tie] = np.nextafter(np.float32(0.5), np.float32(1.0))
    return out


def _revert_unconfident(options: RoiOptions, prob: np.ndarray, coarse: np.ndarray
                        ) -> np.ndarray:
    """``prob`` with the changed pixels of confidence below ``gate_pixel_confidence`` mirrored
    to the coarse side."""
    if options.gate_pixel_confidence is None:
        return prob
    weak = ((prob > 0.5) != coarse) & (np.abs(2.0 * prob - 1.0) < options.gate_pixel_confidence)
    return _mirror(prob, weak, coarse)


def change_regions(changed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(h, w) bool changes -> ``(regions, deepest)``: (h, w) int32 labels of the 8-connected
    regions of changes (0 = unchanged) and, per label, the region's depth in px (float32; the
    largest Euclidean distance from a pixel of the region to the nearest unchanged pixel; 1
    for a 1-2 px wide sliver; 0 for label 0)."""
    changed_u8 = changed.astype(np.uint8)
    count, regions = cv2.connectedComponents(changed_u8, connectivity=8)
    dist = cv2.distanceTransform(changed_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    deepest = np.zeros(count, dtype=np.float32)
    np.maximum.at(deepest, regions[changed], dist[changed])
    deepest[0] = 0.0
    return regions, deepest


def change_depth(changed: np.ndarray) -> np.ndarray:
    """(h, w) bool changes -> (h, w) float32: for each changed pixel the depth of its
    8-connected region of changes (:func:`change_regions`); 0 where unchanged."""
    regions, deepest = change_regions(changed)
    return deepest[regions]


def _revert_thin(options: RoiOptions, prob: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """``prob`` with the regions of changes shallower than ``gate_min_change_depth`` mirrored
    to the coarse side, unless a region reaches ``gate_trust_change_depth`` with a mean
    confidence of at least ``gate_trust_min_confidence`` (the ROI is trusted: all its changes
    stay)."""
    if options.gate_min_change_depth is None:
        return prob
    changed = (prob > 0.5) != coarse
    if not changed.any():
        return prob
    regions, deepest = change_regions(changed)
    trust = options.gate_trust_change_depth
    if trust is not None and float(deepest.max()) >= trust:
        labels = regions[changed]
        sure = np.bincount(labels, weights=np.abs(2.0 * prob[changed] - 1.0),
                           minlength=deepest.size)
        sure /= np.maximum(np.bincount(labels, minlength=deepest.size), 1)
        if bool(((deepest >= trust) & (sure >= options.gate_trust_min_confidence)).any()):
            return prob
    weak = changed & (deepest[regions] < options.gate_min_change_depth)
    return _mirror(prob, weak, coarse)


def apply_gate(options: RoiOptions, prob: np.ndarray,
               coarse: np.ndarray) -> Tuple[np.ndarray, bool]:
    """The do-no-harm gate on one refined object (see RoiOptions): ``(prob, gated)``, with
    ``prob``'s unconfident changes reverted (``gate_pixel_confidence``) and ``gated`` True
    where the coarse mask is kept.

    Args:
        prob: (h, w) float32 refined probability in [0, 1].
        coarse: (h, w) bool coarse mask.
    """
    had_changes = options.gated_per_pixel and bool(((prob > 0.5) != coarse).any())
    prob = _revert_thin(options, _revert_unconfident(options, prob, coarse), coarse)
    return prob, _gate(options, prob, coarse, had_changes)


def _gate(options: RoiOptions, prob: np.ndarray, coarse: np.ndarray,
          had_changes: bool = True) -> bool:
    """True when the do-no-harm gate keeps the coarse mask of this ROI (see RoiOptions);
    ``had_changes``: whether the refinement changed anything before the per-pixel rules (an
    ROI the refiner left as it was is not counted as gated)."""
    if not options.gated:
        return False
    refined = prob > 0.5
    changed = refined != coarse
    if options.gated_per_pixel and not changed.any():
        return had_changes
    if options.gate_min_iou is not None:
        union = int(np.count_nonzero(refined | coarse))
        iou = int(np.count_nonzero(refined & coarse)) / union if union else 1.0
        if iou < options.gate_min_iou:
            return True
    if options.gate_min_confidence is not None and changed.any():
        confidence = float(np.abs(2.0 * prob[changed] - 1.0).mean())
        if confidence < options.gate_min_confidence:
            return True
    return False


class _RoiRunner:
    """Runs ROIs through the refiner in batches of ``options.roi_batch_size`` (in order),
    under the size rule, and applies the gate; ``run`` yields ``(roi, prob, gated)``."""

    def __init__(self, image: np.ndarray, refiner: Refiner, options: RoiOptions,
                 soft: Optional['SoftCoarse'] = None) -> None:
        self.image, self.refiner, self.options, self.soft = image, refiner, options, soft
        self.batch = options.roi_batch_size if callable(getattr(refiner, 'refine_batch',
                                                                None)) else 1
        self.gated = 0
        self.unrefined = 0

    def _probs(self, rois: List[Roi]) -> List[np.ndarray]:
        crops = [self.image[r.box[0]:r.box[1], r.box[2]:r.box[3]] for r in rois]
        masks = [r.mask if self.soft is None else self.soft.mask(r) for r in rois]
        if self.batch > 1:
            probs = self.refiner.refine_batch(crops, masks)
        else:
            probs = [self.refiner.refine(crop, mask) for crop, mask in zip(crops, masks)]
        for roi, prob in zip(rois, probs):
            if not isinstance(prob, np.ndarray) or prob.shape != roi.mask.shape:
                raise ValueError(f'refiner returned {getattr(prob, "shape", type(prob).__name__)}'
                                 f' for an ROI of size {roi.mask.shape}')
        return [p.astype(np.float32, copy=False) for p in probs]

    def _flush(self, pending: List[Roi]) -> Iterator[Tuple[Roi, Optional[np.ndarray], bool]]:
        for roi, prob in zip(pending, self._probs(pending)):
            prob, gated = apply_gate(self.options, prob, roi.mask)
            self.gated += gated
            yield roi, prob, gated

    def _refinable(self, roi: Roi) -> bool:
        """False for an ROI the refiner cannot take (its ``check_input_size`` refuses the
        size) that already spans the whole image along a side: growing cannot help there
        (an image side below the refiner's minimum). Other refused sizes (e.g. an explicit
        ``min_roi_size`` below the refiner's minimum) reach the refiner, which raises."""
        check = getattr(self.refiner, 'check_input_size', None)
        if not callable(check):
            return True
        try:
            check(*roi.mask.shape)
        except ValueError:
            y0, y1, x0, x1 = roi.box
            height, width = self.image.shape[:2]
            return not (y1 - y0 == height or x1 - x0 == width)
        return True

    def run(self, rois: Iterable[Roi]) -> Iterator[Tuple[Roi, Optional[np.ndarray], bool]]:
        """Yields ``(roi, prob, gated)`` in order; ``prob`` is None for an ROI passed through
        unrefined (the refiner cannot take its size; counted in ``unrefined``)."""
        limit = getattr(self.refiner, 'limit_upscale', None)
        context = limit(self.options.max_upscale) if self.options.max_upscale is not None \
            and callable(limit) else contextlib.nullcontext()
        with context:
            pending: List[Roi] = []
            for roi in rois:
                if not self._refinable(roi):
                    if pending:
                        yield from self._flush(pending)
                        pending = []
                    self.unrefined += 1
                    yield roi, None, False
                    continue
                pending.append(roi)
                if len(pending) >= self.batch:
                    yield from self._flush(pending)
                    pending = []
            if pending:
                yield from self._flush(pending)


class SoftCoarse:
    """Per-class probabilities as the refiner's coarse input (a segmenter's soft output).

    For an ROI of class ``c`` the refiner gets ``probs[c]`` inside the ROI's box, as uint8
    ``round(255 p)``, zeroed outside the ROI's own component grown by the protocol's disk
    kernel (so other components of the same class in the box stay out, as with hard masks).
    Only a refiner built with ``soft_input=True`` reads the values; others binarise at > 127.

    Args:
        probs: (C, H, W) float in [0, 1] (C > every class id refined), e.g. the softmax of
            mmseg's ``seg_logits``; or, with ``by_index``, (N, H, W): one probability map per
            segment of a segment list (e.g. detectron2's float ``pred_masks``), or a list of N
            entries, each an (H, W) float map in [0, 1] (views of other arrays: nothing is
            copied) or None (that segment has no soft values: its ROIs get their hard mask).
        kernel_size: the disk kernel the ROI's component is grown by (RoiOptions.kernel_size).
        shape: (H, W) of the label map the ROIs come from.
        by_index: the map of an ROI is ``probs[roi.index]`` (segments) instead of
            ``probs[roi.label]`` (class ids of a label map).
    """

    def __init__(self, probs: Union[np.ndarray, Sequence[Optional[np.ndarray]]],
                 kernel_size: int, shape: Tuple[int, int], by_index: bool = False) -> None:
        self.by_index = bool(by_index)
        #: per-map values still to check (list form: each map's values are checked in the
        #: ROIs that read them, not over the whole image per segment)
        self._lazy = self.by_index and isinstance(probs, (list, tuple))
        if self._lazy:
            maps: List[Optional[np.ndarray]] = list(probs)
            for i, p in enumerate(maps):
                if p is not None:
                    _check_probs(p, shape, f'probs[{i}]', ndim=2, values=False)
        else:
            _check_probs(probs, shape, 'probs', ndim=3)
            maps = probs  # type: ignore[assignment]
        self.probs = maps
        self.kernel = disk_kernel(kernel_size)

    def mask(self, roi: Roi) -> np.ndarray:
        """(h, w) uint8 0..255 (bool where the hard mask is used): the ROI's coarse mask.

        The ROI's hard mask is used for a segment without soft values (None), and where the
        soft map has no pixel above 0.5 (127 of 255) in the ROI while the hard mask has some:
        a refiner treats such a mask as empty and returns zeros, which would drop an object
        the argmax kept (a multi-class softmax often has its winner below 0.5)."""
        channel = roi.index if self.by_index else roi.label
        if not 0 <= channel < len(self.probs):
            raise ValueError(f'{"segment" if self.by_index else "class"} {channel} has no '
                             f'probability map (probs has {len(self.probs)})')
        source = self.probs[channel]
        if source is None:
            return roi.mask
        y0, y1, x0, x1 = roi.box
        crop = source[y0:y1, x0:x1]
        if self._lazy:
            _check_probs(crop, crop.shape, f'probs[{channel}]', ndim=2)
        region = cv2.dilate(roi.mask.astype(np.uint8), self.kernel) > 0
        out = np.rint(np.where(region, crop, 0.0) * 255.0).astype(np.uint8)
        if not (out > REFINE_FOREGROUND_ABOVE).any() and roi.mask.any():
            return roi.mask
        return out


def _check_probs(probs: Any, shape: Tuple[int, int], name: str, ndim: int,
                 values: bool = True) -> None:
    """Raise ValueError unless ``probs`` is a float array of ``ndim`` dims whose last two are
    ``shape`` (and, with ``values``, finite, in [0, 1])."""
    if not isinstance(probs, np.ndarray) or probs.ndim != ndim or probs.dtype.kind != 'f':
        want = '(C, H, W)' if ndim == 3 else '(H, W)'
        raise ValueError(f'{name} must be a {want} float array, got '
                         f'{getattr(probs, "shape", type(probs).__name__)} '
                         f'{getattr(probs, "dtype", "")}')
    if probs.shape[-2:] != tuple(shape):
        raise ValueError(f'{name} {probs.shape[-2]}x{probs.shape[-1]} differs from the label '
                         f'map {shape[0]}x{shape[1]}')
    if values and probs.size and (not np.isfinite(probs).all() or probs.min() < 0
                                  or probs.max() > 1):
        raise ValueError(f'{name} must be finite probabilities in [0, 1]')


def refine_label_map(image: np.ndarray, labels: np.ndarray, refiner: Refiner,
                     options: OptionsLike = None, *, classes: Optional[Sequence[int]] = None,
                     return_confidence: bool = False, probs: Optional[np.ndarray] = None,
                     **option_overrides: Any) -> LabelMapResult:
    """Refine every object of a semantic label map (CascadePSP's scene-parsing protocol).

    For every class present (ascending; not ``ignore_index``; only ``refine_classes`` when
    given) that covers more than ``min_area`` pixels: dilate its map with a disk kernel, split
    it into 8-connected components, erode each back, skip components of <= ``min_area`` pixels
    (eroded area); the input mask is the component AND (labels == class), its ROI the mask's
    bounding box grown by ``roi_padding`` (see :mod:`.components`). Each ROI is refined with
    the refiner and fused in order with the modified argmax (:mod:`.fusion`): where the
    probability (times ``stuff_scale`` for ``stuff_classes``) beats the running confidence
    (0.5 at first) the pixel takes the class. Pixels nothing beats keep their input label —
    including ``ignore_index`` pixels, which a refined neighbour may claim.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order (RGB unless it has ``bgr=True``).
        labels: (H, W) integer class ids, any integer dtype.
        refiner: any segrefine :class:`~segrefine_plugins.inference.base.Refiner`.
        options: a :class:`~segrefine_plugins.multiobject.options.RoiOptions`, a dict of its
            fields, or None (the published protocol; ``min_area`` defaults to 1024 here).
            ``stuff_classes`` / ``refine_classes`` must be ids here (names are resolved by the
            mmseg adapter).
        classes: shorthand for ``refine_classes``.
        return_confidence: also return the fused confidence map.
        probs: optional (C, H, W) float per-class probabilities in [0, 1] (the segmenter's
            soft output, e.g. softmax of its logits): each ROI's coarse mask is then its
            class probability (see :class:`SoftCoarse`) instead of the 0 / 255 class mask.
            Opt-in; needs a refiner built with ``soft_input=True`` (ValueError otherwise:
            one without it would binarise them at 0.5, which is not the label map). ROIs,
            the gate and the fusion still come from ``labels``.
        **option_overrides: RoiOptions fields that replace those of ``options``.

    Returns:
        :class:`LabelMapResult`; with nothing to refine, ``labels`` is an unchanged copy.

    Raises:
        ValueError / TypeError: on a bad image, label map, refiner or option.
    """
    check_image(image)
    check_label_map(labels, image.shape[:2])
    _check_refiner(refiner)
    if classes is not None:
        option_overrides['refine_classes'] = classes
    opts = RoiOptions.from_any(options, **option_overrides)
    return_confidence = to_bool(return_confidence, 'return_confidence')
    stuff = _class_ids(opts.stuff_classes, 'stuff_classes')
    wanted = None if opts.refine_classes is None else _class_ids(opts.refine_classes,
                                                                  'refine_classes')
    min_size = _min_roi_size(refiner, opts)
    rois_iter = label_map_rois(labels, ignore_index=opts.ignore_index,
                               min_area=opts.min_area_for(label_map=True),
                               kernel_size=opts.kernel_size, roi_padding=opts.roi_padding,
                               classes=wanted)
    fusion = ModifiedArgmax(labels)
    rois: List[Tuple[int, Box]] = []
    if probs is not None:
        _check_soft_refiner(refiner, 'probs')
    soft = None if probs is None else SoftCoarse(probs, opts.kernel_size, labels.shape)
    runner = _RoiRunner(image, refiner, opts, soft)
    fitted = (_fit_roi(roi, refiner, min_size, labels.shape) for roi in rois_iter)
    for roi, prob, gated in runner.run(fitted):
        if prob is None:   # passed through unrefined (counted in runner.unrefined)
            continue
        if not gated:
            fusion.add(prob, roi.box, roi.label,
                       opts.stuff_scale if roi.label in stuff else 1.0)
        rois.append((roi.label, roi.box))
    refined, confidence = fusion.result()
    return LabelMapResult(refined, confidence if return_confidence else None, rois,
                          gated=runner.gated, unrefined=runner.unrefined)


def _class_ids(values: Sequence[Any], name: str) -> List[int]:
    names = [v for v in values if isinstance(v, str)]
    if names:
        raise ValueError(f'{name} holds class names {names}: the core takes class ids (the '
                         f'mmseg adapter resolves names against dataset_meta["classes"])')
    return [int(v) for v in values]


def _check_soft_refiner(refiner: Refiner, what: str) -> None:
    """ValueError unless ``refiner`` reads soft coarse masks (``soft_input=True``)."""
    if getattr(refiner, 'soft_input', False) is not True:
        raise ValueError(f'{what} needs a refiner built with soft_input=True: '
                         f'{type(refiner).__name__} without it binarises its coarse mask at '
                         f'> 127, so the probabilities would replace the labels\' masks by '
                         f'their 0.5 threshold (e.g. build_refiner(dict(type=\'CRM\', '
                         f'soft_input=True)))')


def _int_id(value: Any, name: str) -> int:
    """An integer id (Python or numpy int, not bool) within int64, else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{name} must be integers, got {value!r} ({type(value).__name__})')
    value = int(value)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f'{name} must fit in int64, got {value}')
    return value


def _segment_ids(ids: Optional[Sequence[int]], count: int, background_id: int) -> List[int]:
    if ids is None:
        out = list(range(1, count + 1))
    else:
        out = [_int_id(i, 'segment ids') for i in ids]
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
    ids = [_int_id(i, 'ids') for i in ids]
    if len(ids) != masks.shape[0]:
        raise ValueError(f'ids has {len(ids)} entries for {masks.shape[0]} masks')
    id_map = np.full(masks.shape[1:], _int_id(background_id, 'background_id'), dtype=np.int64)
    for i in range(masks.shape[0] - 1, -1, -1):
        id_map[masks[i]] = ids[i]
    return id_map


def refine_segments(image: np.ndarray, masks: np.ndarray, refiner: Refiner,
                    options: OptionsLike = None, *, ids: Optional[Sequence[int]] = None,
                    is_stuff: Optional[Sequence[bool]] = None, fuse: bool = True,
                    background_id: int = 0, fallback: Optional[np.ndarray] = None,
                    split_components: bool = False, return_probs: bool = False,
                    soft_masks: Union[np.ndarray, Sequence[Optional[np.ndarray]],
                                      None] = None,
                    **option_overrides: Any) -> SegmentsResult:
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

    ROIs the do-no-harm gate rejects are not used: with ``fuse=True`` they are not pasted,
    with ``fuse=False`` the segment keeps its input mask there; ``result.gated`` lists the
    indices of the segments that had an ROI gated.

    Args:
        image: (H, W, 3) uint8 in the refiner's colour order.
        masks: (N, H, W) bool segment masks (N may be 0).
        refiner: any segrefine Refiner.
        options: :class:`~segrefine_plugins.multiobject.options.RoiOptions`, a dict of its
            fields, or None (``min_area`` defaults to 0 here; ``stuff_classes``,
            ``ignore_index`` and ``refine_classes`` play no part: see ``is_stuff``).
        ids: N distinct segment ids (default 1..N), none equal to ``background_id``.
        is_stuff: N flags marking stuff segments (default all False).
        fuse: fuse into one non-overlapping id map, or refine every mask separately.
        background_id: id of pixels no segment covers in the default ``fallback``.
        fallback: (H, W) integer id map kept where nothing exceeds 0.5 (``fuse=True``);
            default: the input masks' id map (earlier masks win overlaps).
        split_components: split each segment into the published components first.
        return_probs: also return (N, H, W) float32 probabilities (memory: 4 N H W bytes).
        soft_masks: optional (N, H, W) float probabilities in [0, 1] of the segments (a
            segmenter's soft output, e.g. float ``pred_masks``), or a list of N (H, W) float
            maps / None (segments without soft values): each ROI's coarse mask is then its
            segment's probability (:class:`SoftCoarse` with ``by_index``) instead of the
            0 / 255 mask. Opt-in; needs a refiner built with ``soft_input=True`` (as
            ``probs`` of :func:`refine_label_map`). ROIs, the gate and the fusion still come
            from ``masks``.
        **option_overrides: RoiOptions fields that replace those of ``options``.

    Returns:
        :class:`SegmentsResult`.

    Raises:
        ValueError / TypeError: on bad image, masks, ids, fallback, refiner or options.
    """
    check_image(image)
    shape = image.shape[:2]
    check_binary_mask(masks, 'masks', ndim=3, shape=shape)
    _check_refiner(refiner)
    opts = RoiOptions.from_any(options, **option_overrides)
    fuse, return_probs = to_bool(fuse, 'fuse'), to_bool(return_probs, 'return_probs')
    split_components = to_bool(split_components, 'split_components')
    min_size = _min_roi_size(refiner, opts)
    count = masks.shape[0]
    soft = None
    if soft_masks is not None:
        if isinstance(soft_masks, (list, tuple)):
            if len(soft_masks) != count:
                raise ValueError(f'soft_masks has {len(soft_masks)} entries for {count} masks')
        elif not isinstance(soft_masks, np.ndarray) or soft_masks.shape != masks.shape:
            raise ValueError(f'soft_masks must be a numpy array of the masks\' shape '
                             f'{masks.shape} or a list of {count} maps, got '
                             f'{type(soft_masks).__name__} {getattr(soft_masks, "shape", "")}')
        if count and not (isinstance(soft_masks, (list, tuple))
                          and all(m is None for m in soft_masks)):
            _check_soft_refiner(refiner, 'soft_masks')
        if count:
            soft = SoftCoarse(soft_masks, opts.kernel_size, shape, by_index=True)
    background_id = int(background_id)
    seg_ids = _segment_ids(ids, count, background_id)
    stuff_flags = [False] * count if is_stuff is None else [
        to_bool(s, 'is_stuff[]') for s in is_stuff]
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
    seg_rois: Dict[int, List[Roi]] = {}
    for i in range(count):
        seg_rois[i] = [_fit_roi(roi, refiner, min_size, shape) for roi in segment_rois(
            masks[i], seg_ids[i], i, min_area=opts.min_area_for(label_map=False),
            roi_padding=opts.roi_padding, split_components=split_components,
            kernel_size=opts.kernel_size)]
    left = {i: len(r) for i, r in seg_rois.items() if r}
    best: Dict[int, Tuple[Box, np.ndarray]] = {}
    rois: List[Tuple[int, Box]] = []
    gated_segments: List[int] = []
    unrefined: List[int] = []
    runner = _RoiRunner(image, refiner, opts, soft)
    ordered = (roi for i in range(count) for roi in seg_rois[i])
    for roi, prob, gated in runner.run(ordered):
        i = roi.index
        if prob is None:    # passed through: the segment keeps its input mask in this ROI
            if not unrefined or unrefined[-1] != i:
                unrefined.append(i)
            gated = True
        else:
            rois.append((i, roi.box))
            if gated and (not gated_segments or gated_segments[-1] != i):
                gated_segments.append(i)
        if fusion is not None and not gated:
            fusion.add(prob, roi.box, seg_ids[i], opts.stuff_scale if stuff_flags[i] else 1.0)
        if keep:
            if i not in best:
                union = _union_box([r.box for r in seg_rois[i]])
                best[i] = (union, np.full((union[1] - union[0], union[3] - union[2]), -1.0,
                                          dtype=np.float32))
            (uy0, _, ux0, _), acc = best[i]
            y0, y1, x0, x1 = roi.box
            view = acc[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0]
            np.maximum(view, prob if not gated else roi.mask.astype(np.float32), out=view)
        left[i] -= 1
        if left[i] == 0 and keep:
            (uy0, uy1, ux0, ux1), acc = best.pop(i)
            if refined_masks is not None:
                covered = acc >= 0
                refined_masks[i, uy0:uy1, ux0:ux1][covered] = acc[covered] > 0.5
            if probs is not None:
                probs[i, uy0:uy1, ux0:ux1] = np.maximum(acc, 0.0)
    if fusion is not None:
        id_map, confidence = fusion.result()
        return SegmentsResult(seg_ids, id_map, confidence, probs, rois, gated=gated_segments,
                              unrefined=unrefined)
    return SegmentsResult(seg_ids, None, None, probs, rois, gated=gated_segments,
                          unrefined=unrefined, _masks=refined_masks)


def _union_box(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))
