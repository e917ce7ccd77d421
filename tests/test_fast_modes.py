"""CPU fast modes: detection and refusal, bf16 really runs bf16, channels-last / compile
stay close to the exact mode, parity defaults unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefine_plugins.inference import accel
from segrefine_plugins.inference.cascadepsp import CascadePSPRefiner
from segrefine_plugins.inference.crm import CRMRefiner
from segrefine_plugins.io import read_image, read_mask
from segrefine_plugins.models.crm import CRMNet


def _small_crm_state() -> dict:
    torch.manual_seed(0)
    model = CRMNet((1, 1, 1, 1), 8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.fixture(scope='module')
def small_crm() -> dict:
    return _small_crm_state()


@pytest.fixture(scope='module')
def real_pair(data_root):
    """ECSSD 0001 at 1/2 size and an 8x down-up coarse mask of its ground truth."""
    import cv2
    image = read_image(data_root / 'ecssd' / 'images' / '0001.jpg')
    gt = read_mask(data_root / 'ecssd' / 'masks' / '0001.png')
    h, w = gt.shape
    image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(gt, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    coarse = cv2.resize(cv2.resize(gt, (w // 16, h // 16), interpolation=cv2.INTER_AREA),
                        (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    return image, coarse > 127


needs_bf16 = pytest.mark.skipif(not accel.cpu_features()['bf16'],
                                reason='this CPU has no native bf16 (avx512_bf16 / AMX)')


def test_cpu_features_report():
    feats = accel.cpu_features()
    assert set(accel.CPU_FLAGS) <= set(feats)
    assert all(isinstance(feats[f], bool) for f in accel.CPU_FLAGS + ('bf16', 'mkldnn'))
    assert isinstance(feats['capability'], str)
    assert 'native bf16: ' + ('yes' if feats['bf16'] else 'no') in accel.describe_cpu()


def test_bf16_refused_without_native_units(small_crm, monkeypatch):
    monkeypatch.setattr(accel, 'cpu_features', lambda: {'bf16': False, 'capability': 'AVX2',
                                                        'mkldnn': True})
    monkeypatch.setattr(accel, 'describe_cpu', lambda: 'a CPU without bf16')
    with pytest.raises(accel.UnsupportedModeError, match='avx512_bf16 or AMX'):
        CRMRefiner(small_crm, precision='bf16')
    CRMRefiner(small_crm, precision='fp32')          # the exact mode is always fine


@pytest.mark.parametrize('kwargs, match', [
    (dict(precision='fp16'), "'fp16' is not supported on a CPU"),
    (dict(backend='tensorrt'), 'backend must be one of'),
    (dict(backend='onnxruntime', precision='bf16'), 'runs fp32 on the CPU'),
])
def test_refused_modes(small_crm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRMRefiner(small_crm, **kwargs)


def test_compile_refused_without_cpp_compiler(small_crm, monkeypatch):
    monkeypatch.setattr(accel, '_cpp_compiler', lambda: None)
    with pytest.raises(accel.UnsupportedModeError, match='C\\+\\+ compiler'):
        CRMRefiner(small_crm, compile=True)


def test_compile_errors_are_reported_clearly():
    import subprocess
    err = accel.compile_failed(subprocess.CalledProcessError(1, ['g++']))
    assert isinstance(err, RuntimeError) and 'compile=False' in str(err)
    assert accel.is_compile_error(subprocess.CalledProcessError(1, ['g++']))
    assert not accel.is_compile_error(ValueError('x'))


def test_parity_defaults(small_crm, cascadepsp_weights):
    crm = CRMRefiner(small_crm)
    assert crm.channels_last and not crm.compile and crm.backend == 'torch'
    assert crm.net.feats.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    psp = CascadePSPRefiner(str(cascadepsp_weights), L=66)
    assert psp.net is psp.model and not psp.channels_last
    assert 'channels_last' not in repr(psp) and 'compile' not in repr(crm)


@needs_bf16
def test_bf16_runs_bf16_kernels_and_stays_close(small_crm, real_pair):
    image, coarse = real_pair
    ref = CRMRefiner(small_crm, scales=(0.5, 1.0)).refine(image, coarse)
    refiner = CRMRefiner(small_crm, scales=(0.5, 1.0), precision='bf16')
    dtypes = []
    refiner.net.feats.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    prob = refiner.refine(image, coarse)
    assert dtypes and set(dtypes) == {torch.bfloat16}      # the encoder ran in bf16
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    diff = np.abs(prob - ref)
    assert diff.max() > 0 and diff.mean() < 0.01
    assert ((prob > 0.5) != (ref > 0.5)).mean() < 0.01


def test_channels_last_cascadepsp_matches(cascadepsp_weights, real_pair):
    image, coarse = real_pair
    ref = CascadePSPRefiner(str(cascadepsp_weights), L=96, fast=True).refine(image, coarse)
    refiner = CascadePSPRefiner(str(cascadepsp_weights), L=96, fast=True, channels_last=True)
    assert refiner.net.final_11.weight.is_contiguous(memory_format=torch.channels_last)
    assert 'channels_last=True' in repr(refiner)
    prob = refiner.refine(image, coarse)
    assert float(np.abs(prob - ref).max()) <= 1e-4


@pytest.mark.slow
def test_compile_matches(small_crm, real_pair):
    try:
        accel.check_compile(torch.device('cpu'))
    except accel.UnsupportedModeError as err:
        pytest.skip(str(err))
    image, coarse = real_pair
    ref = CRMRefiner(small_crm, scales=(1.0,)).refine(image, coarse)
    prob = CRMRefiner(small_crm, scales=(1.0,), compile=True).refine(image, coarse)
    assert float(np.abs(prob - ref).max()) <= 1e-4


@needs_bf16
@pytest.mark.parametrize('width', [3, 8, 20])
def test_thin_inputs_run_in_float32_under_bf16(cascadepsp_weights, width):
    """oneDNN's bf16 convolutions read uninitialised memory on 1-2 px wide feature maps
    (NaN / garbage, measured with torch 2.14.1); network inputs thinner than
    MIN_HALF_PRECISION_SIDE run in float32, so they equal the fp32 mode exactly."""
    import torch.utils.deterministic as det
    from segrefine_plugins.inference.base import MIN_HALF_PRECISION_SIDE
    assert width + 8 <= MIN_HALF_PRECISION_SIDE    # the padded network input, too
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (256, width, 3), dtype=np.uint8)
    mask = np.zeros((256, width), np.uint8)
    mask[64:192] = 255
    before = det.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = True      # uninitialised reads become NaN, not zeros
    try:
        outs = {}
        for precision in ('fp32', 'bf16'):
            refiner = CascadePSPRefiner(str(cascadepsp_weights), L=256, fast=True,
                                        precision=precision)
            with refiner.limit_upscale(1.0):
                outs[precision] = refiner.refine(image, mask)
                batch = refiner.refine_batch([image, image], [mask, mask])
            for b in batch:                  # a batch of two: same numbers up to rounding
                np.testing.assert_allclose(b, outs[precision], atol=1e-5, rtol=0)
    finally:
        det.fill_uninitialized_memory = before[0]
        torch.use_deterministic_algorithms(before[1])
    assert np.isfinite(outs['bf16']).all()
    np.testing.assert_array_equal(outs['bf16'], outs['fp32'])
