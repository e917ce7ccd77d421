"""Training models: published state-dict layout, exact decoding, ImageNet init, modes."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import require_module
from segrefine_plugins.models.checkpoint import CheckpointError, load_checkpoint
from segrefine_plugins.models.crm import CRMNet, make_coord

require_module('mmengine')
from segrefine_plugins.training.models import (CascadePSPTrainModel, CRMTrainModel,  # noqa: E402
                                               init_trunk_from_imagenet)

SMALL = dict(blocks=(1, 1, 1, 1), width=8, feat_channels=16, hidden=8)


def _manifest(spec_root, name):
    entries = json.loads((spec_root / f'{name}_official_state_dict.json').read_text())['entries']
    return [(k, list(shape)) for k, shape, _ in entries]


def _layout(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


@pytest.fixture(scope='module')
def crm_full():
    """One published-size CRM training model (building ResNet-50s is slow on small CPUs)."""
    return CRMTrainModel()


@pytest.fixture(scope='module')
def psp_full():
    torch.manual_seed(0)
    return CascadePSPTrainModel()


def test_crm_state_dict_is_the_published_layout(spec_root, crm_full):
    assert _layout(crm_full) == _manifest(spec_root, 'crm')


def test_cascadepsp_state_dict_is_the_published_layout(spec_root, psp_full):
    assert _layout(psp_full) == _manifest(spec_root, 'cascadepsp')


def test_small_crm_matches_crmnet_layout():
    assert _layout(CRMTrainModel(**SMALL)) == _layout(CRMNet(**SMALL))


def test_published_checkpoint_loads_for_fine_tuning(crm_weights, crm_full):
    load_checkpoint(crm_full, crm_weights)   # 'module.' keys, strict
    with pytest.raises(CheckpointError):
        load_checkpoint(CRMTrainModel(**SMALL), crm_weights)


@pytest.mark.parametrize('h, w', [(24, 40), (17, 11)])
def test_training_decoder_equals_published_decode(h, w):
    torch.manual_seed(0)
    model = CRMTrainModel(**SMALL).eval()
    x, s = torch.randn(2, 3, h, w), torch.randn(2, 1, h, w).sign()
    with torch.no_grad():
        feat = model.encode(x, s)
        fast = model.decode_grid(feat, h, w)
        ys, xs = make_coord(h), make_coord(w)
        coord = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).reshape(1, -1, 2)
        coord = coord.expand(2, -1, -1)
        cell = coord.new_tensor([2.0 / h, 2.0 / w]).expand_as(coord)
        ref = CRMNet.decode(model, feat, coord, cell).view(2, 1, h, w)
    assert torch.allclose(fast, ref, atol=1e-5)


def test_crm_modes():
    torch.manual_seed(0)
    model = CRMTrainModel(**SMALL)
    x, s, g = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32).sign(), torch.rand(2, 1, 32, 32)
    losses = model(x, s, g, mode='loss')
    assert set(losses) == {'loss_ce', 'loss_l1', 'loss_l2', 'loss_grad'}
    sum(losses.values()).backward()
    assert model.feats.conv1.weight.grad.abs().sum() > 0
    assert model(x, s, mode='tensor').shape == (2, 1, 32, 32)
    model.eval()
    preds = model(x, s, g, mode='predict')
    assert len(preds) == 2 and preds[0]['prob'].shape == (32, 32)
    assert 0 <= preds[0]['prob'].min() and preds[0]['prob'].max() <= 1
    assert preds[0]['seg'].dtype == torch.bool and preds[0]['gt'].shape == (32, 32)
    with pytest.raises(ValueError):
        model(x, s, mode='bogus')
    with pytest.raises(ValueError):
        model(x, s, mode='loss')
    with pytest.raises(ValueError):
        model(x, s[:, :, :16], mode='tensor')


@pytest.mark.slow
def test_cascadepsp_loss_and_predict(psp_full):
    model = psp_full.train()
    x, s, g = torch.randn(1, 3, 32, 32), torch.randn(1, 1, 32, 32).sign(), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        losses = model(x, s, g, mode='loss')
    assert set(losses) == {'loss_ce', 'loss_l1', 'loss_l2', 'loss_grad'}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    pred = model(torch.randn(1, 3, 30, 20), torch.ones(1, 1, 30, 20), mode='predict')
    assert pred[0]['prob'].shape == (30, 20)   # padded to multiples of 8 and cropped back


def test_imagenet_init_zeroes_extra_channels(tmp_path, crm_full):
    torchvision = require_module('torchvision')
    src = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / 'resnet50.pth'
    torch.save(src, path)
    model = crm_full
    model._setup_mmengine(None, str(path))   # what init_backbone=PATH does at construction
    w = model.feats.conv1.weight
    assert torch.equal(w[:, :3], src['conv1.weight']) and (w[:, 3:] == 0).all()
    assert torch.equal(model.feats.layer3[5].conv2.weight, src['layer3.5.conv2.weight'])
    unused = init_trunk_from_imagenet(CRMTrainModel(blocks=(2, 2, 2, 1)).feats, path)
    assert 'fc.weight' in unused and 'layer3.5.conv1.weight' in unused
    with pytest.raises(CheckpointError):
        init_trunk_from_imagenet(CRMTrainModel(**SMALL).feats, path)
