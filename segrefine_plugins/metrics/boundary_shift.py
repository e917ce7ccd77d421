"""Systematic boundary shift of a predicted mask against the ground truth (a diagnostic).

A refiner trained on coarse masks that sit off the ground truth in one direction is taught
to move boundaries the other way (the published perturbation is biased down-right:
:mod:`segrefine_plugins.training.perturbation`), and annotations of two data sets can differ
in alignment. IoU and mBA show such a shift only as a loss; :func:`boundary_shift` names its
direction and size.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .masks import binary_pair


def boundary_shift(gt: np.ndarray, pred: np.ndarray) -> Tuple[float, float]:
    """Least-squares (dy, dx) shift in pixels of ``pred``'s boundaries against ``gt``'s.

    A mask moved by a small ``d`` changes by about ``-grad(gt) . d`` at its edges (a prediction
    moved down loses foreground at top edges and gains it below bottom edges), so ``d`` is the
    least-squares fit of ``pred - gt`` by the central-difference gradient of ``gt``: exact
    for whole-pixel shifts of up to 1 px along an axis, saturating at about +-1 beyond;
    slanted edges count for both axes; a uniform growth or shrinkage and random boundary
    errors average to ~0 over a closed outline.

    Args:
        gt, pred: (H, W) binary masks (bool, or uint8 0..255 thresholded at > 128), same size.

    Returns:
        (dy, dx) in pixels, > 0 = ``pred`` lies down / right of ``gt``; 0.0 for an axis
        ``gt`` has no edge across (e.g. both when it is empty or full).
    """
    g, p = binary_pair(gt, pred)
    g = g.astype(np.float64)
    diff = p.astype(np.float64) - g
    if g.shape[0] < 2 or g.shape[1] < 2:
        return 0.0, 0.0
    gy, gx = np.gradient(g)
    a = np.array([[(gy * gy).sum(), (gy * gx).sum()], [(gy * gx).sum(), (gx * gx).sum()]])
    b = -np.array([(gy * diff).sum(), (gx * diff).sum()])
    d = np.linalg.lstsq(a, b, rcond=1e-9)[0] if a.any() else np.zeros(2)
    return float(d[0]), float(d[1])
