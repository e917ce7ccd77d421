"""refine_panoptic: consistent (id_map, segments_info) out of any panoptic output."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.detectron2 import check_panoptic, refine_panoptic  # noqa: E402

SIZE = 96


@pytest.fixture(scope='module')
def refiner(cascadepsp_weights):
    """CascadePSP with the synthetic weights, small and fast (shared with the other
    test_detectron2_* modules)."""
    return build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=96,
                              fast=True))


def ecssd_sample(data_root, name, size=SIZE):
    """ECSSD image ``name`` (RGB) and its object mask (bool), resized to a long side ``size``."""
    img = cv2.imread(str(data_root / 'ecssd' / 'images' / f'{name}.jpg'))[:, :, ::-1]
    mask = cv2.imread(str(data_root / 'ecssd' / 'masks' / f'{name}.png'), cv2.IMREAD_GRAYSCALE)
    s = size / max(img.shape[:2])
    w, h = round(img.shape[1] * s), round(img.shape[0] * s)
    img = np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    return img, cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 127


@pytest.fixture(scope='module')
def scene(data_root):
    """An ECSSD image (long side 96) and a PanopticFPN-style output made from its mask:
    the object (thing, id 7), a second thing (id 4), background stuff (id 3), a void band."""
    img, obj = ecssd_sample(data_root, '0002')
    ids = np.where(obj, 7, 3).astype(np.int32)
    ids[:8, :12] = 4
    ids[-3:, :] = 0
    infos = [{'id': 7, 'isthing': True, 'score': 0.9, 'category_id': 0, 'instance_id': 0},
             {'id': 4, 'isthing': True, 'score': 0.4, 'category_id': 2, 'instance_id': 1},
             {'id': 3, 'isthing': False, 'category_id': 5, 'area': int((ids == 3).sum())}]
    return img, torch.from_numpy(ids), infos


def _check_consistent(id_map, infos, in_infos):
    arr = id_map.numpy()
    listed = [s['id'] for s in infos]
    present = set(np.unique(arr).tolist()) - {0}
    assert present == set(listed)                    # no unknown ids, no listed-but-absent
    for s in infos:
        assert s['area'] == int((arr == s['id']).sum())
    by_id = {s['id']: s for s in in_infos}
    for s in infos:                                   # every other field kept
        ref = {k: v for k, v in by_id[s['id']].items() if k != 'area'}
        assert {k: v for k, v in s.items() if k != 'area'} == ref
    assert listed == [s['id'] for s in in_infos if s['id'] in present]  # order kept


def test_refined_output_is_consistent(scene, refiner):
    img, ids, infos = scene
    before = copy.deepcopy(infos)
    ids_before = ids.clone()
    out_map, out_infos = refine_panoptic(img, ids, infos, refiner)
    assert isinstance(out_map, torch.Tensor) and out_map.dtype == ids.dtype
    assert out_map.shape == ids.shape
    _check_consistent(out_map, out_infos, infos)
    assert infos == before and torch.equal(ids, ids_before)   # inputs untouched
    assert not torch.equal(out_map, ids)                      # it did refine something


def test_numpy_id_map_and_void_ids(scene, refiner):
    img, ids, infos = scene
    out_map, out_infos = refine_panoptic(img, ids.numpy(), infos, refiner, min_area=50)
    assert isinstance(out_map, np.ndarray) and out_map.dtype == np.int32
    _check_consistent(torch.from_numpy(out_map), out_infos, infos)


def test_listed_ids_missing_from_the_map_are_dropped(scene, refiner):
    img, ids, infos = scene
    extra = infos + [{'id': 99, 'isthing': True, 'score': 0.1, 'category_id': 1}]
    out_map, out_infos = refine_panoptic(img, ids, extra, refiner)
    assert 99 not in [s['id'] for s in out_infos]
    _check_consistent(out_map, out_infos, infos)


def test_empty_segments_info(scene, refiner):
    img, ids, _ = scene
    void = torch.zeros_like(ids)
    out_map, out_infos = refine_panoptic(img, void, [], refiner)
    assert out_infos == [] and torch.equal(out_map, void)
    with pytest.raises(ValueError, match='does not list'):
        refine_panoptic(img, ids, [], refiner)


def test_panopticfcn_style_entries(scene, refiner):
    """PanopticFCN: things carry score / instance_id and no area; stuff carries area."""
    img, ids, _ = scene
    infos = [{'id': 7, 'isthing': True, 'score': 0.8, 'category_id': 11, 'instance_id': 0},
             {'id': 4, 'isthing': True, 'score': 0.7, 'category_id': 11, 'instance_id': 1},
             {'id': 3, 'isthing': False, 'category_id': 20, 'area': 1}]
    out_map, out_infos = refine_panoptic(img, ids, infos, refiner)
    _check_consistent(out_map, out_infos, infos)


@pytest.mark.parametrize('case, match', [
    ('unlisted', 'does not list'),
    ('size', 'but the image is'),
    ('none', 'list of dicts'),
    ('duplicate', 'distinct'),
    ('negative', 'negative'),
    ('no_isthing', 'isthing'),
    ('float', 'integers'),
])
def test_malformed_inputs(scene, case, match):
    img, ids, infos = scene
    infos = copy.deepcopy(infos)
    if case == 'unlisted':
        infos = infos[:2]
    elif case == 'size':
        ids = ids[:-1]
    elif case == 'none':
        infos = None
    elif case == 'duplicate':
        infos[1]['id'] = 7
    elif case == 'negative':
        ids = ids.clone()
        ids[0, 0] = -1
    elif case == 'no_isthing':
        del infos[0]['isthing']
    elif case == 'float':
        ids = ids.float()
    with pytest.raises(ValueError, match=match):
        check_panoptic(ids, infos, img.shape[:2])


def test_crm_refiner_from_the_config(scene, crm_weights):
    """CRM built from MODEL.SEGREFINE (SCALES reach its constructor) refines a panoptic output."""
    from detectron2.config import get_cfg
    from segrefine_plugins.detectron2 import add_segrefine_config, build_refiner_from_cfg

    cfg = get_cfg()
    add_segrefine_config(cfg)
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.SEGREFINE.REFINER.TYPE', 'CRM',
                         'MODEL.SEGREFINE.REFINER.CHECKPOINT', str(crm_weights),
                         'MODEL.SEGREFINE.REFINER.SCALES', [0.5, 1.0]])
    crm = build_refiner_from_cfg(cfg)
    assert type(crm).__name__ == 'CRMRefiner'
    img, ids, infos = scene
    out_map, out_infos = refine_panoptic(img, ids, infos, crm)
    _check_consistent(out_map, out_infos, infos)
