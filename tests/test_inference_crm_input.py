"""ScaledInput: CRM's per-scale input computed window by window from the uint8 image."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segrefine_plugins.inference.base import IMAGENET_MEAN, IMAGENET_STD
from segrefine_plugins.inference.crm_input import ScaledInput, reflect_index

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
PAD = 32


@pytest.fixture(scope='module')
def inputs():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 70, 95), dtype=torch.uint8, generator=g)
    mask = torch.randint(0, 256, (70, 95), dtype=torch.uint8, generator=g)
    prob = torch.rand(70 + 2 * PAD, 95 + 2 * PAD, generator=g)
    return image, mask, prob


def _published(image, seg, s, bgr=False):
    """The published pipeline: normalise the whole image, reflect-pad, resize."""
    x = image.unsqueeze(0).float()
    x = x.flip(1) if bgr else x
    rgb = F.pad((x / 255.0 - MEAN) / STD, (PAD,) * 4, mode='reflect')
    h, w = rgb.shape[-2:]
    size = (round(h * s), round(w * s))
    if size == (h, w):
        return rgb, seg
    return (F.interpolate(rgb, size=size, mode='bilinear', align_corners=True),
            F.interpolate(seg, size=size, mode='bilinear', align_corners=True))


def test_reflect_index_is_reflect_padding():
    x = torch.arange(7.0).view(1, 1, 7)
    torch.testing.assert_close(x[0, 0, reflect_index(7, 5, torch.device('cpu'))],
                               F.pad(x, (5, 5), mode='reflect')[0, 0], atol=0, rtol=0)
    with pytest.raises(ValueError, match='longer'):
        reflect_index(7, 7, torch.device('cpu'))


@pytest.mark.parametrize('s', [1.0, 0.5, 0.25, 0.125, 0.3])
@pytest.mark.parametrize('source', ['mask', 'prob'])
def test_windows_equal_the_published_resized_input(inputs, s, source):
    image, mask, prob = inputs
    if source == 'mask':
        seg = F.pad(((mask > 127).float() * 2 - 1)[None, None], (PAD,) * 4, mode='reflect')
        scaled = ScaledInput(image, MEAN, STD, PAD, s, mask=mask)
    else:
        seg = ((prob - 0.5) * 2)[None, None]
        scaled = ScaledInput(image, MEAN, STD, PAD, s, prob=prob)
    rgb_ref, seg_ref = _published(image, seg, s)
    assert scaled.size == tuple(rgb_ref.shape[-2:])
    h, w = scaled.size
    tol = 0 if s == 1.0 else 2e-6   # bitwise at scale 1; interpolation rounding below
    for rows, cols in [((0, h), (0, w)), ((3, h // 2), (1, w - 2)), ((h - 1, h), (0, 1))]:
        rgb, sg = scaled.window(rows, cols)
        (r0, r1), (c0, c1) = rows, cols
        assert rgb.shape == (1, 3, r1 - r0, c1 - c0) and sg.shape == (1, 1, r1 - r0, c1 - c0)
        torch.testing.assert_close(rgb, rgb_ref[..., r0:r1, c0:c1], atol=tol, rtol=0)
        torch.testing.assert_close(sg, seg_ref[..., r0:r1, c0:c1], atol=tol, rtol=0)


def test_bgr_images_are_read_as_rgb(inputs):
    image, mask, _ = inputs
    seg = F.pad(((mask > 127).float() * 2 - 1)[None, None], (PAD,) * 4, mode='reflect')
    rgb_ref, _ = _published(image, seg, 0.5, bgr=True)
    rgb, _ = ScaledInput(image, MEAN, STD, PAD, 0.5, mask=mask, bgr=True).window(
        (0, rgb_ref.shape[-2]), (0, rgb_ref.shape[-1]))
    torch.testing.assert_close(rgb, rgb_ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize('s', [1.0, 0.5])
def test_soft_mask_is_read_linearly(inputs, s):
    image, mask, _ = inputs
    seg = F.pad((mask.float() / 255.0 * 2 - 1)[None, None], (PAD,) * 4, mode='reflect')
    _, seg_ref = _published(image, seg, s)
    _, got = ScaledInput(image, MEAN, STD, PAD, s, mask=mask, soft=True).window(
        (0, seg_ref.shape[-2]), (0, seg_ref.shape[-1]))
    torch.testing.assert_close(got, seg_ref, atol=2e-6, rtol=0)
    assert len(got.unique()) > 100                          # not binarised


def test_bad_arguments(inputs):
    image, mask, prob = inputs
    with pytest.raises(ValueError, match='exactly one'):
        ScaledInput(image, MEAN, STD, PAD, 1.0)
    with pytest.raises(ValueError, match='exactly one'):
        ScaledInput(image, MEAN, STD, PAD, 1.0, mask=mask, prob=prob)
    with pytest.raises(ValueError, match='uint8'):
        ScaledInput(image.float(), MEAN, STD, PAD, 1.0, mask=mask)
    with pytest.raises(ValueError, match='padded size'):
        ScaledInput(image, MEAN, STD, PAD, 1.0, prob=prob[1:])
    with pytest.raises(ValueError, match='does not match'):
        ScaledInput(image, MEAN, STD, PAD, 1.0, mask=mask[:, 1:])
    with pytest.raises(ValueError, match='larger scale'):
        ScaledInput(image, MEAN, STD, PAD, 0.001, mask=mask)
    with pytest.raises(ValueError, match='outside'):
        ScaledInput(image, MEAN, STD, PAD, 1.0, mask=mask).window((0, 200), (0, 10))
