"""CascadePSPNet: published layout, golden forward parity, input checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segrefine_plugins.models.cascadepsp import CascadePSPNet
from segrefine_plugins.models.checkpoint import load_checkpoint

TOL = 1e-4


@pytest.fixture(scope='module')
def manifest(spec_root):
    return json.loads((spec_root / 'cascadepsp_official_state_dict.json').read_text())


@pytest.fixture(scope='module')
def model(cascadepsp_weights):
    return load_checkpoint(CascadePSPNet(), cascadepsp_weights).eval()


def test_state_dict_equals_manifest(manifest):
    net = CascadePSPNet()
    state = net.state_dict()
    expected = [(name, tuple(shape), dtype) for name, shape, dtype in manifest['entries']]
    got = [(k, tuple(v.shape), str(v.dtype).replace('torch.', '')) for k, v in state.items()]
    assert got == expected  # names, shapes, dtypes and order
    assert len(state) == manifest['num_entries'] == 426
    assert sum(p.numel() for p in net.parameters()) == manifest['num_parameters'] == 67_683_433
    assert [name for name, _ in net.named_children()] == [
        'feats', 'psp', 'up_1', 'up_2', 'up_3', 'final_28', 'final_56', 'final_11', 'final_21']


@pytest.mark.slow
def test_forward_matches_golden(model, golden_dir):
    g = np.load(golden_dir / 'cascadepsp_forward.npz')
    rgb, seg, inter_s8 = (torch.from_numpy(g[k]) for k in ('rgb', 'seg', 'inter_s8'))
    with torch.inference_mode():
        runs = {'full': model(rgb, seg), 'inter': model(rgb, seg, inter_s8=inter_s8)}
    for prefix, out in runs.items():
        keys = {k[len(prefix) + 1:] for k in g.files if k.startswith(prefix + '_')} - {'s8'}
        assert set(out) == keys, prefix
        for key in keys:
            diff = np.abs(out[key].numpy() - g[f'{prefix}_{key}']).max()
            assert diff < TOL, f'{prefix}_{key}: max abs diff {diff}'
    # the inter_s8 run skips pass 1 entirely
    assert 'pred_28' not in runs['inter'] and 'pred_28' in runs['full']


def test_skip_feature_is_conv1_before_bn(model):
    x = torch.randn(1, 6, 32, 48)
    with torch.inference_mode():
        f, f_1, f_2 = model.backbone(x)
        assert torch.equal(f_1, model.feats.conv1(x))
    assert f.shape == (1, 2048, 4, 6) and f_1.shape == (1, 64, 16, 24)
    assert f_2.shape == (1, 256, 8, 12)


def test_inter_s4_replaces_passes_one_and_two(model):
    rgb, seg = torch.randn(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    inter = torch.zeros(1, 1, 32, 32)
    with torch.inference_mode():
        out = model(rgb, seg, inter_s8=inter, inter_s4=inter)
    assert set(out) == {'pred_224', 'out_224', 'pred_28_3', 'out_28_3', 'pred_56_2', 'out_56_2'}
    assert torch.allclose(out['pred_224'], torch.sigmoid(out['out_224']))
    assert out['pred_224'].shape == (1, 1, 32, 32)


@pytest.mark.parametrize('rgb_shape, seg_shape, match', [
    ((1, 3, 60, 64), (1, 1, 60, 64), 'multiples of 8'),
    ((1, 4, 64, 64), (1, 1, 64, 64), r'\(N, 3, H, W\)'),
    ((1, 3, 64, 64), (1, 1, 64, 32), 'seg must be'),
    ((3, 64, 64), (1, 1, 64, 64), r'\(N, 3, H, W\)'),
])
def test_forward_rejects_bad_shapes(model, rgb_shape, seg_shape, match):
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(rgb_shape), torch.zeros(seg_shape))


def test_inter_s4_without_inter_s8_raises(model):
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match='inter_s4 needs inter_s8'):
        model(x, x[:, :1], inter_s4=x[:, :1])
