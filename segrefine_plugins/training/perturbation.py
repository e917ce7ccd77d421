"""The published training-time mask perturbation (REFERENCE.md section 6).

A ground-truth mask is turned into a plausible coarse segmentation with IoU close to a target:

1. **contour resampling** (:func:`resample_contours`): every contour (``RETR_LIST``, all points)
   of >= 10 points loses a run of ``int(0.1 * N)`` consecutive points — the run starts at a
   random choice among the 10 % of start positions whose chord across the run is *shortest*
   (so bumps and thin parts are cut off) — then a random 10 % of the remaining points are kept
   in order, and the polygons are redrawn filled (**quirk**: holes get filled, as published);
2. **random morphology** (:func:`random_morphology`): up to 250 rounds of 4 random rectangles;
   per rectangle, with probability 0.25 its centre pixel is set to 0 or 255, then the rectangle
   is dilated (p = 0.5) or eroded with a random structuring element of size 3..9 (rectangle,
   ellipse, half-height or half-width ellipse). It stops as soon as the IoU against the
   *polygonised* mask drops below the target (**quirk**: not against the original mask, as
   published; the final IoU against the original is therefore a little lower than the target).

All randomness comes from the ``numpy.random.Generator`` passed in, so a seeded generator
reproduces the output exactly.

**Quirk (published, kept by default): the perturbation is biased down-right.** OpenCV
anchors an even-sized structuring element at ``k // 2``, so a 4-px dilation grows a region by
2 px down / right and 1 px up / left, and an erosion shrinks it by 2 px from the top / left:
both move boundaries down / right where they act. Perturbed masks therefore sit down-right of
the ground truth (flip-balanced ECSSD masks, :func:`~segrefine_plugins.metrics.boundary_shift`
over whole outlines: +0.027 / +0.026 px on average; a refiner trained on them is taught to
move boundaries up-left where they look perturbed). The rectangles the operations act on
also lean down-right (their far corner is drawn between the near one and the image edge), so
net growth or shrinkage lands more on the bottom / right boundaries. ``symmetric=True``
removes both: each element (shape and anchor) is mirrored per axis at random, and the whole
perturbation runs in a frame flipped at random (rows and / or columns, flipped back after):
the same shapes, the shifts averaging to zero.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = ['perturb_mask', 'resample_contours', 'random_morphology', 'mirrored_at_random',
           'mask_iou', 'random_structure']


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) masks (non-zero = foreground), with the published +1e-6 smoothing."""
    a, b = a > 0, b > 0
    return float((np.count_nonzero(a & b) + 1e-6) / (np.count_nonzero(a | b) + 1e-6))


def _check_mask(mask: np.ndarray) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f'mask must be an (H, W) numpy array, got '
                         f'{getattr(mask, "shape", type(mask).__name__)}')
    if mask.dtype != np.uint8:
        raise ValueError(f'mask must be uint8 (0 / 255), got {mask.dtype}')
    return mask


def random_structure(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of the four published structuring elements of nominal size ``size``."""
    choice = int(rng.integers(1, 5))
    if choice == 1:
        return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    if choice == 2:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    if choice == 3:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size // 2))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size // 2, size))


def mirrored_at_random(kernel: np.ndarray,
                       rng: np.random.Generator) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The structuring element, or its mirror image, per axis at random (two draws).

    OpenCV anchors a ``k``-sized element at ``k // 2``: the set of offsets a dilation takes
    is off-centre for even ``k`` (and even-sized ellipses are lopsided in their box too).
    Mirroring an axis (flip the element, anchor at ``k - 1 - k // 2``) reflects that offset
    set, so with p = 0.5 per axis its mean offset is zero.

    Returns:
        the (possibly flipped) element, contiguous, and its ``(x, y)`` anchor.
    """
    kh, kw = kernel.shape
    ax, ay = kw // 2, kh // 2
    if rng.random() < 0.5:
        kernel, ay = kernel[::-1], kh - 1 - ay
    if rng.random() < 0.5:
        kernel, ax = kernel[:, ::-1], kw - 1 - ax
    return np.ascontiguousarray(kernel), (ax, ay)


def resample_contours(mask: np.ndarray, rng: np.random.Generator,
                      regional_rate: float = 0.1, sample_rate: float = 0.1) -> np.ndarray:
    """Step (a): cut a run out of every contour, subsample the points, redraw filled.

    Args:
        mask: (H, W) uint8, 0 / 255.
        rng: random generator.

    Returns:
        (H, W) uint8 0 / 255. When no contour survives (all < 10 points), a copy of ``mask``.
    """
    _check_mask(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    kept = []
    for contour in contours:
        n = contour.shape[0]
        if n < 10:
            continue
        n_remove = int(n * regional_rate)
        pts = contour[:, 0, :].astype(np.int64)
        starts = np.arange(n - n_remove)
        chord = np.sum((pts[starts] - pts[starts + n_remove]) ** 2, axis=1)
        order = starts[np.argsort(chord, kind='stable')]
        best = order[:math.ceil(0.1 * len(order))]
        start = int(best[rng.integers(len(best))])
        contour = np.concatenate([contour[:start], contour[start + n_remove:]], axis=0)
        m = contour.shape[0]
        idx = np.sort(rng.choice(m, size=int(m * sample_rate), replace=False))
        if len(idx):
            kept.append(np.ascontiguousarray(contour[idx]))
    if not kept:
        return mask.copy()
    out = np.zeros_like(mask)
    cv2.drawContours(out, kept, -1, 255, -1)
    return out


def random_morphology(mask: np.ndarray, iou_target: float, rng: np.random.Generator,
                      max_rounds: int = 250, symmetric: bool = False) -> np.ndarray:
    """Step (b): random local dilations / erosions until IoU(result, mask) < ``iou_target``.

    Args:
        mask: (H, W) uint8 0 / 255 (the polygonised mask).
        iou_target: stop threshold in (0, 1].
        symmetric: mirror each structuring element per axis at random
            (:func:`mirrored_at_random`, two more draws per operation): no half-pixel bias.
            False = published (OpenCV's default anchor ``k // 2``).

    Returns:
        (H, W) uint8 0 / 255.
    """
    _check_mask(mask)
    h, w = mask.shape
    seg = np.where(mask > 127, 255, 0).astype(np.uint8)
    if h <= 2 or w <= 2:
        return seg
    ref = seg > 0
    for _ in range(max_rounds):
        for _ in range(4):
            lx, ly = int(rng.integers(w)), int(rng.integers(h))
            lw, lh = int(rng.integers(lx + 1, w + 1)), int(rng.integers(ly + 1, h + 1))
            if rng.random() < 0.25:
                seg[(ly + lh) // 2, (lx + lw) // 2] = int(rng.integers(2)) * 255
            size = int(rng.integers(3, 10))
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            kernel, anchor = random_structure(rng, size), (-1, -1)
            if symmetric:
                kernel, anchor = mirrored_at_random(kernel, rng)
            seg[ly:lh, lx:lw] = op(seg[ly:lh, lx:lw], kernel, anchor=anchor)
        cur = seg > 0
        iou = (np.count_nonzero(cur & ref) + 1e-6) / (np.count_nonzero(cur | ref) + 1e-6)
        if iou < iou_target:
            break
    return seg


def perturb_mask(gt: np.ndarray, rng: Optional[np.random.Generator] = None,
                 iou_target: Optional[float] = None, iou_range: tuple = (0.8, 1.0),
                 symmetric: bool = False) -> np.ndarray:
    """The published perturbation: contour resampling, then random morphology.

    Args:
        gt: (H, W) ground truth, uint8 0..255 (binarised at > 127) or float in [0, 1]
            (binarised at > 0.5).
        rng: random generator (a fresh unseeded one when None).
        iou_target: IoU to aim at; drawn uniformly from ``iou_range`` when None.
        symmetric: perturb in a frame flipped at random (rows and columns each with p = 0.5,
            two draws after the IoU target's) and mirror the structuring elements at random
            (two more draws per operation; :func:`random_morphology`), removing the published
            down-right bias (see the module docstring). False = published (same draws, same
            output).

    Returns:
        (H, W) uint8 0 / 255 coarse mask.
    """
    if not isinstance(gt, np.ndarray) or gt.ndim != 2:
        raise ValueError(f'gt must be an (H, W) array, got {getattr(gt, "shape", type(gt))}')
    rng = np.random.default_rng() if rng is None else rng
    if iou_target is None:
        lo, hi = iou_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f'iou_range must satisfy 0 < lo <= hi <= 1, got {iou_range}')
        iou_target = float(rng.random() * (hi - lo) + lo)
    elif not 0.0 < iou_target <= 1.0:
        raise ValueError(f'iou_target must be in (0, 1], got {iou_target}')
    if gt.dtype == np.uint8:
        binary = np.where(gt > 127, 255, 0).astype(np.uint8)
    elif np.issubdtype(gt.dtype, np.floating):
        binary = np.where(gt > 0.5, 255, 0).astype(np.uint8)
    else:
        raise ValueError(f'gt must be uint8 or float, got {gt.dtype}')
    axes = tuple(a for a in (0, 1) if symmetric and rng.random() < 0.5)
    if axes:
        binary = np.ascontiguousarray(np.flip(binary, axes))
    out = random_morphology(resample_contours(binary, rng), iou_target, rng,
                            symmetric=symmetric)
    return np.ascontiguousarray(np.flip(out, axes)) if axes else out


def lowres_mask(gt: np.ndarray, factor: int = 8, soft: bool = False) -> np.ndarray:
    """A low-resolution segmenter's output: ``gt`` down-sampled ``factor`` x, then up again.

    Down-sampling averages ('area'), up-sampling is bilinear, the result is binarised at 0.5
    (or, with ``soft``, kept as the bilinear probability: what an adapter passing the
    segmenter's upsampled probability gives). Deterministic; used as the second kind of coarse
    input in evaluation (and, optionally, in training).

    Args:
        gt: (H, W) uint8 0..255 or float in [0, 1].
        factor: integer down-sampling factor >= 1.
        soft: return ``round(255 * p)`` of the bilinear probability instead of 0 / 255.

    Returns:
        (H, W) uint8: 0 / 255, or 0..255 with ``soft``.
    """
    if not isinstance(gt, np.ndarray) or gt.ndim != 2:
        raise ValueError(f'gt must be an (H, W) array, got {getattr(gt, "shape", type(gt))}')
    if int(factor) != factor or factor < 1:
        raise ValueError(f'factor must be an integer >= 1, got {factor}')
    g = gt.astype(np.float32) / (255.0 if gt.dtype == np.uint8 else 1.0)
    h, w = g.shape
    small = cv2.resize(g, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if soft:
        return np.clip(np.rint(up * 255.0), 0, 255).astype(np.uint8)
    return np.where(up > 0.5, 255, 0).astype(np.uint8)
