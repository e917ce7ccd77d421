"""The published augmentation: crop / pad / flip, colour jitter, grayscale, rescale."""
from __future__ import annotations

import numpy as np
import pytest

from segrefine_plugins.training.transforms import (color_jitter, random_crop_flip,
                                                   random_grayscale, random_rescale, to_gray)


def _image(h=50, w=70):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_crop_keeps_image_and_mask_aligned():
    img = _image()
    mask = img[..., 0].copy()            # the mask is a copy of the red channel
    for seed in range(5):
        ci, cm = random_crop_flip(img, mask, 32, np.random.default_rng(seed))
        assert ci.shape == (32, 32, 3) and cm.shape == (32, 32)
        np.testing.assert_array_equal(ci[..., 0], cm)


def test_crop_pads_small_inputs_with_zeros():
    img = np.full((10, 20, 3), 200, np.uint8)
    mask = np.full((10, 20), 255, np.uint8)
    ci, cm = random_crop_flip(img, mask, 24, np.random.default_rng(0))
    assert ci.shape == (24, 24, 3)
    assert (cm == 255).sum() == 10 * 20 and (cm == 0).sum() == 24 * 24 - 200
    assert ((ci[..., 0] == 200) == (cm == 255)).all()


def test_flip_happens_about_half_the_time():
    img = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 0] = 255
    rng = np.random.default_rng(0)
    flipped = sum(random_crop_flip(img, mask, 8, rng)[1][0, -1] == 255 for _ in range(200))
    assert 70 < flipped < 130


def test_crop_checks():
    with pytest.raises(ValueError):
        random_crop_flip(_image(), np.zeros((5, 5), np.uint8), 16, np.random.default_rng(0))
    with pytest.raises(ValueError):
        random_crop_flip(_image(), np.zeros((50, 70), np.uint8), 0, np.random.default_rng(0))


def test_color_jitter_brightness_only_scales():
    img = np.full((4, 4, 3), 100, np.uint8)
    out = color_jitter(img, np.random.default_rng(0), brightness=0.2, contrast=0.0,
                       saturation=0.0)
    v = int(out[0, 0, 0])
    assert 80 <= v <= 120 and (out == v).all()


def test_color_jitter_saturation_zero_range_is_identity_on_gray():
    gray = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10, 3, axis=2)
    out = color_jitter(gray, np.random.default_rng(1), brightness=0.0, contrast=0.0,
                       saturation=0.05)
    np.testing.assert_array_equal(out, gray)   # blending a gray image with its gray is a no-op


def test_grayscale_probability_and_luminance():
    img = _image()
    rng = np.random.default_rng(0)
    outs = [random_grayscale(img, rng, p=0.1) for _ in range(300)]
    n_gray = sum(not (o is img) for o in outs)
    assert 10 < n_gray < 55
    g = random_grayscale(img, np.random.default_rng(0), p=1.0)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    np.testing.assert_allclose(g[..., 0], np.rint(to_gray(img)[..., 0]), atol=1)


def test_rescale_changes_size_within_range():
    img, mask = _image(100, 60), np.zeros((100, 60), np.uint8)
    ri, rm = random_rescale(img, mask, (0.5, 0.5), np.random.default_rng(0))
    assert ri.shape == (50, 30, 3) and rm.shape == (50, 30)
