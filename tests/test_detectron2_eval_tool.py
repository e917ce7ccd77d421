"""tools/eval_detectron2.py on a tiny COCO-panoptic dataset generated from ECSSD."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from conftest import require_module

require_module('detectron2')
require_module('panopticapi', 'detectron2')
pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location('eval_detectron2',
                                                  REPO / 'tools' / 'eval_detectron2.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
PANOPTIC = ['PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th', 'PQ_st', 'SQ_st', 'RQ_st']


@pytest.fixture(scope='module')
def dataset(data_root, tmp_path_factory):
    return tool.make_ecssd_dataset(str(data_root), str(tmp_path_factory.mktemp('ecssd_pan')),
                                   num=3, size=96)


def _dataset_args(paths):
    return ['--image-root', paths['image_root'], '--panoptic-json', paths['panoptic_json'],
            '--panoptic-root', paths['panoptic_root'], '--instances-json',
            paths['instances_json']]


def _refiner_opts(weights):
    return ['MODEL.DEVICE', 'cpu', 'INPUT.MIN_SIZE_TEST', '96', 'INPUT.MAX_SIZE_TEST', '128',
            'MODEL.SEGREFINE.REFINER.TYPE', 'CascadePSP',
            'MODEL.SEGREFINE.REFINER.CHECKPOINT', str(weights),
            'MODEL.SEGREFINE.REFINER.L', '96', 'MODEL.SEGREFINE.REFINER.FAST', 'True']


def test_generated_dataset(dataset):
    pan = json.loads(Path(dataset['panoptic_json']).read_text())
    inst = json.loads(Path(dataset['instances_json']).read_text())
    assert len(pan['images']) == len(pan['annotations']) == 3
    assert {c['id']: c['isthing'] for c in pan['categories']} == {1: 1, 2: 0}
    assert len(inst['annotations']) == 3 and all(a['category_id'] == 1 for a in inst['annotations'])
    for ann in pan['annotations']:
        assert (Path(dataset['panoptic_root']) / ann['file_name']).is_file()
        assert max(pan['images'][0]['height'], pan['images'][0]['width']) == 96


def test_separated_metadata():
    meta = tool.separated_metadata([{'id': 5, 'name': 'b', 'isthing': 0},
                                    {'id': 9, 'name': 'x', 'isthing': 1},
                                    {'id': 2, 'name': 'a', 'isthing': 1}])
    assert meta['thing_dataset_id_to_contiguous_id'] == {2: 0, 9: 1}
    assert meta['thing_classes'] == ['a', 'x']
    assert meta['stuff_dataset_id_to_contiguous_id'] == {5: 1}
    assert meta['stuff_classes'] == ['things', 'b']


def test_format_table():
    table = tool.format_table({'PQ': 40.0, 'AP': 30.0}, {'PQ': 41.5, 'AP': 29.0})
    lines = table.splitlines()
    assert lines[0].split() == ['metric', 'raw', 'refined', 'delta']
    assert lines[2].split() == ['PQ', '40.00', '41.50', '+1.50']
    assert lines[3].split() == ['AP', '30.00', '29.00', '-1.00']


def test_ground_truth_as_prediction_scores_100(dataset, cascadepsp_weights, tmp_path, capsys):
    """The evaluation part alone: the ground truth fed as the output gives PQ 100 and AP 100
    (on a --max-images subset, which needs the filtered ground truth); the refined column is
    evaluated in the same run."""
    out = tmp_path / 'out'
    res = tool.main(['--gt-as-prediction', *_dataset_args(dataset), '--max-images', '2',
                     '--output', str(out), '--no-progress', *_refiner_opts(cascadepsp_weights)])
    assert res['images'] == 2
    for key in PANOPTIC + ['AP', 'AP50', 'AP75']:
        assert res['raw'][key] == pytest.approx(100.0), key
        assert 0.0 <= res['refined'][key] <= 100.0 and not math.isnan(res['refined'][key])
    saved = json.loads((out / 'results.json').read_text())
    assert saved['raw'] == res['raw'] and saved['refined'] == res['refined']
    printed = capsys.readouterr().out
    assert 'PQ_th' in printed and 'PQ_st' in printed and 'delta' in printed


@pytest.mark.slow
def test_panoptic_fpn_end_to_end(dataset, cascadepsp_weights, tmp_path, capsys):
    """A real PanopticFPN (model zoo config, random weights, 1 thing + 1 stuff class) through
    the tool: one forward per image, raw and refined PQ / AP side by side."""
    refiner_py = tmp_path / 'refiner.py'
    refiner_py.write_text(f"refiner = dict(type='CascadePSP', checkpoint={str(cascadepsp_weights)!r}, "
                          f"L=96, fast=True)\n")
    out = tmp_path / 'out'
    res = tool.main([
        '--config-file', 'COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml',
        '--config-file', str(REPO / 'configs' / 'detectron2' / 'panoptic_fpn_cascadepsp.yaml'),
        '--refiner', str(refiner_py), *_dataset_args(dataset), '--max-images', '2',
        '--output', str(out),
        '--no-progress', '--weights', '', 'MODEL.DEVICE', 'cpu', 'INPUT.MIN_SIZE_TEST', '96',
        'INPUT.MAX_SIZE_TEST', '128', 'MODEL.ROI_HEADS.NUM_CLASSES', '1',
        'MODEL.SEM_SEG_HEAD.NUM_CLASSES', '2', 'MODEL.SEGREFINE.REFINER.L', '0',
        'MODEL.SEGREFINE.REFINER.TYPE', '',
        # random weights: keep low-scored things, damp the random box regressions
        'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'TEST.DETECTIONS_PER_IMAGE', '2',
        'MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH', '0.0',
        'MODEL.RPN.BBOX_REG_WEIGHTS', '(100.0, 100.0, 100.0, 100.0)',
        'MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS', '(100.0, 100.0, 100.0, 100.0)'])
    assert res['images'] == 2
    assert 'CascadePSP' in res['refiner']
    for tag in ('raw', 'refined'):
        assert set(PANOPTIC + ['AP', 'AP50']) <= set(res[tag])
        assert all(0.0 <= v <= 100.0 for v in res[tag].values())
    assert 'metric' in capsys.readouterr().out


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        tool.register_coco_dataset('x', str(tmp_path), str(tmp_path / 'no.json'), str(tmp_path))
    with pytest.raises(ValueError, match='panoptic-root'):
        tool.register_coco_dataset('x', str(tmp_path), str(tmp_path / 'no.json'))
    with pytest.raises(ValueError, match='module:function'):
        tool.apply_config_extension(None, 'nonsense')
    with pytest.raises(ValueError, match='cannot import'):
        tool.apply_config_extension(None, 'no_such_module_xyz:add')
