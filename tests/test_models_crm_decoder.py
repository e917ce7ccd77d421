"""CRM query decoder: coordinates, the fast split-layer / index decoder against the published
(golden) numbers and the reference decoding, nearest-neighbour index arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _crm_support import golden, published, small_crm  # noqa: F401  (fixtures)
from segrefine_plugins.models.crm_decoder import QueryDecoder, _nearest_index, grid_coords, \
    make_coord


def test_make_coord_is_pixel_centres():
    c = make_coord(4)
    assert c.dtype == torch.float32
    assert torch.allclose(c, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    g = grid_coords(2, 3)
    assert g.shape == (6, 2) and torch.allclose(g[1], torch.tensor([-0.5, 0.0]))


def test_golden_forward_fast_decoder(published, golden):
    """The split-layer / index-arithmetic decoder gives the published numbers: arbitrary
    queries, whole grid as one block, and the grid in pieces."""
    coord = torch.from_numpy(golden['coord'][0])
    assert torch.equal(coord, grid_coords(96, 80))  # the golden queries are a 96x80 grid
    want = golden['logit'][0, :, 0]
    with torch.inference_mode():
        feat = published.encode(torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg']))
        dec = published.query_decoder(feat)
        np.testing.assert_allclose(dec(coord, torch.from_numpy(golden['cell'][0, 0])).numpy(),
                                   want, atol=1e-5, rtol=0)
        grid = published.grid_queries((32, 32), (96, 80))
        np.testing.assert_allclose(dec.block(grid, (0, 96), (0, 80)).numpy(), want,
                                   atol=1e-5, rtol=0)
        pieces = torch.cat([dec.block(grid, (0, 41), (0, 80)),
                            dec.block(grid, (41, 96), (0, 80))])
        np.testing.assert_allclose(pieces.numpy(), want, atol=1e-5, rtol=0)
        rows = torch.tensor([0, 95, 50, 7])
        cols = torch.tensor([79, 0, 33, 7])
        np.testing.assert_allclose(dec.pixels(grid, rows, cols).numpy(),
                                   want.reshape(96, 80)[rows, cols], atol=1e-5, rtol=0)


def test_fast_decoder_on_a_feature_window(published, golden):
    """A decoder holding only a rectangle of F decodes the pixels whose neighbours lie in it."""
    with torch.inference_mode():
        feat = published.encode(torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg']))
        grid = published.grid_queries((32, 32), (96, 80))
        dec = published.query_decoder(feat[:, :, 10:, 5:21].clone(), (10, 5), (32, 32))
        i0 = int(torch.searchsorted(grid.rows.index[0], torch.tensor(10)))
        j0 = int(torch.searchsorted(grid.cols.index[0], torch.tensor(5)))
        j1 = int(torch.searchsorted(grid.cols.index[1], torch.tensor(21)))
        out = dec.block(grid, (i0, 96), (j0, j1)).view(96 - i0, j1 - j0)
    want = golden['logit'][0, :, 0].reshape(96, 80)[i0:, j0:j1]
    np.testing.assert_allclose(out.numpy(), want, atol=1e-5, rtol=0)


def test_fast_decoder_equals_reference_on_odd_sizes():
    """Non-trivial size ratios (odd target / feature sizes: nearest-neighbour ties)."""
    model = small_crm()
    feat = torch.randn(1, 256, 13, 7)
    for ht, wt in ((29, 31), (13, 7), (100, 3), (5, 64)):
        coord = grid_coords(ht, wt)[None]
        cell = torch.tensor([2 / ht, 2 / wt]).expand(1, ht * wt, 2)
        with torch.inference_mode():
            ref = model.decode(feat, coord, cell)[0, :, 0]
            fast = model.query_decoder(feat).block(model.grid_queries((13, 7), (ht, wt)),
                                                   (0, ht), (0, wt))
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)


def test_nearest_index_matches_grid_sample():
    """Index arithmetic picks what nearest-neighbour grid_sample picks, ties included."""
    for size in (1, 2, 7, 64, 1778):
        c = torch.cat([make_coord(n) for n in (3, 8, 31, 3556)] + [torch.linspace(-1, 1, 1001)])
        for shift in (-1.0 / size + 1e-6, 1.0 / size + 1e-6):
            idx = _nearest_index(c.clone(), shift, size)
            values = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
            grid = torch.stack([(c + shift).clamp(-1 + 1e-6, 1 - 1e-6), torch.zeros_like(c)], -1)
            picked = torch.nn.functional.grid_sample(values, grid.view(1, 1, -1, 2),
                                                     mode='nearest', align_corners=False)
            assert torch.equal(idx, picked.view(-1).long())


def test_bad_inputs():
    model = small_crm()
    with pytest.raises(ValueError, match='feat must be'):
        QueryDecoder(model.imnet, torch.randn(1, 128, 4, 4))
    dec = model.query_decoder(torch.randn(1, 256, 4, 4))
    with pytest.raises(ValueError, match='grid terms'):
        dec.block(model.grid_queries((5, 4), (8, 8)), (0, 8), (0, 8))
    with pytest.raises(ValueError, match='coord must be'):
        dec(torch.zeros(3, 3), torch.zeros(2))
