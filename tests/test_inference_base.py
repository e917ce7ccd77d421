"""The Refiner interface (inference/base.py), exercised through the CascadePSP refiner:
input checks, mask conventions, empty masks, tiny images, BGR input, the tensor variant."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefine_plugins import build_refiner
from segrefine_plugins.inference.base import Refiner, check_image, mask_to_uint8
from segrefine_plugins.models.checkpoint import read_state_dict

H, W = 48, 64


@pytest.fixture(scope='module')
def state(cascadepsp_weights):
    return read_state_dict(cascadepsp_weights)


@pytest.fixture(scope='module')
def refiner(state):
    # small L keeps the forward cheap; fast=False so the local step runs too
    return build_refiner(dict(type='CascadePSP', checkpoint=state, L=72))


@pytest.fixture(scope='module')
def sample():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[10:40, 16:50] = True
    return image, mask


@pytest.fixture(scope='module')
def reference(refiner, sample):
    return refiner.refine(*sample)


def test_output_contract(reference):
    assert reference.shape == (H, W) and reference.dtype == np.float32
    assert 0.0 <= reference.min() and reference.max() <= 1.0
    assert reference.std() > 0


@pytest.mark.parametrize('bad, match', [
    (np.zeros((H, W), np.uint8), 'HxWx3'),                       # grayscale
    (np.zeros((H, W, 4), np.uint8), 'HxWx3'),                    # RGBA
    (np.zeros((H, W, 1), np.uint8), 'HxWx3'),
    (np.zeros((H, W, 3), np.uint16), 'must be uint8'),           # 16-bit
    (np.zeros((H, W, 3), np.float32), 'must be uint8'),          # float
    (np.zeros((0, W, 3), np.uint8), 'empty'),
    (torch.zeros(H, W, 3, dtype=torch.uint8), 'numpy array'),
])
def test_bad_images(refiner, sample, bad, match):
    with pytest.raises(ValueError, match=match):
        refiner.refine(bad, sample[1] if bad.shape[:2] == (H, W) else sample[1][:0])


@pytest.mark.parametrize('bad, match', [
    (np.zeros((H, W + 1), bool), 'differs from the image size'),
    (np.zeros((H + 2, W), np.uint8), 'differs from the image size'),
    (np.zeros((H, W, 2), np.uint8), 'must be HxW'),
    (np.full((H, W), np.nan, np.float32), 'non-finite'),
    (np.where(np.eye(H, W) > 0, np.inf, 0.0), 'non-finite'),
    (np.full((H, W), 1.5), r'must be in \[0, 1\]'),
    (np.full((H, W), -0.1, np.float32), r'must be in \[0, 1\]'),
    (np.eye(H, W, dtype=np.uint8), r'values only in \{0, 1\}'),  # a 0/1 label mask
    (np.zeros((H, W), np.int32), 'dtype int32 is not supported'),
    ([[0, 1]], 'numpy array'),
])
def test_bad_masks(refiner, sample, bad, match):
    with pytest.raises(ValueError, match=match):
        refiner.refine(sample[0], bad)


def test_L_too_small_for_the_crop_grid(state):
    with pytest.raises(ValueError, match='too small for the crop grid'):
        build_refiner(dict(type='CascadePSP', checkpoint=state, L=50))


def test_mask_conventions_agree(refiner, sample, reference):
    image, mask = sample
    as_u8 = mask.astype(np.uint8) * 255
    soft = np.where(mask, 0.8, 0.3).astype(np.float32)    # > 0.5 is foreground
    for m in (as_u8, soft, as_u8[:, :, None]):
        np.testing.assert_array_equal(refiner.refine(image, m), reference)


def test_mask_threshold_is_127_of_255():
    m = np.array([[0, 127, 128, 255]], np.uint8)
    assert (mask_to_uint8(m, (1, 4)) > 127).tolist() == [[False, False, True, True]]
    f = np.array([[0.0, 0.498, 0.5, 1.0]])
    assert (mask_to_uint8(f, (1, 4)) > 127).tolist() == [[False, False, True, True]]


@pytest.mark.parametrize('empty', [np.zeros((H, W), bool), np.full((H, W), 127, np.uint8),
                                   np.full((H, W), 0.49, np.float32)])
def test_empty_mask_gives_zeros_without_running_the_model(refiner, sample, empty):
    calls = []
    handle = refiner.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        out = refiner.refine(sample[0], empty)
    finally:
        handle.remove()
    assert calls == []
    assert out.shape == (H, W) and out.dtype == np.float32 and not out.any()


@pytest.mark.parametrize('fast', [True, False])
def test_one_pixel_image(state, fast):
    r = build_refiner(dict(type='CascadePSP', checkpoint=state, L=72, fast=fast))
    out = r.refine(np.full((1, 1, 3), 200, np.uint8), np.ones((1, 1), bool))
    assert out.shape == (1, 1) and out.dtype == np.float32 and 0.0 <= out[0, 0] <= 1.0


def test_bgr_equals_feeding_the_flipped_image(state, sample, reference):
    r = build_refiner(dict(type='CascadePSP', checkpoint=state, L=72, bgr=True))
    image, mask = sample
    out = r.refine(np.ascontiguousarray(image[:, :, ::-1]), mask)
    np.testing.assert_allclose(out, reference, atol=1e-6)
    # a non-contiguous (flipped view) input works as well
    np.testing.assert_allclose(r.refine(image[:, :, ::-1], mask), reference, atol=1e-6)


def test_refine_tensor_matches_refine(refiner, sample, reference):
    image, mask = sample
    out = refiner.refine_tensor(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), reference)
    with pytest.raises(ValueError, match=r'\(3, H, W\)'):
        refiner.refine_tensor(torch.from_numpy(image), torch.from_numpy(mask))
    with pytest.raises(ValueError, match=r'values only in \{0, 1\}'):
        refiner.refine_tensor(torch.from_numpy(image).permute(2, 0, 1),
                              torch.from_numpy(mask.astype(np.uint8)))


def test_check_image_returns_input():
    img = np.zeros((2, 3, 3), np.uint8)
    assert check_image(img) is img


class NaNRefiner(Refiner):
    """A refiner whose network fails numerically."""

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        out = torch.full(mask_u8.shape, 0.5)
        out[0, 0] = float('nan')
        return out


def test_non_finite_outputs_raise_instead_of_passing_on():
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 5:20] = 255
    with pytest.raises(RuntimeError, match='non-finite probabilities for a 20x30 input'):
        NaNRefiner().refine(image, mask)
    with pytest.raises(RuntimeError, match='non-finite'):
        NaNRefiner().refine_batch([image], [mask])
