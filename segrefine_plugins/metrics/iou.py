"""Intersection over union, per image (counts) and accumulated over a dataset."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .masks import binary_pair


def iou_counts(gt: np.ndarray, pred: np.ndarray) -> Tuple[int, int]:
    """(intersection, union) pixel counts of two (H, W) binary masks.

    Masks are bool, or uint8 0..255 thresholded at > 128 (see
    :func:`~segrefine_plugins.metrics.masks.as_binary_mask`).
    """
    g, p = binary_pair(gt, pred)
    return int(np.count_nonzero(g & p)), int(np.count_nonzero(g | p))


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of one image pair in [0, 1]; nan when both masks are empty (0 / 0)."""
    inter, union = iou_counts(gt, pred)
    return inter / union if union else float('nan')


class IoUAccumulator:
    """Dataset IoU as published: sum of intersections / sum of unions over all images.

    This is not the mean of per-image IoUs: large objects weigh more.
    """

    def __init__(self) -> None:
        self.intersection = 0
        self.union = 0
        self.count = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> Tuple[int, int]:
        """Add one image pair; returns its (intersection, union) counts."""
        inter, union = iou_counts(gt, pred)
        self.add_counts(inter, union)
        return inter, union

    def add_counts(self, intersection: int, union: int) -> None:
        """Add precomputed counts of one image."""
        if intersection < 0 or union < intersection:
            raise ValueError(f'invalid counts: intersection {intersection}, union {union}')
        self.intersection += int(intersection)
        self.union += int(union)
        self.count += 1

    @property
    def value(self) -> float:
        """Accumulated IoU in [0, 1]; nan before any non-empty union was added."""
        return self.intersection / self.union if self.union else float('nan')
