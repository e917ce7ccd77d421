"""refine_instances: instance / entity masks (Tensor or BitMasks) refined in padded boxes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.detectron2 import masks_to_bool, refine_instances  # noqa: E402
from segrefine_plugins.multiobject import refine_segments  # noqa: E402
# the small CascadePSP fixture and the ECSSD loader are shared with the panoptic tests
from test_detectron2_panoptic import ecssd_sample, refiner  # noqa: E402,F401


@pytest.fixture(scope='module')
def scene(data_root):
    """An ECSSD image (long side 96), its object as instance 0 and a box-shaped instance 1."""
    img, obj = ecssd_sample(data_root, '0003')
    h, w = obj.shape
    box = np.zeros_like(obj)
    box[h // 4:h // 2, w // 4:w // 2] = True
    return img, torch.from_numpy(np.stack([obj, box]))


def _instances(shape, masks):
    inst = Instances(shape)
    inst.pred_masks = masks
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]]))
    inst.scores = torch.tensor([0.9, 0.3])
    inst.pred_classes = torch.tensor([3, 1])
    return inst


def test_tensor_masks(scene, refiner):
    img, masks = scene
    inst = _instances(img.shape[:2], masks)
    out = refine_instances(img, inst, refiner)
    assert len(out) == 2 and out.image_size == inst.image_size
    assert out.pred_masks.dtype == torch.bool and out.pred_masks.shape == masks.shape
    assert out.scores is inst.scores and out.pred_classes is inst.pred_classes
    assert out.pred_boxes is inst.pred_boxes
    assert torch.equal(inst.pred_masks, masks)            # input untouched
    assert not torch.equal(out.pred_masks, masks)


def test_bitmasks_and_recomputed_boxes(scene, refiner):
    img, masks = scene
    out = refine_instances(img, _instances(img.shape[:2], BitMasks(masks)), refiner,
                           recompute_boxes=True)
    assert isinstance(out.pred_masks, BitMasks)
    m = out.pred_masks.tensor
    for i in range(len(out)):
        ys, xs = np.nonzero(m[i].numpy())
        want = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]
        assert out.pred_boxes.tensor[i].tolist() == [float(v) for v in want]


def test_float_masks_keep_shape_and_dtype(scene, refiner):
    img, masks = scene
    soft = masks[:, None].float() * 0.8                 # (N, 1, H, W) probabilities
    out = refine_instances(img, _instances(img.shape[:2], soft), refiner, mask_threshold=0.5)
    assert out.pred_masks.shape == soft.shape and out.pred_masks.dtype == torch.float32
    assert set(out.pred_masks.unique().tolist()) <= {0.0, 1.0}


def test_entities_are_fused_without_overlap(scene, refiner):
    img, masks = scene
    out = refine_instances(img, _instances(img.shape[:2], masks), refiner, fuse=True)
    assert int(out.pred_masks.sum(0).max()) <= 1
    assert len(out) == 2


def test_min_area_keeps_small_masks(scene, refiner):
    img, masks = scene
    small = int(masks[1].sum())
    out = refine_instances(img, _instances(img.shape[:2], masks), refiner, min_area=small)
    assert torch.equal(out.pred_masks[1], masks[1])


def test_empty_and_maskless_instances_pass_through(scene, refiner):
    img, _ = scene
    # PanopticFCN with no things: plain empty lists
    empty = Instances(img.shape[:2], pred_masks=[], pred_boxes=[], pred_classes=[], scores=[])
    assert refine_instances(img, empty, refiner) is empty
    boxes_only = Instances(img.shape[:2], pred_boxes=Boxes(torch.zeros(1, 4)))
    assert refine_instances(img, boxes_only, refiner) is boxes_only


def test_malformed_masks(scene, refiner):
    img, masks = scene
    with pytest.raises(ValueError, match='but the image is'):
        masks_to_bool(masks[:, :-1], img.shape[:2])                 # another size
    with pytest.raises(ValueError, match='28x28'):
        masks_to_bool(torch.zeros(2, 1, 28, 28), img.shape[:2])     # Mask R-CNN, not pasted
    with pytest.raises(ValueError, match='BitMasks or a tensor'):
        masks_to_bool([masks[0]], img.shape[:2])
    inst = _instances((img.shape[0] + 1, img.shape[1]), torch.zeros(2, img.shape[0] + 1,
                                                                     img.shape[1], dtype=torch.bool))
    with pytest.raises(ValueError, match='image_size'):
        refine_instances(img, inst, refiner)


def test_soft_coarse_gives_the_refiner_float_mask_probabilities(scene, cascadepsp_weights):
    img, masks = scene
    soft_refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights),
                                      L=96, fast=True, soft_input=True))
    probs = np.stack([cv2.GaussianBlur(m.numpy().astype(np.float32), (9, 9), 3) for m in masks])
    inst = _instances(img.shape[:2], torch.from_numpy(probs))
    out = refine_instances(img, inst, soft_refiner, soft_coarse=True)
    assert out.pred_masks.dtype == torch.float32
    want = refine_segments(img, probs > 0.5, soft_refiner, fuse=False, soft_masks=probs).masks
    np.testing.assert_array_equal(out.pred_masks.numpy() > 0.5, want)
    hard = refine_instances(img, inst, soft_refiner)
    assert not torch.equal(hard.pred_masks, out.pred_masks), 'soft input changed nothing'
    # boolean masks carry no soft values: soft_coarse leaves them hard
    plain = _instances(img.shape[:2], masks)
    assert torch.equal(refine_instances(img, plain, soft_refiner, soft_coarse=True).pred_masks,
                       refine_instances(img, plain, soft_refiner).pred_masks)
    bad = _instances(img.shape[:2], torch.full(masks.shape, float('nan')))
    with pytest.raises(ValueError, match='NaN'):
        refine_instances(img, bad, soft_refiner, soft_coarse=True)
    logits = _instances(img.shape[:2], torch.from_numpy(probs * 8 - 4))
    with pytest.raises(ValueError, match='logits'):
        refine_instances(img, logits, soft_refiner, soft_coarse=True)
    with pytest.raises(ValueError, match='mask_threshold=0.5'):
        refine_instances(img, inst, soft_refiner, soft_coarse=True, mask_threshold=0.3)
