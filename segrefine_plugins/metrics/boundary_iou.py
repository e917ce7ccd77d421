"""Boundary IoU (Cheng, Girshick, Dollar, Berg, Kirillov; CVPR 2021) for binary masks."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .masks import binary_pair


def boundary_width(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """d = max(1, round(dilation_ratio * image diagonal)), in pixels."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def mask_boundary(mask: np.ndarray, d: int, image_border_is_boundary: bool = True) -> np.ndarray:
    """Inner boundary region of an (H, W) bool mask: the mask minus its erosion.

    The erosion is ``d`` iterations of a 3x3 square (the Chebyshev distance to the
    background < d). With ``image_border_is_boundary`` (the published Boundary IoU code) the
    mask is padded by one background pixel first, so an object cut by the image border has a
    boundary along it; with False it is padded by foreground, so the image border is not a
    boundary.
    """
    m = mask.astype(np.uint8)
    pad = 0 if image_border_is_boundary else 1
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=pad)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=int(d))[1:-1, 1:-1]
    return mask & (eroded == 0)


def boundary_iou(gt: np.ndarray, pred: np.ndarray, dilation_ratio: float = 0.02,
                 image_border_is_boundary: bool = True) -> float:
    """Boundary IoU of two binary masks.

    G_d and P_d are the pixels of each mask within d = max(1, round(dilation_ratio *
    sqrt(H^2 + W^2))) of its contour (:func:`mask_boundary`, inside the mask only: the paper's
    "G_d intersected with G"); the result is |G_d & P_d| / |G_d | P_d|.

    Args:
        gt, pred: (H, W) masks, bool or uint8 0..255 (foreground > 128).
        dilation_ratio: boundary width relative to the image diagonal (paper: 0.02).
        image_border_is_boundary: True (default) as in the published Boundary IoU code: an
            object cut off by the image border has a boundary along the border. False
            treats the outside of the image as foreground so the border is never a boundary.

    Returns:
        Boundary IoU in [0, 1]; nan when both boundaries are empty (both masks empty).
    """
    if not dilation_ratio > 0:
        raise ValueError(f'dilation_ratio must be > 0, got {dilation_ratio}')
    g, p = binary_pair(gt, pred)
    d = boundary_width(*g.shape, dilation_ratio=dilation_ratio)
    gb = mask_boundary(g, d, image_border_is_boundary)
    pb = mask_boundary(p, d, image_border_is_boundary)
    union = int(np.count_nonzero(gb | pb))
    return np.count_nonzero(gb & pb) / union if union else float('nan')
