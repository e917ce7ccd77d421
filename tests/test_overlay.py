"""segrefine_plugins.overlay: the side-by-side coarse | refined picture."""
from __future__ import annotations

import numpy as np
import pytest

from segrefine_plugins.overlay import COARSE_COLOUR, REFINED_COLOUR, line_width, make_overlay


def _count_colour(panel, colour):
    return int(np.all(panel == np.array(colour, np.uint8), axis=2).sum())


def test_overlay_layout_and_colours():
    h, w = 120, 160
    image = np.full((h, w, 3), 128, np.uint8)
    coarse = np.zeros((h, w), bool)
    coarse[40:80, 40:100] = True
    refined = np.zeros((h, w), bool)
    refined[30:90, 50:120] = True
    out = make_overlay(image, coarse, refined)
    gap = out.shape[1] - 2 * w
    assert out.shape == (h, 2 * w + gap, 3) and out.dtype == np.uint8 and gap >= 4
    left, right = out[:, :w], out[:, w + gap:]
    assert np.all(out[:, w:w + gap] == 255)                       # white separator
    assert _count_colour(left, COARSE_COLOUR) > 100 and _count_colour(left, REFINED_COLOUR) < 50
    assert _count_colour(right, REFINED_COLOUR) > 100 and _count_colour(right, COARSE_COLOUR) < 50
    # contours lie on the mask edges: a pixel on the coarse top edge is orange on the left
    assert tuple(left[40, 70]) == COARSE_COLOUR and tuple(right[30, 85]) == REFINED_COLOUR
    # far from both masks (and from the label) the image is untouched
    assert np.all(left[100:, 130:] == 128) and np.all(right[100:, 130:] == 128)
    # inside the mask: tinted towards the colour, not covered
    assert tuple(left[60, 70]) != (128, 128, 128) and left[60, 70, 0] > left[60, 70, 2]


def test_line_width_scales_with_size():
    assert line_width(300, 400) == 2
    assert line_width(2160, 3840) == 8
    assert line_width(10, 10) == 2


def test_overlay_bad_inputs():
    image = np.zeros((10, 12, 3), np.uint8)
    ok = np.zeros((10, 12), bool)
    with pytest.raises(ValueError, match='coarse'):
        make_overlay(image, ok.astype(np.uint8), ok)
    with pytest.raises(ValueError, match='refined'):
        make_overlay(image, ok, ok[:5])
    with pytest.raises(ValueError, match='image'):
        make_overlay(image[:, :, 0], ok, ok)
