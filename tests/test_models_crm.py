"""CRM network: published layout, golden forward, fast decoder, windowed encoder, small variants."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segrefine_plugins.models import crm as crm_mod
from segrefine_plugins.models.checkpoint import load_checkpoint
from segrefine_plugins.models.crm import CRMNet, QueryDecoder, grid_coords, make_coord


@pytest.fixture(scope='module')
def published(crm_weights) -> CRMNet:
    return load_checkpoint(CRMNet(), crm_weights).eval()


@pytest.fixture(scope='module')
def golden(golden_dir):
    return np.load(golden_dir / 'crm_forward.npz')


def _small(blocks=(1, 1, 1, 1), width=8, seed=0) -> CRMNet:
    torch.manual_seed(seed)
    model = CRMNet(blocks, width).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_layout_matches_published_manifest(spec_root):
    manifest = json.loads((spec_root / 'crm_official_state_dict.json').read_text())
    state = CRMNet().state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == \
        [(name, shape) for name, shape, _ in manifest['entries']]
    assert sum(p.numel() for p in CRMNet().parameters()) == 24_265_697


def test_make_coord_is_pixel_centres():
    c = make_coord(4)
    assert c.dtype == torch.float32
    assert torch.allclose(c, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    g = grid_coords(2, 3)
    assert g.shape == (6, 2) and torch.allclose(g[1], torch.tensor([-0.5, 0.0]))


def test_golden_forward_reference_decoder(published, golden):
    with torch.inference_mode():
        feat = published.encode(torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg']))
        assert feat.shape == (1, 256, 32, 32)
        logit = published.decode(feat, torch.from_numpy(golden['coord']),
                                 torch.from_numpy(golden['cell']))
    assert logit.shape == golden['logit'].shape
    np.testing.assert_allclose(logit.numpy(), golden['logit'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(torch.sigmoid(logit).numpy(), golden['pred'], atol=1e-5, rtol=0)


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
    model = _small()
    feat = torch.randn(1, 256, 13, 7)
    for ht, wt in ((29, 31), (13, 7), (100, 3), (5, 64)):
        coord = grid_coords(ht, wt)[None]
        cell = torch.tensor([2 / ht, 2 / wt]).expand(1, ht * wt, 2)
        with torch.inference_mode():
            ref = model.decode(feat, coord, cell)[0, :, 0]
            fast = model.query_decoder(feat).block(model.grid_queries((13, 7), (ht, wt)),
                                                   (0, ht), (0, wt))
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)


def test_layer4_is_never_run(published, golden):
    calls = []
    handle = published.feats.layer4.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.inference_mode():
            published.encode(torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg']))
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize('arch', [((3, 4, 6, 3), 64), ((1, 1, 1, 1), 8), ((2, 2, 2, 2), 16)])
def test_encode_region_equals_encode(arch):
    model = _small(*arch)
    g = torch.Generator().manual_seed(1)
    rgb = torch.randn(1, 3, 157, 122, generator=g)
    seg = torch.rand(1, 1, 157, 122, generator=g) * 2 - 1
    with torch.inference_mode():
        full = model.encode(rgb, seg)
        hf, wf = model.feature_size(157, 122)
        assert full.shape[-2:] == (hf, wf) == (79, 61)
        for rows, cols in (((0, 20), (0, 61)), ((17, 60), (31, 45)), ((40, 79), (0, 9)),
                           ((78, 79), (60, 61))):
            region = model.encode_region(rgb, seg, rows, cols)
            torch.testing.assert_close(region, full[..., rows[0]:rows[1], cols[0]:cols[1]],
                                       atol=1e-5, rtol=1e-5)


def test_folded_copy_keeps_the_numbers(published, golden):
    folded = published.folded()
    # only the three BNs that follow a ReLU (bn1_128, bn1_256, bn1_1024) are left
    left = [n for n, m in folded.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert left == ['aspp_.bn1_128', 'aspp_.bn1_256', 'aspp_.bn1_1024']
    assert not hasattr(folded.feats, 'layer4')
    assert 'feats.layer4.0.conv1.weight' in published.state_dict()  # original untouched
    rgb, seg = torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg'])
    with torch.inference_mode():
        ref = published.encode(rgb, seg)
        torch.testing.assert_close(folded.encode(rgb, seg), ref, atol=1e-5, rtol=1e-5)
        cl = folded.to(memory_format=torch.channels_last)
        out = cl.encode(rgb.contiguous(memory_format=torch.channels_last),
                        seg.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cl.encode_region(rgb, seg, (3, 20), (0, 32)),
                                   ref[..., 3:20, :], atol=1e-5, rtol=1e-5)


def test_encode_region_needs_its_receptive_field(monkeypatch):
    """Control: with the receptive field ignored, interior windows come out wrong."""
    model = _small((2, 2, 2, 2), 8)
    rgb, seg = torch.randn(1, 3, 160, 160), torch.rand(1, 1, 160, 160) * 2 - 1
    monkeypatch.setattr(CRMNet, 'receptive_radii', lambda self: (0, 0, 0))
    with torch.inference_mode():
        full = model.encode(rgb, seg)
        region = model.encode_region(rgb, seg, (30, 50), (30, 50))
    assert (region - full[..., 30:50, 30:50]).abs().max() > 1e-3


def test_small_architecture_construct_and_forward():
    model = _small((1, 1, 1, 1), 32)
    assert model.aspp_.aspp1_128.atrous_conv.in_channels == 32
    assert model.aspp_.aspp1_256.atrous_conv.in_channels == 128
    assert model.aspp_.aspp1_1024.atrous_conv.in_channels == 512
    assert len(model.feats.layer3) == 1
    n_small = sum(p.numel() for p in model.parameters())
    assert n_small < sum(p.numel() for p in CRMNet().parameters()) / 5
    rgb, seg = torch.randn(2, 3, 40, 50), torch.ones(2, 1, 40, 50)
    with torch.inference_mode():
        feat = model.encode(rgb, seg)
        assert feat.shape == (2, 256, 20, 25)
        coord = grid_coords(40, 50)[None].expand(2, -1, -1)
        cell = torch.tensor([2 / 40, 2 / 50]).expand(2, 2000, 2)
        logit = model.decode(feat, coord, cell)
    assert logit.shape == (2, 2000, 1) and torch.isfinite(logit).all()
    # the small model's own state dict round-trips through strict loading
    load_checkpoint(CRMNet((1, 1, 1, 1), 32), model.state_dict())


def test_bad_inputs():
    with pytest.raises(ValueError, match='blocks'):
        CRMNet((3, 4, 6))
    with pytest.raises(ValueError, match='blocks'):
        CRMNet((3, 0, 6, 3))
    with pytest.raises(ValueError, match='width'):
        CRMNet(width=0)
    model = _small()
    with pytest.raises(ValueError, match='encode needs'):
        model.encode(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 17))
    with pytest.raises(ValueError, match='encode needs'):
        model.encode(torch.randn(1, 4, 16, 16), torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match='outside the feature map'):
        model.encode_region(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16), (0, 9), (0, 8))
    with pytest.raises(ValueError, match='feat must be'):
        QueryDecoder(model.imnet, torch.randn(1, 128, 4, 4))
    dec = model.query_decoder(torch.randn(1, 256, 4, 4))
    with pytest.raises(ValueError, match='grid terms'):
        dec.block(model.grid_queries((5, 4), (8, 8)), (0, 8), (0, 8))
    with pytest.raises(ValueError, match='coord must be'):
        dec(torch.zeros(3, 3), torch.zeros(2))


def test_nearest_index_matches_grid_sample():
    """Index arithmetic picks what nearest-neighbour grid_sample picks, ties included."""
    for size in (1, 2, 7, 64, 1778):
        c = torch.cat([make_coord(n) for n in (3, 8, 31, 3556)] + [torch.linspace(-1, 1, 1001)])
        for shift in (-1.0 / size + 1e-6, 1.0 / size + 1e-6):
            idx = crm_mod._nearest_index(c.clone(), shift, size)
            values = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
            grid = torch.stack([(c + shift).clamp(-1 + 1e-6, 1 - 1e-6), torch.zeros_like(c)], -1)
            picked = torch.nn.functional.grid_sample(values, grid.view(1, 1, -1, 2),
                                                     mode='nearest', align_corners=False)
            assert torch.equal(idx, picked.view(-1).long())
