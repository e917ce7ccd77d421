"""Exported networks (ONNX through onnxruntime, TorchScript) against PyTorch on real inputs:
an ECSSD image with the golden synthetic weights (max abs difference <= 1e-4)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segrefine_plugins import export
from segrefine_plugins.inference.cascadepsp import CascadePSPRefiner
from segrefine_plugins.inference.crm import CRMRefiner
from segrefine_plugins.inference.crm_input import ScaledInput
from segrefine_plugins.io import read_image, read_mask

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')
TOL = 1e-4


@pytest.fixture(scope='module')
def real_pair(data_root):
    """ECSSD 0002 at 1/2 size and an 8x down-up coarse mask of its ground truth (uint8)."""
    image = read_image(data_root / 'ecssd' / 'images' / '0002.jpg')
    gt = read_mask(data_root / 'ecssd' / 'masks' / '0002.png')
    h, w = gt.shape[0] // 2, gt.shape[1] // 2
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
    coarse = cv2.resize(cv2.resize(gt, (w // 8, h // 8), interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    return image, np.where(coarse > 127, 255, 0).astype(np.uint8)


def _crm_input(refiner, image, mask):
    """The pipeline's first-scale input (normalised image, mask in [-1, 1]) of a real pair."""
    img = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    inp = ScaledInput(img, refiner._mean, refiner._std, 32, 1.0, mask=torch.from_numpy(mask))
    rgb, seg = inp.window((0, inp.size[0]), (0, inp.size[1]))
    return rgb.contiguous(), seg.contiguous()


@pytest.fixture(scope='module')
def crm(crm_weights):
    return CRMRefiner(str(crm_weights))


@pytest.mark.slow
def test_crm_onnx_files_match_torch(crm, real_pair, tmp_path):
    paths = export.export_refiner(crm, tmp_path / 'crm.onnx')
    assert sorted(paths) == ['encoder', 'mlp']
    assert paths['encoder'].name == 'crm_encoder.onnx'
    net = crm.model.folded()
    rgb, seg = _crm_input(crm, *real_pair)
    with torch.inference_mode():
        feat = net.encode(rgb, seg)
    enc = ort.InferenceSession(str(paths['encoder']), providers=['CPUExecutionProvider'])
    out = enc.run(None, {'rgb': rgb.numpy(), 'seg': seg.numpy()})[0]
    assert out.shape == tuple(feat.shape)
    assert float(np.abs(out - feat.numpy()).max()) <= TOL
    # the MLP on real queries: features of the map, relative positions, coordinates, cell
    q = feat[0].flatten(1).t()[:5000]
    pos = torch.rand(q.shape[0], 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    queries = torch.cat([q, pos], 1)
    mlp = ort.InferenceSession(str(paths['mlp']), providers=['CPUExecutionProvider'])
    logits = mlp.run(None, {'queries': queries.numpy()})[0]
    with torch.inference_mode():
        ref = net.imnet(queries)
    assert float(np.abs(logits - ref.numpy()).max()) <= TOL


@pytest.mark.slow
def test_crm_onnxruntime_backend_matches_torch(crm_weights, real_pair):
    image, mask = real_pair
    ref = CRMRefiner(str(crm_weights), tile_size=256).refine(image, mask)
    refiner = CRMRefiner(str(crm_weights), tile_size=256, backend='onnxruntime')
    assert "backend='onnxruntime'" in repr(refiner)
    prob = refiner.refine(image, mask)
    assert refiner.last_stats['windows'] > len(refiner.scales)   # the windowed encoder ran
    assert float(np.abs(prob - ref).max()) <= TOL


@pytest.mark.slow
def test_cascadepsp_onnxruntime_backend_matches_torch(cascadepsp_weights, real_pair):
    image, mask = real_pair
    ref_refiner = CascadePSPRefiner(str(cascadepsp_weights), L=112)
    ref = ref_refiner.refine(image, mask)
    assert ref_refiner.last_stats['crops_kept'] > 0              # global and local graphs
    prob = CascadePSPRefiner(str(cascadepsp_weights), L=112, backend='onnxruntime').refine(
        image, mask)
    assert float(np.abs(prob - ref).max()) <= TOL


def test_adaptive_pool_as_matmuls():
    x = torch.randn(2, 5, 13, 22)
    for size in (1, 2, 3, 6):
        ref = torch.nn.functional.adaptive_avg_pool2d(x, size)
        out = export.MatmulAdaptiveAvgPool2d(size)(x)
        assert out.shape == ref.shape and float((out - ref).abs().max()) < 1e-5


def test_torchscript_export_of_default_crm(real_pair, tmp_path):
    refiner = CRMRefiner()            # the shipped default (small) model
    paths = export.export_refiner(refiner, tmp_path / 'crm', fmt='torchscript',
                                  parts=['encoder'])
    loaded = torch.jit.load(str(paths['encoder']))
    rgb, seg = _crm_input(refiner, *real_pair)
    with torch.inference_mode():
        ref = refiner.model.folded().encode(rgb, seg)
        out = loaded(rgb, seg)
    assert float((out - ref).abs().max()) <= TOL


def test_export_command(tmp_path, capsys):
    assert export.main(['--type', 'CRM', '--out', str(tmp_path / 'm.onnx'),
                        '--parts', 'mlp']) == 0
    assert (tmp_path / 'm_mlp.onnx').is_file() and 'm_mlp.onnx' in capsys.readouterr().out
    assert export.main(['--type', 'CRM', '--out', str(tmp_path / 'x.onnx'),
                        '--parts', 'nope']) == 2
    assert 'unknown part' in capsys.readouterr().err


def test_export_command_refuses_what_it_would_ignore_or_cannot_do(tmp_path, capsys):
    """An opset below the minimum (a 256-line torch traceback before) and runtime-only
    settings (precision / backend: silently ignored, byte-identical files) are exit 2 with one
    line, before anything is written."""
    for extra, match in ((['--opset', '9'], f'>= {export.MIN_OPSET}'),
                         (['--set', "precision='bf16'"], 'fp32 torch modules'),
                         (['--set', "backend='onnxruntime'"], 'fp32 torch modules')):
        assert export.main(['--type', 'CRM', '--out', str(tmp_path / 'o.onnx'),
                            '--parts', 'mlp', *extra]) == 2, extra
        err = capsys.readouterr().err
        assert match in err and 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []
