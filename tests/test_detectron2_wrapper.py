"""SegRefineWrapper / wrap_model around a real detectron2 PanopticFPN (model zoo, no weights)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

from detectron2 import model_zoo  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.detectron2 import (SegRefineWrapper, add_segrefine_config,  # noqa: E402
                                          image_for_refiner, panoptic_soft_masks,
                                          refine_panoptic, wrap_model)
from segrefine_plugins.multiobject import refine_label_map  # noqa: E402


def _cfg(weights, enabled=True):
    cfg = get_cfg()
    add_segrefine_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(
        'COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml'))
    cfg.merge_from_list([
        'MODEL.DEVICE', 'cpu', 'MODEL.META_ARCHITECTURE', 'SegRefineWrapper',
        'INPUT.MIN_SIZE_TEST', 96, 'INPUT.MAX_SIZE_TEST', 128,
        # a randomly initialised model: keep a few low-scored things so every path runs, and
        # damp its random box regressions (boxes stay near the anchors, not degenerate)
        'MODEL.ROI_HEADS.SCORE_THRESH_TEST', 0.0, 'TEST.DETECTIONS_PER_IMAGE', 2,
        'MODEL.RPN.BBOX_REG_WEIGHTS', (100.0,) * 4,
        'MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS', (100.0,) * 4,
        'MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH', 0.0,
        'MODEL.SEGREFINE.ENABLED', enabled,
        'MODEL.SEGREFINE.REFINER.TYPE', 'CascadePSP',
        'MODEL.SEGREFINE.REFINER.CHECKPOINT', str(weights),
        'MODEL.SEGREFINE.REFINER.L', 96, 'MODEL.SEGREFINE.REFINER.FAST', True])
    return cfg


def _plain(cfg):
    cfg = cfg.clone()
    cfg.MODEL.META_ARCHITECTURE = 'PanopticFPN'
    return build_model(cfg).eval()


@pytest.fixture(scope='module')
def wrapper(cascadepsp_weights):
    torch.manual_seed(0)
    return build_model(_cfg(cascadepsp_weights)).eval()


@pytest.fixture(scope='module')
def plain(wrapper, cascadepsp_weights):
    """A plain PanopticFPN holding the wrapper's weights."""
    model = _plain(_cfg(cascadepsp_weights))
    model.load_state_dict(wrapper.state_dict())
    return model


@pytest.fixture(scope='module')
def inputs(data_root):
    """One ECSSD image (long side 128) as a detectron2 test input: resized to 96, BGR."""
    img = cv2.imread(str(data_root / 'ecssd' / 'images' / '0004.jpg'))
    s = 128 / max(img.shape[:2])
    img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                     interpolation=cv2.INTER_AREA)
    resized = T.ResizeShortestEdge([96, 96], 128).get_transform(img).apply_image(img)
    return [{'image': torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
             'height': img.shape[0], 'width': img.shape[1]}], img


def _same_outputs(a, b):
    assert a.keys() == b.keys()
    assert torch.equal(a['sem_seg'], b['sem_seg'])
    assert torch.equal(a['panoptic_seg'][0], b['panoptic_seg'][0])
    assert a['panoptic_seg'][1] == b['panoptic_seg'][1]
    fa, fb = a['instances'].get_fields(), b['instances'].get_fields()
    assert fa.keys() == fb.keys()
    assert torch.equal(fa['pred_masks'], fb['pred_masks'])
    assert torch.equal(fa['scores'], fb['scores'])
    assert torch.equal(fa['pred_boxes'].tensor, fb['pred_boxes'].tensor)


def test_builds_the_inner_meta_architecture(wrapper):
    assert isinstance(wrapper, SegRefineWrapper)
    assert type(wrapper.model).__name__ == 'PanopticFPN'
    assert type(wrapper.refiner).__name__ == 'CascadePSPRefiner'
    assert wrapper.input_format == 'BGR'
    assert wrapper.backbone is wrapper.model.backbone        # attributes fall through
    assert wrapper.device == torch.device('cpu')


def test_state_dict_is_the_inner_layout(wrapper, plain):
    ws, ps = wrapper.state_dict(), plain.state_dict()
    assert list(ws) == list(ps)
    assert all(ws[k].shape == ps[k].shape for k in ws)
    wrapper.load_state_dict(ps, strict=True)
    plain.load_state_dict(ws, strict=True)


def test_checkpoints_load_as_usual(wrapper, plain, cascadepsp_weights, tmp_path):
    """A plain model's checkpoint loads into the wrapper with detectron2's checkpointer, and
    the wrapper's into a plain model."""
    DetectionCheckpointer(plain, save_dir=str(tmp_path)).save('plain')
    torch.manual_seed(1)
    fresh = build_model(_cfg(cascadepsp_weights)).eval()
    key = 'backbone.bottom_up.stem.conv1.weight'
    assert not torch.equal(fresh.state_dict()[key], plain.state_dict()[key])
    DetectionCheckpointer(fresh).load(str(tmp_path / 'plain.pth'))
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in fresh.state_dict().items())
    DetectionCheckpointer(fresh, save_dir=str(tmp_path)).save('wrapped')
    other = _plain(_cfg(cascadepsp_weights))
    DetectionCheckpointer(other).load(str(tmp_path / 'wrapped.pth'))
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in other.state_dict().items())


def test_switched_off_is_bit_identical(plain, inputs, cascadepsp_weights):
    batch, _ = inputs
    with torch.no_grad():
        ref = plain(batch)[0]
        off = build_model(_cfg(cascadepsp_weights, enabled=False)).eval()
        off.load_state_dict(plain.state_dict())
        assert off.refiner is None
        _same_outputs(off(batch)[0], ref)
        _same_outputs(wrap_model(plain, None)(batch)[0], ref)


def test_refined_forward_keeps_ids_and_segments_info(wrapper, plain, inputs):
    batch, img = inputs
    with torch.no_grad():
        raw = plain(batch)[0]
        out = wrapper(batch)[0]
    assert out.keys() == raw.keys()
    id_map, infos = out['panoptic_seg']
    raw_map, raw_infos = raw['panoptic_seg']
    assert id_map.shape == raw_map.shape == img.shape[:2] and id_map.dtype == raw_map.dtype
    present = set(torch.unique(id_map).tolist()) - {0}
    assert present == {s['id'] for s in infos}
    assert {s['id'] for s in infos} <= {s['id'] for s in raw_infos}
    by_id = {s['id']: s for s in raw_infos}
    for s in infos:
        assert s['area'] == int((id_map == s['id']).sum())
        assert {k: v for k, v in s.items() if k != 'area'} == \
            {k: v for k, v in by_id[s['id']].items() if k != 'area'}
    inst, raw_inst = out['instances'], raw['instances']
    assert len(raw_inst) > 0 and len(inst) == len(raw_inst)
    assert torch.equal(inst.scores, raw_inst.scores)
    assert torch.equal(inst.pred_classes, raw_inst.pred_classes)
    assert inst.pred_masks.shape == raw_inst.pred_masks.shape
    assert torch.equal(out['sem_seg'], raw['sem_seg'])     # REFINE_SEM_SEG is off


def test_sem_seg_refinement_gives_one_hot_scores(plain, cascadepsp_weights, inputs):
    batch, img = inputs
    refiner = build_model(_cfg(cascadepsp_weights)).refiner
    model = wrap_model(plain, refiner, refine_panoptic=False, refine_instances=False,
                       refine_sem_seg=True).eval()
    h, w = img.shape[:2]
    labels = torch.zeros(h, w, dtype=torch.int64)
    labels[h // 4:3 * h // 4, w // 4:3 * w // 4] = 2
    scores = torch.nn.functional.one_hot(labels, 3).permute(2, 0, 1).float() * 0.7
    out = model.refine_outputs(batch, [{'sem_seg': scores}])[0]['sem_seg']
    assert out.shape == scores.shape and out.dtype == scores.dtype
    assert torch.equal(out.sum(0), torch.ones(h, w))
    assert set(out.argmax(0).unique().tolist()) <= {0, 2}


def test_soft_coarse_sem_seg_gives_the_refiner_softmax_probabilities(plain, cascadepsp_weights,
                                                                     inputs):
    batch, img = inputs
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=96,
                                 fast=True, soft_input=True))
    model = wrap_model(plain, refiner, refine_panoptic=False, refine_instances=False,
                       refine_sem_seg=True, soft_coarse=True).eval()
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    # logits of a smooth ellipse on background: a soft boundary several pixels wide
    r = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2
    scores = torch.from_numpy(np.stack([2.0 * (r - 1), np.zeros_like(r), 2.0 * (1 - r)])).float()
    out = model.refine_outputs(batch, [{'sem_seg': scores}])[0]['sem_seg']
    image = image_for_refiner(batch[0], 'BGR')
    labels = scores.argmax(0).numpy()
    probs = torch.softmax(scores, dim=0).numpy()
    options = model.roi_options.replace(ignore_index=None)
    soft = refine_label_map(image, labels, refiner, options, probs=probs).labels
    hard = refine_label_map(image, labels, refiner, options).labels
    np.testing.assert_array_equal(out.argmax(0).numpy(), soft)
    assert (soft != hard).any(), 'soft and hard coarse input gave the same labels'
    with pytest.raises(ValueError, match='NaN'):
        model.refine_outputs(batch, [{'sem_seg': scores * float('nan')}])
    # scores already in [0, 1] (MaskFormer-style probabilities) are read as they are
    as_probs = model.refine_outputs(batch, [{'sem_seg': torch.from_numpy(probs)}])[0]
    np.testing.assert_array_equal(as_probs['sem_seg'].argmax(0).numpy(), soft)
    with pytest.raises(ValueError, match='mask_threshold=0.5'):
        wrap_model(plain, refiner, soft_coarse=True, mask_threshold=0.4)
    # the soft values need a refiner that reads them
    hard_refiner = build_model(_cfg(cascadepsp_weights)).refiner
    with pytest.raises(ValueError, match='soft_input=True'):
        wrap_model(plain, hard_refiner, soft_coarse=True)
    cfg = _cfg(cascadepsp_weights)
    cfg.MODEL.SEGREFINE.SOFT_COARSE = True
    built = build_model(cfg)
    assert built.soft_coarse and built.refiner.soft_input


def test_image_for_refiner(inputs, tmp_path):
    batch, img = inputs
    inp = dict(batch[0])
    rgb = image_for_refiner(inp, 'BGR', 'input')
    assert rgb.shape == img.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - img[:, :, ::-1].astype(int)).mean() < 12
    same = {'image': torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))}
    assert np.array_equal(image_for_refiner(same, 'BGR'), img[:, :, ::-1])
    assert np.array_equal(image_for_refiner(same, 'RGB'), img)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    inp['file_name'] = str(tmp_path / 'a.png')
    assert np.array_equal(image_for_refiner(inp, 'BGR', 'auto'), img[:, :, ::-1])
    inp['file_name'] = str(tmp_path / 'missing.png')
    with pytest.raises(ValueError, match='no readable file'):
        image_for_refiner(inp, 'BGR', 'file')
    with pytest.raises(ValueError, match='INPUT.FORMAT'):
        image_for_refiner(inp, 'YUV-BT.601')
    with pytest.raises(ValueError, match='image source'):
        image_for_refiner(inp, 'BGR', 'disk')


def test_bad_wrapper_arguments(plain):
    with pytest.raises(ValueError, match='Refiner'):
        wrap_model(plain, object())
    with pytest.raises(ValueError, match='image_source'):
        wrap_model(plain, None, image_source='x')
    with pytest.raises(ValueError, match="INPUT.FORMAT 'L'"):      # when built, not later
        wrap_model(plain, None, input_format='L')


def test_bad_images_and_scores_are_clear_errors():
    """A float image scaled to 0..1 (refined as a black image before), a zero output size
    (a raw cv2.error before), NaN scores on the hard sem_seg path (one-hot class 0 before)
    and a string isthing (read as true before) raise ValueErrors naming the problem."""
    from segrefine_plugins.detectron2.panoptic import check_segments_info

    img = torch.rand(3, 40, 50)
    with pytest.raises(ValueError, match='0..1'):
        image_for_refiner({'image': img}, 'BGR', 'input')
    assert image_for_refiner({'image': img * 255}, 'BGR', 'input').shape == (40, 50, 3)
    with pytest.raises(ValueError, match='>= 1'):
        image_for_refiner({'image': img * 255, 'height': 0, 'width': 0}, 'BGR', 'input')
    wrapper = wrap_model(torch.nn.Identity(), build_refiner(dict(type='CRM')),
                         refine_sem_seg=True)
    with pytest.raises(ValueError, match='NaN'):
        wrapper._refine_sem_seg(np.zeros((40, 50, 3), np.uint8),
                                torch.full((3, 40, 50), float('nan')))
    with pytest.raises(ValueError, match='"isthing" must be a bool'):
        check_segments_info([{'id': 1, 'isthing': 'False', 'category_id': 0}])
    check_segments_info([{'id': 1, 'isthing': False, 'category_id': 0}])


def _record_coarse_masks(refiner):
    """Make ``refiner`` (this instance) append every coarse mask it is given to a list."""
    seen = []
    one, many = refiner.refine, refiner.refine_batch

    def refine(image, mask):
        seen.append(np.asarray(mask))
        return one(image, mask)

    def refine_batch(images, masks):
        seen.extend(np.asarray(m) for m in masks)
        return many(images, masks)

    refiner.refine, refiner.refine_batch = refine, refine_batch
    return seen


def test_soft_coarse_panoptic_reads_sem_seg_and_float_instance_masks(plain, cascadepsp_weights,
                                                                     inputs):
    """A real PanopticFPN's panoptic segments with soft_coarse: stuff reads the softmax of its
    sem_seg logits (channel category_id), things their instance's float mask (instance_id);
    boolean masks (detectron2's pasted ones) stay hard."""
    batch, img = inputs
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=96,
                                 fast=True, soft_input=True))
    model = wrap_model(plain, refiner, refine_instances=False, soft_coarse=True).eval()
    with torch.no_grad():
        raw = plain(batch)[0]
    id_map, infos = raw['panoptic_seg']
    assert any(not s['isthing'] for s in infos) and any(s['isthing'] for s in infos)
    image = image_for_refiner(batch[0], 'BGR')
    soft = panoptic_soft_masks(infos, image.shape[:2], raw['instances'], raw['sem_seg'])
    probs = torch.softmax(raw['sem_seg'].float(), dim=0).numpy()
    for info, m in zip(infos, soft):
        if info['isthing']:
            assert m is None                                  # bool pasted masks: hard
        else:
            np.testing.assert_allclose(m, probs[info['category_id']], rtol=1e-6, atol=1e-7)
    seen = _record_coarse_masks(refiner)
    out = model.refine_outputs(batch, [raw])[0]['panoptic_seg']
    assert any(m.dtype == np.uint8 and ((m > 0) & (m < 255)).any() for m in seen), \
        'the refiner got no soft coarse mask'
    want = refine_panoptic(image, id_map, infos, refiner, model.roi_options, soft_masks=soft)
    assert torch.equal(out[0], want[0]) and out[1] == want[1]
    # a model that keeps its mask probabilities: things read them through instance_id
    inst = raw['instances']
    float_masks = inst.pred_masks.float() * 0.6 + 0.2         # probabilities, > 0.5 inside
    soft_inst = type(inst)(inst.image_size, **{**inst.get_fields(), 'pred_masks': float_masks})
    soft = panoptic_soft_masks(infos, image.shape[:2], soft_inst, raw['sem_seg'])
    for info, m in zip(infos, soft):
        if info['isthing']:
            np.testing.assert_array_equal(m, float_masks[info['instance_id']].numpy())
    seen.clear()
    out = model.refine_outputs(batch, [{**raw, 'instances': soft_inst}])[0]['panoptic_seg']
    assert any(m.dtype == np.uint8 and (m == 204).any() and (m == 51).any() for m in seen), \
        'no thing ROI got its float mask (0.8 inside / 0.2 outside = 204 / 51 of 255)'
    want = refine_panoptic(image, id_map, infos, refiner, model.roi_options, soft_masks=soft)
    assert torch.equal(out[0], want[0]) and out[1] == want[1]
