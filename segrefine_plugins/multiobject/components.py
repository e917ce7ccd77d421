"""Class maps -> connected components -> padded regions of interest (ROIs).

The published scene-parsing protocol of CascadePSP (REFERENCE.md section 4), first half:

* a class (or any binary mask) is dilated with a disk kernel of size 10, split into
  8-connected components, and each component is eroded back with the same kernel;
* a component's *input mask* is the eroded component AND the original mask;
* its ROI is the bounding box of that input mask grown by ``padding`` (0.25: ``0.25 * h / 2``
  rows above and below, ``0.25 * w / 2`` columns left and right), clipped to the image.

Boxes are ``(y0, y1, x0, x1)`` with exclusive ends, so ``array[y0:y1, x0:x1]`` is the box.
Everything here is numpy + OpenCV and deterministic (classes ascending, components in OpenCV's
labelling order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..options import check_float, check_int

#: ``(y0, y1, x0, x1)``, exclusive ends.
Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class Roi:
    """One object to refine.

    Attributes:
        label: the class id (label maps) or segment id (segments) the ROI belongs to.
        box: the padded ROI ``(y0, y1, x0, x1)`` in image coordinates, exclusive ends.
        mask: ``(y1 - y0, x1 - x0)`` bool, the input mask inside the box (never empty).
        index: the segment's index in the input list (segments), -1 for label maps.
    """

    label: int
    box: Box
    mask: np.ndarray
    index: int = -1


def check_roi_options(min_area: int, kernel_size: int,
                      roi_padding: float) -> Tuple[int, int, float]:
    """Validate the ROI knobs of the functions below (the same rule as :class:`RoiOptions`);
    returns them as (int, int, float)."""
    return (check_int('min_area', min_area, 0), check_int('kernel_size', kernel_size, 1),
            check_float('roi_padding', roi_padding, 0.0))


def check_binary_mask(mask: np.ndarray, name: str = 'mask', ndim: int = 2,
                      shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Validate a bool (H, W) mask, or (N, H, W) masks with ``ndim=3``, optionally of image
    size ``shape``; returns it unchanged."""
    dims = '(H, W)' if ndim == 2 else '(N, H, W)'
    if not isinstance(mask, np.ndarray) or mask.ndim != ndim:
        raise ValueError(f'{name} must be an {dims} numpy array, got '
                         f'{getattr(mask, "shape", type(mask).__name__)}')
    if mask.dtype != np.bool_:
        raise ValueError(f'{name} must be bool, got {mask.dtype}; pass e.g. {name} > 127 or '
                         f'{name}.astype(bool) explicitly')
    if shape is not None and tuple(mask.shape[-2:]) != tuple(shape):
        raise ValueError(f'{name} size {mask.shape[-2]}x{mask.shape[-1]} differs from the '
                         f'image size {shape[0]}x{shape[1]}')
    return mask


#: The largest class / segment id (ids are handled as int64).
INT64_MAX = (1 << 63) - 1


def check_label_map(labels: np.ndarray, shape: Optional[Tuple[int, int]] = None,
                    name: str = 'labels') -> np.ndarray:
    """Validate an (H, W) integer class map (optionally of a given size); returns it unchanged."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(labels).__name__}')
    if labels.ndim != 2:
        raise ValueError(f'{name} must be (H, W), got shape {labels.shape}')
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'{name} must hold integer class ids, got dtype {labels.dtype}')
    if labels.dtype == np.uint64 and labels.size and int(labels.max()) > INT64_MAX:
        raise ValueError(f'{name} holds the class id {int(labels.max())}, beyond int64 '
                         f'(class ids are handled as int64; the largest is {INT64_MAX})')
    if shape is not None and tuple(labels.shape) != tuple(shape):
        raise ValueError(f'{name} size {labels.shape[0]}x{labels.shape[1]} differs from the '
                         f'image size {shape[0]}x{shape[1]}')
    return labels


def disk_kernel(size: int = 10) -> np.ndarray:
    """The published "disk kernel of size ``size``": ``cv2.getStructuringElement(ELLIPSE)``.

    Returns a (size, size) uint8 0/1 array. We read "size 10" as OpenCV's kernel size (the
    reference describes its other structuring elements, "size 3..9", the same way).

    **quirk** (kept for parity): an even size gives a kernel that is not point-symmetric about
    its anchor (size // 2), so dilating and then eroding with it (in OpenCV's convention) is not
    an exact closing: about one pixel row / column of a class's boundary on the top / left
    falls out of its component (a one-pixel class vanishes entirely). Those pixels are simply
    not part of the input mask; they keep their label unless a refined ROI claims them. An odd
    size (e.g. 11) gives a symmetric kernel and an exact closing.
    """
    size = check_int('kernel_size', size, 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def bounding_box(mask: np.ndarray) -> Optional[Box]:
    """Tight ``(y0, y1, x0, x1)`` box (exclusive ends) of the True pixels; None if there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def pad_box(box: Box, padding: float, shape: Tuple[int, int]) -> Box:
    """Grow ``box`` by ``padding`` of its size and clip it to an image of ``shape`` (H, W).

    With h = y1 - y0 rows, ``int(padding * h / 2)`` rows are added above and below (floor),
    likewise ``int(padding * w / 2)`` columns left and right; ``padding=0.25`` is the published
    25 % growth.
    """
    padding = check_float('roi_padding', padding, 0.0)
    y0, y1, x0, x1 = box
    if not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
        raise ValueError(f'box {box} is empty or outside an image of size {shape}')
    py = int(padding * (y1 - y0) / 2)
    px = int(padding * (x1 - x0) / 2)
    return max(0, y0 - py), min(shape[0], y1 + py), max(0, x0 - px), min(shape[1], x1 + px)


def component_masks(mask: np.ndarray, kernel_size: int = 10,
                    min_area: int = 0) -> Iterator[Tuple[Box, np.ndarray]]:
    """Split a binary mask into the published components and yield their input masks.

    The mask is dilated with :func:`disk_kernel`, split into 8-connected components, each
    component is eroded back with the same kernel, components whose eroded area is
    <= ``min_area`` pixels are skipped, and the input mask is the eroded component AND
    ``mask``; empty input masks are skipped.

    OpenCV's default borders are kept: for the erosion the outside of the image counts as
    foreground, so objects touching the border keep their extent, and a component whose
    dilation reaches the border keeps that band after the erosion (it counts towards the
    component's area; the input mask, ANDed with ``mask``, is unaffected).

    The work is done in crops around the mask and each component (results are identical to
    processing the whole image).

    Args:
        mask: (H, W) bool.
        kernel_size: size of the disk kernel (published: 10).
        min_area: skip components whose eroded area is <= this (published: 1024).

    Yields:
        ``(box, crop)``: the tight box of the input mask (exclusive ends) and the (h, w) bool
        input mask inside it, in OpenCV's component order.
    """
    check_binary_mask(mask)
    kernel = disk_kernel(kernel_size)
    min_area = check_int('min_area', min_area, 0)
    box = bounding_box(mask)
    if box is None:
        return iter(())
    return _iter_components(mask, box, kernel, min_area)


def _iter_components(mask: np.ndarray, box: Box, kernel: np.ndarray,
                     min_area: int) -> Iterator[Tuple[Box, np.ndarray]]:
    height, width = mask.shape
    reach = kernel.shape[0] // 2          # how far one dilation / erosion looks, in pixels
    margin = 2 * reach + 1                # dilation, then erosion, plus one
    y0, y1, x0, x1 = box
    cy0, cx0 = max(0, y0 - margin), max(0, x0 - margin)
    cy1, cx1 = min(height, y1 + margin), min(width, x1 + margin)
    crop = mask[cy0:cy1, cx0:cx1]
    dilated = cv2.dilate(crop.astype(np.uint8), kernel)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(dilated, connectivity=8,
                                                            ltype=cv2.CV_32S)
    ch, cw = crop.shape
    for i in range(1, count):
        sx, sy, sw, sh = (int(v) for v in stats[i, :4])
        ry0, rx0 = max(0, sy - reach - 1), max(0, sx - reach - 1)
        ry1, rx1 = min(ch, sy + sh + reach + 1), min(cw, sx + sw + reach + 1)
        eroded = cv2.erode((comp[ry0:ry1, rx0:rx1] == i).astype(np.uint8), kernel)
        if int(np.count_nonzero(eroded)) <= min_area:
            continue
        inp = eroded.astype(bool) & crop[ry0:ry1, rx0:rx1]
        tight = bounding_box(inp)
        if tight is None:
            continue
        ty0, ty1, tx0, tx1 = tight
        oy, ox = cy0 + ry0, cx0 + rx0
        yield (oy + ty0, oy + ty1, ox + tx0, ox + tx1), inp[ty0:ty1, tx0:tx1]


def make_roi(box: Box, crop: np.ndarray, label: int, padding: float,
             shape: Tuple[int, int], index: int = -1) -> Roi:
    """Pad a tight ``box`` (see :func:`pad_box`) and place its mask ``crop`` inside the ROI."""
    roi_box = pad_box(box, padding, shape)
    y0, y1, x0, x1 = roi_box
    roi_mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    roi_mask[box[0] - y0:box[1] - y0, box[2] - x0:box[3] - x0] = crop
    return Roi(label=int(label), box=roi_box, mask=roi_mask, index=index)


def ensure_min_size(roi: Roi, min_size: Union[int, Tuple[int, int]],
                    shape: Tuple[int, int]) -> Roi:
    """Grow a ROI whose height or width is below ``min_size`` (an int for both sides, or
    ``(min_height, min_width)``; for refiners with a minimum input size, e.g. CRM's 32 px
    reflect padding, or a minimum short side, e.g. CascadePSP's resize to long side ``L``),
    centred on the old box and shifted to stay inside an image of ``shape``; a side of the
    image shorter than the minimum is taken whole. Returns ``roi`` itself when it is large
    enough.
    """
    if isinstance(min_size, tuple):
        min_h = check_int('min_roi_size', min_size[0], 1)
        min_w = check_int('min_roi_size', min_size[1], 1)
    else:
        min_h = min_w = check_int('min_roi_size', min_size, 1)
    y0, y1, x0, x1 = roi.box

    def grow(lo: int, hi: int, size: int, want: int) -> Tuple[int, int]:
        extra = want - (hi - lo)
        if extra <= 0:
            return lo, hi
        lo = min(max(0, lo - extra // 2), max(0, size - want))
        return lo, min(size, lo + want)

    ny0, ny1 = grow(y0, y1, shape[0], min_h)
    nx0, nx1 = grow(x0, x1, shape[1], min_w)
    if (ny0, ny1, nx0, nx1) == roi.box:
        return roi
    mask = np.zeros((ny1 - ny0, nx1 - nx0), dtype=bool)
    mask[y0 - ny0:y1 - ny0, x0 - nx0:x1 - nx0] = roi.mask
    return Roi(label=roi.label, box=(ny0, ny1, nx0, nx1), mask=mask, index=roi.index)


def class_areas(labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Classes present in an integer map, ascending, and their pixel counts (int64 each)."""
    if labels.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi < (1 << 20):
        counts = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=hi + 1)
        present = np.flatnonzero(counts)
        return present.astype(np.int64), counts[present].astype(np.int64)
    present, counts = np.unique(labels, return_counts=True)
    return present.astype(np.int64), counts.astype(np.int64)


def label_map_rois(labels: np.ndarray, *, ignore_index: Optional[int] = 255,
                   min_area: int = 1024, kernel_size: int = 10, roi_padding: float = 0.25,
                   classes: Optional[Sequence[int]] = None) -> Iterator[Roi]:
    """The published ROIs of a class map (REFERENCE.md section 4).

    For every class present, ascending (except ``ignore_index``; only those in ``classes`` when
    given — ``ignore_index`` wins over ``classes``): skip it if it covers <= ``min_area`` pixels,
    else yield one :class:`Roi` per component of :func:`component_masks` (components whose
    eroded area is <= ``min_area`` are skipped too) with its box padded by ``roi_padding``.

    Args:
        labels: (H, W) integer class ids.
        ignore_index: a class id never refined (None: refine every class).
        min_area: the published 1024-pixel threshold, applied to the class and to components.
        kernel_size: size of the disk kernel (published: 10, see :func:`disk_kernel`).
        roi_padding: box growth (published: 0.25).
        classes: restrict to these class ids (None: all).
    """
    check_label_map(labels)
    min_area, kernel_size, roi_padding = check_roi_options(min_area, kernel_size, roi_padding)
    if ignore_index is not None:
        ignore_index = check_int('ignore_index', ignore_index, -(1 << 63))
    wanted = None if classes is None else {
        check_int('classes[]', c, -(1 << 63)) for c in classes}
    present, areas = class_areas(labels)
    todo = [int(c) for c, area in zip(present, areas)
            if area > min_area and c != ignore_index and (wanted is None or c in wanted)]
    return _iter_label_map_rois(labels, todo, min_area, kernel_size, roi_padding)


def _iter_label_map_rois(labels: np.ndarray, todo: Sequence[int], min_area: int,
                         kernel_size: int, roi_padding: float) -> Iterator[Roi]:
    for c in todo:
        for box, crop in component_masks(labels == c, kernel_size, min_area):
            yield make_roi(box, crop, c, roi_padding, labels.shape)


def segment_rois(mask: np.ndarray, label: int, index: int = -1, *, min_area: int = 0,
                 roi_padding: float = 0.25, split_components: bool = False,
                 kernel_size: int = 10) -> Iterator[Roi]:
    """ROIs of one segment (panoptic segment, entity, instance).

    Without ``split_components`` the segment is one ROI: its own mask in its padded bounding
    box, skipped when its area is <= ``min_area`` (an empty segment is always skipped). With
    ``split_components`` it is split like a class of a label map (:func:`component_masks`,
    components of eroded area <= ``min_area`` skipped), one ROI per component.

    Args:
        mask: (H, W) bool, the segment.
        label: the segment id stored in each :class:`Roi`.
        index: the segment's index stored in each :class:`Roi`.
    """
    check_binary_mask(mask)
    min_area, kernel_size, roi_padding = check_roi_options(min_area, kernel_size, roi_padding)
    if split_components:
        parts: Iterator[Tuple[Box, np.ndarray]] = component_masks(mask, kernel_size, min_area)
    else:
        box = bounding_box(mask)
        if box is None or int(np.count_nonzero(mask[box[0]:box[1], box[2]:box[3]])) <= min_area:
            return iter(())
        parts = iter([(box, mask[box[0]:box[1], box[2]:box[3]])])
    return (make_roi(box, crop, label, roi_padding, mask.shape, index) for box, crop in parts)
