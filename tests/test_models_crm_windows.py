"""CRM window geometry: the range-restricted align_corners=True resize equals PyTorch's, region
plans cover the receptive field on an aligned grid, tensor windows are views."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segrefine_plugins.models.crm_windows import TensorWindows, lerp_select, \
    linear_resize_weights, region_plan, resize_region


@pytest.mark.parametrize('n_in, n_out, start, stop', [(7, 13, 0, 13), (7, 13, 4, 9), (40, 79, 77, 79),
                                                      (1, 5, 0, 5), (9, 4, 1, 3)])
def test_resize_rows_equal_interpolate(n_in, n_out, start, stop):
    """Rows [start, stop) of F.interpolate(align_corners=True), through the index / lerp pair."""
    x = torch.randn(1, 2, n_in, 3, generator=torch.Generator().manual_seed(n_in))
    want = F.interpolate(x, size=(n_out, 3), mode='bilinear', align_corners=True)
    i0, i1, lam = linear_resize_weights(n_in, n_out, start, stop)
    assert i0.dtype == torch.int64 and lam.dtype == torch.float32
    assert int(i0.min()) >= 0 and int(i1.max()) <= n_in - 1 and float(lam.min()) >= 0
    torch.testing.assert_close(lerp_select(x, 2, i0, i1, lam), want[:, :, start:stop],
                               atol=1e-6, rtol=0)


def test_region_plan_covers_the_receptive_field_on_an_aligned_grid():
    radii = (3, 9, 45)
    size = 157                                    # F has 79 rows, x_2 40, x_3 20
    plan = region_plan((17, 60), size, radii)
    assert plan.sizes == (79, 40, 20)
    assert plan.cat == (16, 61)                   # one more row each side for the 3x3 conv
    lo, hi = plan.window
    assert lo % 8 == 0 and 0 <= lo and hi <= size
    for stride, (a, b), r in zip((2, 4, 8), plan.sources, radii):
        assert lo <= stride * a - r or lo == 0
        assert hi >= stride * (b - 1) + r or hi == size
    whole = region_plan((0, 79), size, radii)
    assert whole.window == (0, size) and whole.cat == (0, 79)
    with pytest.raises(ValueError, match='outside the feature map'):
        region_plan((70, 80), size, radii)
    with pytest.raises(ValueError, match='outside the feature map'):
        region_plan((5, 5), size, radii)


def test_resize_region_equals_the_full_resize_restricted():
    """Branch x_3 (1/8) resized to x_1's (1/2) size, only the plan's rows / columns."""
    size_y, size_x = 157, 122
    py = region_plan((17, 60), size_y, (3, 9, 45))
    px = region_plan((31, 45), size_x, (3, 9, 45))
    x3 = torch.randn(1, 4, py.sizes[2], px.sizes[2])
    full = F.interpolate(x3, size=(py.sizes[0], px.sizes[0]), mode='bilinear',
                         align_corners=True)
    (s0, s1), (t0, t1) = py.sources[2], px.sources[2]
    out = resize_region(x3[..., s0:s1, t0:t1], py, px, level=2)
    (c0, c1), (d0, d1) = py.cat, px.cat
    torch.testing.assert_close(out, full[..., c0:c1, d0:d1], atol=1e-6, rtol=0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('dim', [2, 3])
def test_lerp_select_channels_last_path_is_the_same_and_stays_channels_last(dim, dtype):
    x = torch.randn(1, 5, 11, 13, generator=torch.Generator().manual_seed(dim)).to(dtype)
    cl = x.contiguous(memory_format=torch.channels_last)
    i0, i1, lam = linear_resize_weights(x.shape[dim], 17, 2, 15)
    want = lerp_select(x, dim, i0, i1, lam)               # NCHW: plain index_select
    got = lerp_select(cl, dim, i0, i1, lam)
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()


def test_tensor_windows_are_views_and_check_shapes():
    rgb, seg = torch.randn(2, 3, 10, 12), torch.rand(2, 1, 10, 12)
    w = TensorWindows(rgb, seg)
    assert w.size == (10, 12)
    a, b = w.window((2, 7), (0, 5))
    assert a.shape == (2, 3, 5, 5) and b.shape == (2, 1, 5, 5)
    assert a.data_ptr() == rgb[..., 2:, :].data_ptr()          # a view, not a copy
    for bad in ((rgb, seg[..., :11]), (rgb[:, :2], seg), (rgb, seg[:1]), (rgb[0], seg[0])):
        with pytest.raises(ValueError, match='need rgb'):
            TensorWindows(*bad)
