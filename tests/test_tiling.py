"""Crop-grid arithmetic, chipping and accumulation (segrefine_plugins.inference.tiling)."""
from __future__ import annotations

import pytest
import torch

from segrefine_plugins.inference.tiling import (CHIP, Crop, TileAccumulator, axis_windows,
                                                chip_crop, crop_grid, grid_step)


@pytest.mark.parametrize('height, width, expected', [
    (3000, 4000, 63), (4000, 3000, 63), (1600, 2048, 12), (2048, 1600, 12),
    (900, 900, 1), (1, 1, 1), (600, 899, 1), (901, 900, 2)])
def test_crop_counts_at_L900(height, width, expected):
    assert len(crop_grid(height, width, 900)) == expected


def test_published_windows_at_L900():
    assert grid_step(900) == 418
    # 4000 px: starts 0, 418, ..., 2926, then the last two shift to 4000 - 900 = 3100
    assert [s for s, _ in axis_windows(4000, 900)] == [0, 418, 836, 1254, 1672, 2090, 2508,
                                                       2926, 3100]
    assert axis_windows(1600, 900) == [(0, 900), (418, 1318), (700, 1600)]
    # a side shorter than L is one whole-side window
    assert axis_windows(500, 900) == [(0, 500)]


def test_grid_order_is_columns_outer_rows_inner():
    crops = crop_grid(1600, 2048, 900)
    rows = axis_windows(1600, 900)
    cols = axis_windows(2048, 900)
    assert crops == [Crop(y0, y1, x0, x1) for x0, x1 in cols for y0, y1 in rows]
    assert crops[1] == Crop(418, 1318, 0, 900)


@pytest.mark.parametrize('height, width, L', [(1600, 2048, 900), (240, 160, 128),
                                              (181, 333, 200), (75, 100, 128), (7, 500, 66)])
def test_crops_equal_size_and_inside(height, width, L):
    crops = crop_grid(height, width, L)
    assert len(set(crops)) == len(crops)
    for c in crops:
        assert c.shape == (min(L, height), min(L, width))
        assert 0 <= c.y0 < c.y1 <= height and 0 <= c.x0 < c.x1 <= width


@pytest.mark.parametrize('height, width, L', [(1600, 2048, 900), (240, 160, 128),
                                              (181, 333, 200), (300, 301, 66)])
def test_chipped_crops_cover_every_pixel(height, width, L):
    acc = TileAccumulator(height, width)
    for c in crop_grid(height, width, L):
        acc.add(c, torch.ones(c.shape))
    assert bool((acc.count > 0).all())
    assert torch.equal(acc.result(torch.zeros(height, width)), torch.ones(height, width))


@pytest.mark.parametrize('L', [0, 10, 65, -900])
def test_L_too_small_raises(L):
    with pytest.raises(ValueError, match='too small for the crop grid'):
        crop_grid(100, 100, L)


def test_L_must_be_int():
    with pytest.raises(ValueError, match='must be an int'):
        grid_step(900.0)  # type: ignore[arg-type]
    assert grid_step(66) == 1


def test_chip_inner_and_border_sides():
    # interior crop: every side chipped
    dst, src = chip_crop(Crop(418, 1318, 418, 1318), 3000, 4000)
    assert dst == (slice(418 + CHIP, 1318 - CHIP), slice(418 + CHIP, 1318 - CHIP))
    assert src == (slice(CHIP, 900 - CHIP), slice(CHIP, 900 - CHIP))
    # top-left corner crop: only bottom and right chipped
    dst, src = chip_crop(Crop(0, 900, 0, 900), 3000, 4000)
    assert dst == (slice(0, 900 - CHIP), slice(0, 900 - CHIP))
    assert src == (slice(0, 900 - CHIP), slice(0, 900 - CHIP))
    # bottom-right corner crop: only top and left chipped
    dst, src = chip_crop(Crop(2100, 3000, 3100, 4000), 3000, 4000)
    assert dst == (slice(2100 + CHIP, 3000), slice(3100 + CHIP, 4000))
    assert src == (slice(CHIP, 900), slice(CHIP, 900))
    # whole-image crop: nothing chipped
    dst, src = chip_crop(Crop(0, 50, 0, 70), 50, 70)
    assert dst == src == (slice(0, 50), slice(0, 70))


def test_accumulator_averages_and_falls_back():
    acc = TileAccumulator(4, 100, chip=0)
    acc.add(Crop(0, 4, 0, 60), torch.full((4, 60), 0.2))
    acc.add(Crop(0, 4, 40, 100), torch.full((4, 60), 0.6))
    out = acc.result(torch.zeros(4, 100))
    assert torch.allclose(out[:, :40], torch.tensor(0.2))
    assert torch.allclose(out[:, 40:60], torch.tensor(0.4))
    assert torch.allclose(out[:, 60:], torch.tensor(0.6))

    empty = TileAccumulator(3, 3)
    fallback = torch.arange(9, dtype=torch.float32).view(3, 3)
    assert torch.equal(empty.result(fallback), fallback)


def test_accumulator_rejects_wrong_output_size():
    acc = TileAccumulator(10, 10)
    with pytest.raises(ValueError, match='does not match crop'):
        acc.add(Crop(0, 10, 0, 10), torch.zeros(8, 10))
