"""Checkpoint loading (segrefine_plugins.models.checkpoint): layouts, safety, errors."""
from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from conftest import require_module
from segrefine_plugins.models.cascadepsp import CascadePSPNet
from segrefine_plugins.models.checkpoint import (CheckpointError, extract_state_dict,
                                                 load_checkpoint,
                                                 read_state_dict, zero_negligible_weights_)


class _Payload:
    """A class outside every allow-list: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ('this must never run',))


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope='module')
def published(cascadepsp_weights):
    """The synthetic checkpoint in the published layout: flat, every key 'module.'-prefixed."""
    return torch.load(cascadepsp_weights, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def reference(published):
    net = CascadePSPNet()
    net.load_state_dict({k[len('module.'):]: v for k, v in published.items()}, strict=True)
    return net


def test_published_file_loads_strictly(cascadepsp_weights, published, reference):
    assert all(k.startswith('module.') for k in published)
    net = load_checkpoint(CascadePSPNet(), cascadepsp_weights)
    assert _same_weights(net, reference)


@pytest.mark.parametrize('layout', ['plain', 'module', 'mmengine', 'mmengine_module'])
def test_in_memory_layouts(layout, published, reference):
    plain = OrderedDict((k[len('module.'):], v) for k, v in published.items())
    obj = {'plain': plain, 'module': published,
           'mmengine': {'meta': {'epoch': 3}, 'state_dict': plain},
           'mmengine_module': {'meta': {}, 'state_dict': published, 'optimizer': {}}}[layout]
    assert _same_weights(load_checkpoint(CascadePSPNet(), obj), reference)


@pytest.mark.parametrize('layout', ['plain', 'module', 'mmengine'])
def test_file_layouts(layout, tmp_path):
    src = _small_model()
    sd = src.state_dict()
    obj = {'plain': sd, 'module': {f'module.{k}': v for k, v in sd.items()},
           'mmengine': {'meta': {'mmengine_version': '0.10.7'}, 'state_dict': sd}}[layout]
    path = tmp_path / f'{layout}.pth'
    torch.save(obj, path)
    dst = load_checkpoint(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                                        nn.Conv2d(4, 1, 1)), path)
    assert _same_weights(dst, src)


def test_real_mmengine_checkpoint_with_foreign_objects(tmp_path):
    """A Runner-style checkpoint pickles mmengine objects: they load as inert stand-ins."""
    history = require_module('mmengine.logging.history_buffer')
    buf = history.HistoryBuffer()
    buf.update(0.5)
    src = _small_model()
    path = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': src.state_dict(),
                'message_hub': {'log_scalars': {'train/loss': buf}}}, path)
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses it ...
        torch.load(path, weights_only=True)
    dst = load_checkpoint(_small_model_zeroed(), path)  # ... our loader does not
    assert _same_weights(dst, src)


def _small_model_zeroed() -> nn.Module:
    m = _small_model()
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


def test_non_allowed_global_raises_and_never_runs(tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': _small_model().state_dict(), 'x': _Payload()}, path)
    with pytest.raises(CheckpointError, match='not allowed with weights_only=True') as err:
        read_state_dict(path)
    assert 'builtins.print' in str(err.value) and str(path) in str(err.value)
    assert 'this must never run' not in capsys.readouterr().out


class _GetattrPayload:
    """Pickles as ``getattr(OrderedDict, 'fromkeys')``: getattr on a real class."""

    def __reduce__(self):
        return (getattr, (OrderedDict, 'fromkeys'))


def test_getattr_only_resolves_on_standins(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'state_dict': _small_model().state_dict(), 'x': _GetattrPayload()}, path)
    with pytest.raises(CheckpointError, match='getattr on type is not allowed'):
        read_state_dict(path)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', b'PK\x03\x04garbage'])
def test_corrupt_file_names_the_file(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match='broken.pth'):
        read_state_dict(path)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / 'truncated.pth'
    torch.save(_small_model().state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match='truncated.pth'):
        read_state_dict(path)


def test_missing_file():
    with pytest.raises(CheckpointError, match='not found'):
        read_state_dict('/nonexistent/model.pth')


def test_missing_and_unexpected_keys_are_named(published):
    state = {k[len('module.'):]: v for k, v in published.items()}
    del state['final_21.bias'], state['psp.bottleneck.weight']
    state['extra.head.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(CascadePSPNet(), state)
    msg = str(err.value)
    assert 'missing keys (2)' in msg and 'final_21.bias' in msg and 'psp.bottleneck.weight' in msg
    assert 'unexpected keys (1)' in msg and 'extra.head.weight' in msg


def test_shape_mismatch_is_named(published):
    state = {k[len('module.'):]: v for k, v in published.items()}
    state['feats.conv1.weight'] = torch.zeros(64, 4, 7, 7)  # a CRM-style 4-channel conv1
    with pytest.raises(CheckpointError, match=r'feats.conv1.weight: file \(64, 4, 7, 7\)'):
        load_checkpoint(CascadePSPNet(), state)


def test_crm_checkpoint_in_cascadepsp_model_fails_clearly(crm_weights):
    """The other model's checkpoint: one short message naming the right type, not hundreds
    of key names."""
    with pytest.raises(CheckpointError, match="looks like a CRM checkpoint") as err:
        load_checkpoint(CascadePSPNet(), crm_weights)
    msg = str(err.value)
    assert "type='CRM'" in msg and 'crm_seed0.pth' in msg
    assert len(msg) < 400 and msg.count('\n') == 0


@pytest.mark.parametrize('obj', [{}, {'a': 1}, [torch.zeros(1)], {'state_dict': {'w': 'x'}},
                                 np.zeros(3)])
def test_objects_without_a_state_dict(obj):
    with pytest.raises(CheckpointError, match='no state dict of tensors'):
        extract_state_dict(obj)


def test_partial_module_prefix_is_kept():
    """The prefix is stripped only when every key has it (a real 'module' child stays)."""
    state = extract_state_dict({'module.w': torch.zeros(1), 'b': torch.zeros(1)})
    assert list(state) == ['module.w', 'b']


def test_negligible_weights_are_zeroed_on_load(tmp_path):
    """CPU-trained checkpoints carry weights below 1e-20 whose products are denormal floats
    (slowing x86 convolutions ~4x); loading sets them to 0, nothing else changes and the
    outputs stay equal to float32 resolution."""
    src = _small_model()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    w = sd['0.weight'].view(-1)
    w[:6] = torch.tensor([1e-39, -3e-40, 1e-45, -2e-30, 5e-20, 0.0])  # 4 negligible
    sd['1.running_var'][0] = 5e-39                                    # a buffer too
    path = tmp_path / 'tiny.pth'
    torch.save(sd, path)
    dst = load_checkpoint(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                                        nn.Conv2d(4, 1, 1)), path)
    got = dst.state_dict()
    assert got['0.weight'].view(-1)[:6].tolist() == [0.0, 0.0, 0.0, 0.0, pytest.approx(5e-20),
                                                     0.0]
    assert got['1.running_var'][0] == 0.0
    for k in sd:
        if k not in ('0.weight', '1.running_var'):
            assert torch.equal(got[k], sd[k]), k
    assert torch.equal(got['0.weight'].view(-1)[6:], sd['0.weight'].view(-1)[6:])
    ref = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    ref.load_state_dict(sd)
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(dst.eval()(x), ref.eval()(x), rtol=0, atol=1e-6)
    assert zero_negligible_weights_(dst) == 0
    for dtype in (torch.float16, torch.float64):      # left alone
        other = nn.Linear(2, 2).to(dtype)
        with torch.no_grad():
            other.weight[0, 0] = 1e-7 if dtype == torch.float16 else 1e-30
        assert zero_negligible_weights_(other) == 0 and float(other.weight[0, 0]) != 0.0
