"""RefinedSegmentor around a real (tiny, randomly initialised) mmseg EncoderDecoder."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from _mmseg_support import (CLASSES, LONG_SIDE, REFINE_CFG as OPTIONS, build_dataset,
                            build_tiny_model, cascadepsp_cfg, dataset_cfg, pipeline_cfg,
                            one_torch_thread, save_checkpoint, set_root, tiny_model_cfg)

import torch  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

from segrefine_plugins.io import read_image  # noqa: E402
from segrefine_plugins.mmseg import RefinedSegmentor, build_mmseg_refiner  # noqa: E402
from segrefine_plugins.mmseg.images import restore_from_inputs  # noqa: E402
from segrefine_plugins.multiobject import refine_label_map  # noqa: E402

pytestmark = pytest.mark.mmseg

_FIXTURES = (set_root, cascadepsp_cfg, one_torch_thread)  # fixtures used below


@pytest.fixture(scope='module')
def model():
    return build_tiny_model()


@pytest.fixture(scope='module')
def refiner(cascadepsp_cfg):
    return build_mmseg_refiner(cascadepsp_cfg)


def make_batch(set_root, indices=(0, 1), pipeline=None):
    dataset = build_dataset(dataset_cfg(set_root, pipeline))
    return pseudo_collate([dataset[i] for i in indices])


def labels_of(sample, field='pred_sem_seg'):
    return getattr(sample, field).data.squeeze(0).cpu().numpy()


def test_no_refiner_leaves_predictions_bit_identical(model, set_root):
    plain = model.test_step(make_batch(set_root))
    wrapped = RefinedSegmentor(model, None).test_step(make_batch(set_root))
    for a, b in zip(plain, wrapped):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert 'coarse_sem_seg' not in b


@pytest.fixture(scope='module')
def refined_pair(model, refiner, set_root):
    """(plain outputs, wrapper outputs) of the first two images."""
    plain = model.test_step(make_batch(set_root))
    return plain, RefinedSegmentor(model, refiner, **OPTIONS).test_step(make_batch(set_root))


def test_refines_on_the_original_image_at_original_size(refined_pair, refiner):
    plain, out = refined_pair
    changed = 0
    for coarse, sample in zip(plain, out):
        h, w = sample.metainfo['ori_shape']
        assert max(h, w) == LONG_SIDE and tuple(sample.metainfo['img_shape'][:2]) != (h, w)
        assert sample.pred_sem_seg.data.shape == (1, h, w)
        assert sample.pred_sem_seg.data.dtype == coarse.pred_sem_seg.data.dtype
        assert torch.equal(sample.coarse_sem_seg.data, coarse.pred_sem_seg.data)
        expected = refine_label_map(read_image(sample.img_path), labels_of(coarse), refiner,
                                    **OPTIONS).labels
        np.testing.assert_array_equal(labels_of(sample), expected)
        changed += int((labels_of(sample) != labels_of(coarse)).any())
    # precondition of a meaningful test: the tiny model predicts both classes somewhere
    assert any(len(np.unique(labels_of(c))) == 2 for c in plain)
    assert changed > 0, 'the refiner changed no label: the test shows nothing'


def test_image_from_inputs_when_there_is_no_file(model, refiner, set_root):
    batch = make_batch(set_root, (0,))
    original = [read_image(s.img_path) for s in batch['data_samples']]
    for s in batch['data_samples']:
        s.set_metainfo({'img_path': None})
    plain = model.test_step(copy.deepcopy(batch))
    wrapper = RefinedSegmentor(model, refiner, **OPTIONS)
    out = wrapper.test_step(copy.deepcopy(batch))
    for i, sample in enumerate(out):
        restored = restore_from_inputs(batch['inputs'][i], sample.metainfo, 'bgr')
        assert restored.shape == original[i].shape
        err = np.abs(restored.astype(int) - original[i].astype(int)).mean()
        err_swapped = np.abs(restored[..., ::-1].astype(int) - original[i].astype(int)).mean()
        assert err < 12 and err < err_swapped  # resampled twice, but RGB and aligned
        expected = refine_label_map(restored, labels_of(plain[i]), refiner, **OPTIONS).labels
        np.testing.assert_array_equal(labels_of(sample), expected)


def test_restore_from_inputs_is_exact_without_resize(set_root):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=1.0),
                dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    batch = make_batch(set_root, (0,), pipeline)
    sample = batch['data_samples'][0]
    assert sample.metainfo['flip']
    restored = restore_from_inputs(batch['inputs'][0], sample.metainfo, 'bgr')
    np.testing.assert_array_equal(restored, read_image(sample.img_path))


def test_state_dict_is_the_segmentors(model, tmp_path):
    wrapper = RefinedSegmentor(model, None)
    own, theirs = wrapper.state_dict(), model.state_dict()
    assert list(own) == list(theirs)
    assert all(torch.equal(own[k], theirs[k]) for k in own)
    # a checkpoint of another segmentor loads into the wrapper (mmengine's loader and torch's)
    other = build_tiny_model(seed=1)
    path = save_checkpoint(other, tmp_path / 'other.pth')
    fresh = RefinedSegmentor(build_tiny_model(seed=2), None)
    load_checkpoint(fresh, str(path), map_location='cpu', strict=True)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in fresh.state_dict().items())
    fresh.load_state_dict(theirs, strict=True)
    # ... and what the wrapper saves loads into a plain segmentor
    plain = build_tiny_model(seed=3)
    plain.load_state_dict(fresh.state_dict(), strict=True)
    assert all(torch.equal(v, theirs[k]) for k, v in plain.state_dict().items())


def test_built_from_config_and_used_by_mmseg_apis(model, cascadepsp_cfg, set_root, tmp_path,
                                                   refined_pair):
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    refiner_cfg = cascadepsp_cfg
    built = MODELS.build(dict(type='RefinedSegmentor', segmentor=tiny_model_cfg(),
                              refiner=refiner_cfg, **OPTIONS))
    assert isinstance(built, RefinedSegmentor) and str(built.refiner.device) == 'cpu'
    # mmseg.apis with a config whose model is the wrapper, and a plain segmentor checkpoint
    ckpt = save_checkpoint(model, tmp_path / 'tiny.pth')
    cfg = Config(dict(model=dict(type='RefinedSegmentor', segmentor=tiny_model_cfg(),
                                 refiner=refiner_cfg, **OPTIONS),
                      test_pipeline=pipeline_cfg()[:2] + [dict(type='PackSegInputs')]))
    wrapped = init_model(cfg, str(ckpt), device='cpu')
    assert wrapped.dataset_meta['classes'] == CLASSES
    plain, refined = refined_pair  # the same weights, pipeline and refiner settings
    result = inference_model(wrapped, refined[0].img_path)
    assert torch.equal(result.coarse_sem_seg.data, plain[0].pred_sem_seg.data)
    assert torch.equal(result.pred_sem_seg.data, refined[0].pred_sem_seg.data)


def test_stuff_classes_by_name_and_stuff_scale(model, refiner, set_root):
    meta = {'classes': CLASSES}
    wrapper = RefinedSegmentor(model, refiner, stuff_classes=['background', 'object'],
                               stuff_scale=0.01, **OPTIONS)
    wrapper.dataset_meta = meta
    assert wrapper._stuff_ids == (0, 1)
    # every refined probability is scaled below 0.5: nothing can change
    for sample in wrapper.test_step(make_batch(set_root, (0,))):
        assert torch.equal(sample.pred_sem_seg.data, sample.coarse_sem_seg.data)
    with pytest.raises(ValueError, match="'sky' is not a class"):
        RefinedSegmentor(model, refiner, stuff_classes=['sky']).dataset_meta = meta
    unresolved = RefinedSegmentor(model, refiner, stuff_classes=['object'], **OPTIONS)
    with pytest.raises(ValueError, match='class names are not known'):
        unresolved.test_step(make_batch(set_root, (0,)))


def test_soft_coarse_gives_the_refiner_class_probabilities(model, cascadepsp_cfg, refiner,
                                                          set_root):
    soft_refiner = build_mmseg_refiner(dict(cascadepsp_cfg, soft_input=True))
    plain = model.test_step(make_batch(set_root, (0,)))
    wrapper = RefinedSegmentor(model, soft_refiner, soft_coarse=True, **OPTIONS)
    out = wrapper.test_step(make_batch(set_root, (0,)))
    coarse, sample = plain[0], out[0]
    probs = torch.softmax(coarse.seg_logits.data.detach().float(), dim=0).numpy()
    expected = refine_label_map(read_image(sample.img_path), labels_of(coarse), soft_refiner,
                                probs=probs, **OPTIONS).labels
    np.testing.assert_array_equal(labels_of(sample), expected)
    hard = refine_label_map(read_image(sample.img_path), labels_of(coarse), soft_refiner,
                            **OPTIONS).labels
    assert (expected != hard).any(), 'soft and hard coarse inputs gave the same labels'
    with pytest.raises(ValueError, match='soft_input=True'):
        RefinedSegmentor(model, refiner, soft_coarse=True)


@pytest.mark.parametrize('kwargs, match', [
    (dict(min_area=-1), 'min_area'),
    (dict(roi_padding=float('nan')), 'roi_padding'),
    (dict(stuff_scale=0), 'stuff_scale'),
    (dict(image_source='disk'), 'image_source'),
    (dict(inputs_channel_order='gbr'), 'inputs_channel_order'),
    (dict(stuff_classes=[1.5]), 'stuff_classes'),
])
def test_bad_options_fail_at_construction(model, refiner, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinedSegmentor(model, refiner, **kwargs)


def test_rejects_what_is_not_a_segmentor(refiner):
    with pytest.raises(ValueError, match='segmentor must be'):
        RefinedSegmentor(torch.nn.Linear(2, 2), refiner)
