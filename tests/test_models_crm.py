"""CRM network: published layout, golden forward, windowed encoder, folded copy, small variants."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _crm_support import golden, published, small_crm  # noqa: F401  (fixtures)
from segrefine_plugins.models.checkpoint import load_checkpoint
from segrefine_plugins.models.crm import CRMNet, grid_coords


def test_layout_matches_published_manifest(spec_root):
    manifest = json.loads((spec_root / 'crm_official_state_dict.json').read_text())
    state = CRMNet().state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == \
        [(name, shape) for name, shape, _ in manifest['entries']]
    assert sum(p.numel() for p in CRMNet().parameters()) == 24_265_697


def test_golden_forward_reference_decoder(published, golden):
    with torch.inference_mode():
        feat = published.encode(torch.from_numpy(golden['rgb']), torch.from_numpy(golden['seg']))
        assert feat.shape == (1, 256, 32, 32)
        logit = published.decode(feat, torch.from_numpy(golden['coord']),
                                 torch.from_numpy(golden['cell']))
    assert logit.shape == golden['logit'].shape
    np.testing.assert_allclose(logit.numpy(), golden['logit'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(torch.sigmoid(logit).numpy(), golden['pred'], atol=1e-5, rtol=0)


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
    model = small_crm(*arch)
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
    model = small_crm((2, 2, 2, 2), 8)
    rgb, seg = torch.randn(1, 3, 160, 160), torch.rand(1, 1, 160, 160) * 2 - 1
    monkeypatch.setattr(CRMNet, 'receptive_radii', lambda self: (0, 0, 0))
    with torch.inference_mode():
        full = model.encode(rgb, seg)
        region = model.encode_region(rgb, seg, (30, 50), (30, 50))
    assert (region - full[..., 30:50, 30:50]).abs().max() > 1e-3


def test_small_architecture_construct_and_forward():
    model = small_crm((1, 1, 1, 1), 32)
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
    model = small_crm()
    with pytest.raises(ValueError, match='encode needs'):
        model.encode(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 17))
    with pytest.raises(ValueError, match='encode needs'):
        model.encode(torch.randn(1, 4, 16, 16), torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match='outside the feature map'):
        model.encode_region(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16), (0, 9), (0, 8))
