"""CascadePSP pipeline: golden parity, batched crops, global-step size rules, options."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segrefine_plugins import build_refiner
from segrefine_plugins.inference.cascadepsp import (CascadePSPRefiner, padded_size,
                                                    resize_long_side)
from segrefine_plugins.inference.tiling import crop_grid
from segrefine_plugins.models.checkpoint import read_state_dict


def _golden_cases():
    from conftest import SPEC_ROOT  # the same folder the spec_root fixture uses
    index = SPEC_ROOT / 'golden' / 'index.json'
    if not index.is_file():
        return ['(spec folder missing)']
    return sorted(k for k in json.loads(index.read_text())['cases']
                  if k.startswith('cascadepsp_refine_'))


@pytest.fixture(scope='module')
def state(cascadepsp_weights):
    return read_state_dict(cascadepsp_weights)


def _batch_sizes(refiner: CascadePSPRefiner) -> list:
    """Record the batch size of every model call (a forward pre-hook on our own model)."""
    calls: list = []
    refiner.model.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.slow
@pytest.mark.parametrize('case', _golden_cases())
def test_golden_parity(case, golden_dir, cascadepsp_weights):
    g = np.load(golden_dir / case)
    # the published file itself (module. prefix) through build_refiner, as a user would
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights),
                                 L=int(g['L']), fast=bool(g['fast'])), device='cpu')
    prob = refiner.refine(g['image'], g['mask'])
    assert prob.dtype == np.float32 and prob.shape == g['prob'].shape
    diff = np.abs(prob - g['prob']).max()
    assert diff < 1e-4, f'max abs diff {diff}'
    levels = np.abs(np.floor(prob * 255).astype(int) - g['uint8'].astype(int))
    assert int((levels > 1).sum()) <= 5


def _split_inputs(h: int, w: int, x_split: int):
    """A random image and global maps whose boundary is a vertical line at ``x_split``."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, h, w, generator=g)
    pred_224 = torch.zeros(1, 1, h, w)
    pred_224[..., x_split:] = 1.0
    pred_56 = (pred_224 * 0.6 + 0.2 + 0.05 * torch.randn(1, 1, h, w, generator=g)).clamp(0, 1)
    return image, pred_224, pred_56


def test_batched_crops_equal_crop_by_crop(state):
    # 80x120 at L=80: one row of 6 crops (step 8), boundary inside every crop: all kept
    image, pred_224, pred_56 = _split_inputs(80, 120, 60)
    assert len(crop_grid(80, 120, 80)) == 6
    outs, calls = [], []
    for batch in (1, 4):
        refiner = CascadePSPRefiner(state, L=80, crop_batch_size=batch)
        calls.append(_batch_sizes(refiner))
        with torch.inference_mode():
            outs.append(refiner._local_step(image, pred_224, pred_56))
    assert calls == [[1] * 6, [4, 2]]
    assert torch.abs(outs[0] - outs[1]).max() < 1e-5


def test_default_crop_batch_size_is_one_on_cpu(state):
    # batching pays on a GPU only (docs/performance.md: 0.90x on the CPU, more memory)
    assert CascadePSPRefiner(state, L=80).crop_batch_size == 1
    assert CascadePSPRefiner(state, L=80, crop_batch_size=3).crop_batch_size == 3


def test_forward_crops_pads_and_crops_back(state):
    refiner = CascadePSPRefiner(state, L=66)
    image, pred_224, pred_56 = _split_inputs(66, 90, 45)
    seg, inter = pred_224 * 2 - 1, pred_56 * 2 - 1
    crops = crop_grid(66, 90, 66)
    calls = _batch_sizes(refiner)
    with torch.inference_mode():
        batched = refiner.forward_crops(image, seg, inter, crops)
        single = refiner.forward_padded(image[..., crops[0].y0:crops[0].y1,
                                              crops[0].x0:crops[0].x1],
                                        seg[..., :, :66], inter[..., :, :66])['pred_224']
    assert calls == [len(crops), 1]
    assert batched.shape == (len(crops), 1, 66, 66)
    assert torch.abs(batched[:1] - single).max() < 1e-5


def test_all_crops_skipped_gives_binarised_global(state):
    refiner = CascadePSPRefiner(state, L=96)
    calls = _batch_sizes(refiner)
    image = torch.zeros(1, 3, 150, 200)
    pred_224 = torch.full((1, 1, 72, 96), 0.8)   # > 90 % foreground everywhere: all skipped
    pred_224[..., :4, :4] = 0.2
    with torch.inference_mode():
        out = refiner._local_step(image, pred_224, torch.full_like(pred_224, 0.5))
    assert calls == []
    assert out.shape == (150, 200)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert float(out.mean()) > 0.99


def test_soft_input_reads_the_mask_linearly(state):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:70, :90]
    mask = (((yy - 35) / 25.0) ** 2 + ((xx - 45) / 30.0) ** 2 < 1).astype(np.uint8) * 255
    image = (rng.random((70, 90, 3)) * 60 + mask[..., None] * 0.6).astype(np.uint8)
    hard = CascadePSPRefiner(state, L=96)
    soft = CascadePSPRefiner(state, L=96, soft_input=True)
    np.testing.assert_allclose(soft.refine(image, mask), hard.refine(image, mask), atol=0)
    prob_a = np.where(mask > 0, 0.7, 0.2).astype(np.float32)
    prob_b = np.where(mask > 0, 0.9, 0.1).astype(np.float32)
    assert np.abs(soft.refine(image, prob_a) - soft.refine(image, prob_b)).max() > 1e-3
    np.testing.assert_array_equal(hard.refine(image, prob_a), hard.refine(image, prob_b))


def test_global_step_sizes_use_the_scale_factor():
    x = torch.zeros(1, 1, 2328, 3492)
    # 3492 * (900 / 3492) = 899.9999999999999 in floating point: floor gives 899 (published)
    assert resize_long_side(x, 900, 'area').shape[-2:] == (599, 899)
    assert resize_long_side(torch.zeros(1, 1, 240, 160), 128, 'area').shape[-2:] == (128, 85)
    up = resize_long_side(torch.zeros(1, 3, 75, 100), 128, 'bicubic')
    assert up.shape[-2:] == (96, 128)
    # interpolation maps coordinates with s itself (not with the recomputed out / in ratio)
    ramp = torch.arange(7, dtype=torch.float32).view(1, 1, 1, 7).expand(1, 1, 7, 7)
    got = resize_long_side(ramp.contiguous(), 10, 'bilinear')
    s = 10 / 7
    src = ((torch.arange(10) + 0.5) / s - 0.5).clamp(min=0)
    assert got.shape[-2:] == (10, 10)
    assert torch.allclose(got[0, 0, 0], src.clamp(max=6), atol=1e-6)


def test_padding_rule_quirk():
    assert padded_size(128, 128) == (128, 128)
    assert padded_size(128, 85) == (136, 88)   # 128 is a multiple of 8 yet gets +8
    assert padded_size(900, 600) == (904, 608)
    assert padded_size(1, 1) == (8, 8)


def test_too_elongated_image_raises(state):
    refiner = CascadePSPRefiner(state, L=128, fast=True)
    image = np.zeros((1, 300, 3), np.uint8)
    mask = np.zeros((1, 300), bool)
    mask[0, :100] = True
    with pytest.raises(ValueError, match='side of 0 px'):
        refiner.refine(image, mask)


@pytest.mark.parametrize('kwargs, match', [
    (dict(checkpoint=None), 'needs checkpoint'),
    (dict(L=64), 'too small for the crop grid'),
    (dict(L=900.0), 'must be an int'),
    (dict(crop_batch_size=0), 'crop_batch_size'),
    (dict(precision='fp64'), 'precision'),
])
def test_bad_options_raise(state, kwargs, match):
    args = dict(type='CascadePSP', checkpoint=state)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_refiner(args)


def test_crop_batch_bigger_than_grid_is_fine(state):
    refiner = CascadePSPRefiner(state, L=96, crop_batch_size=64)
    calls = _batch_sizes(refiner)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    mask = np.zeros((120, 100), bool)
    mask[30:90, 20:70] = True
    prob = refiner.refine(image, mask)
    assert prob.shape == (120, 100) and 0 <= prob.min() and prob.max() <= 1
    assert calls[0] == 1 and all(1 <= b <= len(crop_grid(120, 100, 96)) for b in calls[1:])
    assert refiner.last_stats == {'global_size': (96, 80), 'crops': len(crop_grid(120, 100, 96)),
                                  'crops_kept': sum(calls[1:])}


def test_half_precision_is_an_option(state):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), bool)
    mask[10:30, 15:40] = True
    ref = CascadePSPRefiner(state, L=66, fast=True).refine(image, mask)
    prob = CascadePSPRefiner(state, L=66, fast=True, precision='bf16').refine(image, mask)
    assert prob.dtype == np.float32 and prob.shape == (40, 56)
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    diff = np.abs(prob - ref)
    assert diff.max() > 0          # it really ran in bf16
    assert diff.mean() < 0.05      # and stays close to the fp32 result
