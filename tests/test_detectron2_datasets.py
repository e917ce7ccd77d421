"""COCO-format datasets for detectron2 evaluation: metadata, registration, subsets, ECSSD set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import require_module

require_module('detectron2')
require_module('panopticapi', 'detectron2')
pytestmark = pytest.mark.detectron2

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from segrefine_plugins.detectron2.datasets import (make_ecssd_dataset,  # noqa: E402
                                                   register_coco_dataset, separated_metadata,
                                                   subset_dataset)


@pytest.fixture(scope='module')
def dataset(data_root, tmp_path_factory):
    return make_ecssd_dataset(str(data_root), str(tmp_path_factory.mktemp('ecssd_pan')),
                              num=3, size=96)


def test_generated_dataset(dataset):
    pan = json.loads(Path(dataset['panoptic_json']).read_text())
    inst = json.loads(Path(dataset['instances_json']).read_text())
    assert len(pan['images']) == len(pan['annotations']) == 3
    assert {c['id']: c['isthing'] for c in pan['categories']} == {1: 1, 2: 0}
    assert len(inst['annotations']) == 3 and all(a['category_id'] == 1 for a in inst['annotations'])
    for ann, image in zip(pan['annotations'], pan['images']):
        assert (Path(dataset['panoptic_root']) / ann['file_name']).is_file()
        assert (Path(dataset['image_root']) / image['file_name']).is_file()
        assert max(image['height'], image['width']) == 96
    assert not list(Path(dataset['panoptic_json']).parent.glob('*.tmp'))


def test_generated_dataset_start_and_source(dataset, data_root, tmp_path):
    """``start`` gives a disjoint set (the next pairs by name); ``source`` another folder."""
    first = json.loads(Path(dataset['panoptic_json']).read_text())['images']
    later = make_ecssd_dataset(str(data_root), str(tmp_path / 'b'), num=2, size=96, start=2)
    images = json.loads(Path(later['panoptic_json']).read_text())['images']
    assert images[0]['file_name'] == first[2]['file_name'] and len(images) == 2
    duts = make_ecssd_dataset(str(data_root), str(tmp_path / 'd'), num=1, size=64,
                              start=1900, source='duts-te-2k')
    names = sorted(p.name for p in (data_root / 'duts-te-2k' / 'images').glob('*.jpg'))
    assert [p.name for p in Path(duts['image_root']).iterdir()] == [names[1900]]
    with pytest.raises(ValueError, match='no images from index'):
        make_ecssd_dataset(str(data_root), str(tmp_path / 'e'), num=1, start=10 ** 6)
    with pytest.raises(ValueError, match='start must be'):
        make_ecssd_dataset(str(data_root), str(tmp_path / 'e'), num=0)


def test_separated_metadata():
    meta = separated_metadata([{'id': 5, 'name': 'b', 'isthing': 0},
                               {'id': 9, 'name': 'x', 'isthing': 1},
                               {'id': 2, 'name': 'a', 'isthing': 1}])
    assert meta['thing_dataset_id_to_contiguous_id'] == {2: 0, 9: 1}
    assert meta['thing_classes'] == ['a', 'x']
    assert meta['stuff_dataset_id_to_contiguous_id'] == {5: 1}
    assert meta['stuff_classes'] == ['things', 'b']
    # an instances json has no isthing: every category is a thing
    assert separated_metadata([{'id': 3, 'name': 'c'}])['thing_classes'] == ['c']


def test_register_and_subset(dataset, tmp_path):
    name = register_coco_dataset('segrefine_test_ds', dataset['image_root'],
                                 dataset['panoptic_json'], dataset['panoptic_root'],
                                 dataset['instances_json'])
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 3 and all('pan_seg_file_name' in d for d in dicts)
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == 'coco_panoptic_seg' and meta.json_file == dataset['instances_json']
    # registering again replaces (no "already registered" error)
    assert register_coco_dataset(name, dataset['image_root'],
                                 instances_json=dataset['instances_json']) == name
    assert MetadataCatalog.get(name).evaluator_type == 'coco'
    register_coco_dataset(name, dataset['image_root'], dataset['panoptic_json'],
                          dataset['panoptic_root'], dataset['instances_json'])

    assert subset_dataset(name, None, str(tmp_path)) == name
    assert subset_dataset(name, 5, str(tmp_path)) == name
    sub = subset_dataset(name, 2, str(tmp_path / 'gt'))
    assert sub == f'{name}_first2' and len(DatasetCatalog.get(sub)) == 2
    ids = {d['image_id'] for d in DatasetCatalog.get(sub)}
    sub_meta = MetadataCatalog.get(sub)
    for key in ('panoptic_json', 'json_file'):
        data = json.loads(Path(getattr(sub_meta, key)).read_text())
        assert {im['id'] for im in data['images']} == ids
        assert {a['image_id'] for a in data['annotations']} == ids
    with pytest.raises(ValueError, match='max-images must be >= 1'):
        subset_dataset(name, 0, str(tmp_path))


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        register_coco_dataset('x', str(tmp_path), str(tmp_path / 'no.json'), str(tmp_path))
    with pytest.raises(ValueError, match='panoptic-root'):
        register_coco_dataset('x', str(tmp_path), str(tmp_path / 'no.json'))
    with pytest.raises(ValueError, match='instances-json'):
        register_coco_dataset('x', str(tmp_path))
    with pytest.raises(ValueError, match='not found'):
        make_ecssd_dataset(str(tmp_path), str(tmp_path / 'out'))
