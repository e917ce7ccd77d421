"""soft_coarse: per-class / per-segment probabilities out of detectron2 outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

from detectron2.structures import BitMasks, Instances  # noqa: E402

from segrefine_plugins.detectron2 import panoptic_soft_masks, sem_seg_probs  # noqa: E402

H, W = 20, 24
INFOS = [{'id': 7, 'isthing': True, 'category_id': 0, 'instance_id': 1},
         {'id': 4, 'isthing': True, 'category_id': 2, 'instance_id': 0},
         {'id': 3, 'isthing': False, 'category_id': 5},
         {'id': 9, 'isthing': False}]                       # no category: hard


def _instances(masks):
    inst = Instances((H, W))
    inst.pred_masks = masks
    return inst


@pytest.fixture
def sources():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand((2, H, W), generator=g)
    logits = torch.randn((6, H, W), generator=g) * 3
    return probs, logits


def test_sem_seg_probs_softmax_of_logits_probabilities_as_they_are(sources):
    _, logits = sources
    p = sem_seg_probs(logits)
    np.testing.assert_allclose(p, torch.softmax(logits, 0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-5)
    q = torch.softmax(logits, 0)
    np.testing.assert_array_equal(sem_seg_probs(q), q.numpy())
    # only some channels: the same values, without the others' probabilities
    np.testing.assert_allclose(sem_seg_probs(logits, [5, 1]), p[[5, 1]], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(sem_seg_probs(q, [2]), q[[2]].numpy())
    # MaskFormer-style scores (>= 0, sums of class x mask products may exceed 1): clipped,
    # not squashed by a softmax
    over = q.clone()
    over[0, 0, 0] = 1.7
    got = sem_seg_probs(over)
    assert got[0, 0, 0] == 1.0
    np.testing.assert_array_equal(got[:, 1:], q[:, 1:].numpy())
    with pytest.raises(ValueError, match=r'6 channels, asked for \[6\]'):
        sem_seg_probs(logits, [6])
    with pytest.raises(ValueError, match='NaN'):
        sem_seg_probs(logits * float('nan'))
    with pytest.raises(ValueError, match=r'\(C, H, W\)'):
        sem_seg_probs(logits[0])


def test_sem_seg_probs_in_blocks_of_rows_equals_one_pass(sources, monkeypatch):
    """The row blocks that bound the temporaries give the values of a single pass."""
    import segrefine_plugins.detectron2.soft_coarse as soft_coarse

    _, logits = sources
    whole = sem_seg_probs(logits, [5, 0])
    q = torch.softmax(logits, 0)
    monkeypatch.setattr(soft_coarse, 'BLOCK_ELEMENTS', 6 * W * 3)     # 3 rows per block
    np.testing.assert_allclose(sem_seg_probs(logits, [5, 0]), whole, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(sem_seg_probs(q), q.numpy())
    bad = logits.clone()
    bad[2, H - 1, 0] = float('inf')                                   # in the last block
    with pytest.raises(ValueError, match='NaN / inf'):
        sem_seg_probs(bad)


def test_panoptic_soft_masks_sources(sources):
    probs, logits = sources
    out = panoptic_soft_masks(INFOS, (H, W), _instances(probs), logits)
    assert len(out) == len(INFOS)
    np.testing.assert_array_equal(out[0], probs[1].numpy())     # instance_id 1
    np.testing.assert_array_equal(out[1], probs[0].numpy())
    np.testing.assert_allclose(out[2], torch.softmax(logits, 0)[5].numpy(), rtol=1e-5, atol=1e-7)
    assert out[3] is None
    # a thing without instance_id stays hard; (N, 1, H, W) masks are read too
    infos = [
        {k: v for k, v in INFOS[0].items() if k != 'instance_id'}] + INFOS[1:]
    out = panoptic_soft_masks(infos, (H, W), _instances(probs[:, None]), None)
    assert out[0] is None and out[2] is None
    np.testing.assert_array_equal(out[1], probs[0].numpy())


def test_panoptic_soft_masks_none_without_soft_values(sources):
    probs, _ = sources
    hard = probs > 0.5
    assert panoptic_soft_masks(INFOS, (H, W), _instances(hard), None) is None
    assert panoptic_soft_masks(INFOS, (H, W), _instances(BitMasks(hard)), None) is None
    assert panoptic_soft_masks(INFOS, (H, W), None, None) is None
    assert panoptic_soft_masks(INFOS, (H, W), [], None) is None      # PanopticFCN's empty list
    assert panoptic_soft_masks([], (H, W), _instances(probs), None) is None


def test_panoptic_soft_masks_bad_input(sources):
    probs, logits = sources
    with pytest.raises(ValueError, match=r'instance_id \[1\] but the output has 1 instances'):
        panoptic_soft_masks(INFOS, (H, W), _instances(probs[:1]), None)
    with pytest.raises(ValueError, match='pred_masks are 20x24 but the panoptic map is 20x25'):
        panoptic_soft_masks(INFOS, (H, W + 1), _instances(probs), None)
    with pytest.raises(ValueError, match="sem_seg must be a \\(C, H, W\\) tensor of the "
                                         "panoptic map's size"):
        panoptic_soft_masks(INFOS, (H, W), None, logits[:, :-1])
    with pytest.raises(ValueError, match='probabilities in \\[0, 1\\]'):
        panoptic_soft_masks(INFOS, (H, W), _instances(probs * 3), None)
    # a stuff class beyond the channels: the model numbers its classes otherwise
    bad = INFOS[:3] + [{'id': 9, 'isthing': False, 'category_id': 40}]
    with pytest.raises(ValueError, match=r'category_id \[40\] but sem_seg has 6 channels'):
        panoptic_soft_masks(bad, (H, W), None, logits)
    assert panoptic_soft_masks(bad, (H, W), _instances(probs), None) is not None  # no sem_seg
