"""boundary_shift: direction and size of a systematic boundary shift."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefine_plugins.metrics import boundary_shift


def _blob(cy: float = 60.0, cx: float = 80.0, h: int = 120, w: int = 160) -> np.ndarray:
    """An ellipse with a sub-pixel centre (8 fractional bits), uint8 0 / 255."""
    out = np.zeros((h, w), np.uint8)
    cv2.ellipse(out, (int(round(cx * 256)), int(round(cy * 256))), (40 * 256, 30 * 256), 20, 0,
                360, 255, -1, cv2.LINE_8, 8)
    return out


@pytest.mark.parametrize('dy,dx', [(1, 0), (0, 1), (-1, 0), (0, -1)])
def test_whole_pixel_shifts(dy, dx):
    gt = _blob()
    moved = np.roll(gt, (dy, dx), axis=(0, 1))
    np.testing.assert_allclose(boundary_shift(gt, moved), (dy, dx), atol=0.02)


def test_half_pixel_shift_and_no_shift():
    gt = _blob()
    np.testing.assert_allclose(boundary_shift(gt, _blob(cy=60.5)), (0.5, 0.0), atol=0.1)
    np.testing.assert_allclose(boundary_shift(gt, _blob(cx=79.5)), (0.0, -0.5), atol=0.1)
    np.testing.assert_allclose(boundary_shift(gt, _blob(cy=60.4, cx=80.3)), (0.4, 0.3), atol=0.15)
    assert boundary_shift(gt, gt) == (0.0, 0.0)


def test_growth_and_shrinkage_are_not_shifts():
    gt = _blob()
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for pred in (cv2.dilate(gt, disk), cv2.erode(gt, disk)):
        np.testing.assert_allclose(boundary_shift(gt, pred), (0.0, 0.0), atol=0.05)


def test_bool_input_no_edges_and_errors():
    gt = _blob() > 0
    assert boundary_shift(gt, np.roll(gt, 1, axis=0))[0] == pytest.approx(1.0, abs=0.02)
    empty = np.zeros((8, 8), bool)
    assert boundary_shift(empty, empty) == (0.0, 0.0)
    with pytest.raises(ValueError):
        boundary_shift(gt, gt[:-1])
