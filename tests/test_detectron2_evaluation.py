"""Raw-and-refined detectron2 evaluation (package functions): config, evaluators, the loop,
tables, the ground-truth stand-in model."""
from __future__ import annotations

import math
import sys

import pytest

from conftest import require_module

require_module('detectron2')
require_module('panopticapi', 'detectron2')
pytestmark = pytest.mark.detectron2

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segrefine_plugins.detectron2 import (build_refiner_from_cfg, wrap_model,  # noqa: E402
                                          wrapper_options)
from segrefine_plugins.detectron2.datasets import (make_ecssd_dataset,  # noqa: E402
                                                   register_coco_dataset)
from segrefine_plugins.detectron2.evaluation import (EvalSettings,  # noqa: E402
                                                     GroundTruthModel, apply_config_extension,
                                                     build_evaluators, build_wrapped_model,
                                                     collect, degrade_id_map, evaluate,
                                                     format_table, parse_degrade,
                                                     resolve_config_file, setup_cfg)

ZOO = 'COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml'


@pytest.fixture(scope='module')
def dataset(data_root, tmp_path_factory):
    paths = make_ecssd_dataset(str(data_root), str(tmp_path_factory.mktemp('ecssd_pan')),
                               num=2, size=96)
    return register_coco_dataset('segrefine_test_eval', paths['image_root'],
                                 paths['panoptic_json'], paths['panoptic_root'],
                                 paths['instances_json'])


def _opts(weights):
    return ['MODEL.DEVICE', 'cpu', 'INPUT.MIN_SIZE_TEST', '96', 'INPUT.MAX_SIZE_TEST', '128',
            'MODEL.SEGREFINE.REFINER.TYPE', 'CascadePSP',
            'MODEL.SEGREFINE.REFINER.CHECKPOINT', str(weights),
            'MODEL.SEGREFINE.REFINER.L', '96', 'MODEL.SEGREFINE.REFINER.FAST', 'True']


def test_format_table_and_collect():
    table = format_table({'PQ': 40.0, 'AP': 30.0}, {'PQ': 41.5, 'AP': 29.0}, 'label')
    lines = table.splitlines()
    assert lines[0].split() == ['metric', 'raw', 'refined', 'delta', 'label']
    assert lines[2].split() == ['PQ', '40.00', '41.50', '+1.50']
    assert lines[3].split() == ['AP', '30.00', '29.00', '-1.00']
    flat = collect({'panoptic_seg': {'PQ': 50.0, 'other': 1.0},
                    'segm': {'AP': 20.0, 'APs': float('nan')}, 'bbox': {'AP75': 3.0}})
    assert flat == {'PQ': 50.0, 'AP': 20.0}        # NaN and unlisted groups / keys left out


def test_setup_cfg_merges_in_order(tmp_path, cascadepsp_weights):
    overlay = tmp_path / 'overlay.yaml'
    overlay.write_text('INPUT:\n  MIN_SIZE_TEST: 64\nMODEL:\n  SEGREFINE:\n    MIN_AREA: 7\n')
    assert resolve_config_file(str(overlay)) == str(overlay)
    cfg = setup_cfg([ZOO, str(overlay)], ['INPUT.MIN_SIZE_TEST', '80'], weights='w.pkl',
                    device='cpu')
    assert cfg.is_frozen()
    assert cfg.MODEL.META_ARCHITECTURE == 'PanopticFPN'             # from the zoo file
    assert cfg.MODEL.SEGREFINE.MIN_AREA == 7                         # overlay after the zoo
    assert cfg.INPUT.MIN_SIZE_TEST == 80                             # opts last
    assert (cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE) == ('w.pkl', 'cpu')
    # integers for float keys (yacs alone refuses them: 'Type mismatch'), ours and
    # detectron2's; ints stay ints, booleans and strings are left alone
    cfg = setup_cfg([ZOO], ['MODEL.SEGREFINE.GATE_MIN_CHANGE_DEPTH', '2',
                            'MODEL.SEGREFINE.GATE_TRUST_CHANGE_DEPTH', 4,
                            'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '1',
                            'MODEL.SEGREFINE.MIN_AREA', '3', 'MODEL.SEGREFINE.ENABLED', 'False'])
    seg = cfg.MODEL.SEGREFINE
    assert (seg.GATE_MIN_CHANGE_DEPTH, seg.GATE_TRUST_CHANGE_DEPTH) == (2.0, 4.0)
    assert isinstance(seg.GATE_MIN_CHANGE_DEPTH, float) and seg.MIN_AREA == 3
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 1.0 and seg.ENABLED is False
    with pytest.raises(AssertionError, match='Non-existent key'):   # yacs' own report
        setup_cfg([], ['MODEL.SEGREFINE.NO_SUCH', '2'])
    with pytest.raises(ValueError, match='neither a file nor a model-zoo config'):
        resolve_config_file('no/such_config.yaml')
    off = setup_cfg([ZOO], _opts(cascadepsp_weights) + ['MODEL.SEGREFINE.ENABLED', 'False'])
    with pytest.raises(ValueError, match='nothing to compare'):
        build_wrapped_model(off)


def test_config_extensions(tmp_path, monkeypatch):
    (tmp_path / 'my_project_ext.py').write_text(
        'def add(cfg):\n    cfg.MY_PROJECT_KEY = 3\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = setup_cfg([], extensions=['my_project_ext:add'])
    assert cfg.MY_PROJECT_KEY == 3
    sys.modules.pop('my_project_ext', None)
    with pytest.raises(ValueError, match='module:function'):
        apply_config_extension(None, 'nonsense')
    with pytest.raises(ValueError, match='cannot import'):
        apply_config_extension(None, 'no_such_module_xyz:add')
    with pytest.raises(ValueError, match="cannot import 'panopticfcn'"):
        apply_config_extension(None, 'PanopticFCN')              # alias, project not installed


def test_evaluators_follow_the_tasks(dataset, tmp_path):
    evs = build_evaluators(dataset, str(tmp_path))
    assert sorted(evs) == ['panoptic', 'segm']
    assert sorted(build_evaluators(dataset, str(tmp_path), ('segm',))) == ['segm']
    with pytest.raises(ValueError, match='neither a panoptic json'):
        build_evaluators(dataset, str(tmp_path), ('bbox',))


def test_evaluate_ground_truth_scores_100(dataset, cascadepsp_weights, tmp_path):
    """The loop with the ground truth as the model: raw PQ / AP 100, the refined column
    evaluated from the same forward, nothing NaN."""
    cfg = setup_cfg([], _opts(cascadepsp_weights))
    model = wrap_model(GroundTruthModel(), build_refiner_from_cfg(cfg)).eval()
    res = evaluate(model, dataset, cfg, str(tmp_path), progress=False)
    assert res['images'] == 2 and res['processes'] == 1
    assert res['seconds_model'] >= 0 and res['seconds_refine'] > 0
    for key in ('PQ', 'PQ_th', 'PQ_st', 'SQ', 'RQ', 'AP', 'AP50'):
        assert res['raw'][key] == pytest.approx(100.0), key
        assert 0.0 <= res['refined'][key] <= 100.0 and not math.isnan(res['refined'][key])
    only_pq = evaluate(model, dataset, cfg, str(tmp_path / 'pq'), ('panoptic',), progress=False)
    assert 'AP' not in only_pq['raw'] and only_pq['raw']['PQ'] == pytest.approx(100.0)


def test_ground_truth_model_needs_panoptic_inputs():
    with pytest.raises(ValueError, match='pan_seg_file_name'):
        GroundTruthModel()([{'image': torch.zeros(3, 4, 4)}])


def test_settings_need_a_dataset():
    with pytest.raises(ValueError, match='--dataset'):
        EvalSettings().register()
    assert EvalSettings(dataset='coco_2017_val_panoptic_separated').register() == \
        'coco_2017_val_panoptic_separated'


def _toy_panoptic():
    """A 64x64 id map: stuff 2 everywhere, a thing 1 (a 24x24 square with a 1-px tail)."""
    ids = np.full((64, 64), 2, np.int32)
    ids[20:44, 20:44] = 1
    ids[44:60, 31] = 1
    infos = [{'id': 1, 'isthing': True, 'category_id': 1},
             {'id': 2, 'isthing': False, 'category_id': 2}]
    return ids, infos


def test_degrade_id_map_lowres_and_perturb():
    ids, infos = _toy_panoptic()
    thing = ids == 1

    def iou(a):
        return (a & thing).sum() / (a | thing).sum()

    low8 = degrade_id_map(ids, infos, 'lowres8')
    low2 = degrade_id_map(ids, infos, 'lowres2')
    assert low8.shape == ids.shape and low8.dtype == np.int32
    assert set(np.unique(low8)) <= {1, 2}
    assert not (low8[46:60, 31] == 1).any()          # the thin tail is lost at 8x
    assert 0.6 < iou(low8 == 1) < iou(low2 == 1) < 1.0
    assert np.array_equal(low8, degrade_id_map(ids, infos, 'lowres8'))   # deterministic
    per = degrade_id_map(ids, infos, 'perturb', seed=3)
    assert np.array_equal(per, degrade_id_map(ids, infos, 'perturb', seed=3))
    assert 0.5 < iou(per == 1) < 1.0 and set(np.unique(per)) <= {1, 2}
    assert parse_degrade(None) is None and parse_degrade('lowres16') == ('lowres', 16)
    assert parse_degrade('lowres4soft') == ('lowres_soft', 4)
    assert np.array_equal(degrade_id_map(ids, infos, 'lowres8soft'), low8)
    for bad in ('lowres1', 'lowres', 'blur', 'perturb2', 'lowres8hard', 'soft8'):
        with pytest.raises(ValueError, match='lowresN'):
            parse_degrade(bad)
    with pytest.raises(ValueError, match='lowresN'):
        GroundTruthModel('low8')


def test_ground_truth_model_soft_degrade_gives_float_instance_masks(dataset):
    """lowresNsoft: the same panoptic output as lowresN; instances carry the things'
    up-sampled scores as float probabilities (what SOFT_COARSE reads)."""
    from detectron2.data import DatasetCatalog

    inp = dict(DatasetCatalog.get(dataset)[0])
    hard = GroundTruthModel('lowres8')([inp])[0]
    soft = GroundTruthModel('lowres8soft')([inp])[0]
    assert torch.equal(hard['panoptic_seg'][0], soft['panoptic_seg'][0])
    assert hard['panoptic_seg'][1] == soft['panoptic_seg'][1]
    masks = soft['instances'].pred_masks
    assert masks.dtype == torch.float32 and len(masks) == len(hard['instances']) >= 1
    assert 0 <= float(masks.min()) and float(masks.max()) <= 1
    assert ((masks > 0) & (masks < 1)).any()              # soft boundaries
    assert ((masks > 0.5) == hard['instances'].pred_masks).float().mean() > 0.99
    # things point at their instance (PanopticFPN's instance_id), stuff probabilities sit in
    # sem_seg channel category_id: the soft sources the wrapper reads for panoptic segments
    infos, ids = soft['panoptic_seg'][1], soft['panoptic_seg'][0].numpy()
    things = [s for s in infos if s['isthing']]
    assert [s['instance_id'] for s in things] == list(range(len(things)))
    for s in things:
        inside = ids == s['id']
        assert float(masks[s['instance_id']][torch.from_numpy(inside)].mean()) > 0.5
    assert 'sem_seg' not in hard
    sem = soft['sem_seg']
    assert sem.dim() == 3 and tuple(sem.shape[1:]) == ids.shape
    assert 0 <= float(sem.min()) and float(sem.max()) <= 1
    stuff = [s for s in infos if not s['isthing']]
    assert stuff
    for s in stuff:
        assert float(sem[s['category_id']][torch.from_numpy(ids == s['id'])].mean()) > 0.5


def test_evaluate_float_masks_are_scored_as_binarised(dataset, cascadepsp_weights, tmp_path):
    """lowres8soft gives float pred_masks: the raw AP must be that of the masks > 0.5 (as
    detectron2's evaluator would truncate probabilities to 0), the same as lowres8's up to
    the threshold-vs-argmax difference."""
    res = {}
    for kind, soft in (('lowres8', False), ('lowres8soft', False)):
        cfg = setup_cfg([], _opts(cascadepsp_weights) + ['MODEL.SEGREFINE.SOFT_COARSE', soft])
        model = wrap_model(GroundTruthModel(kind), build_refiner_from_cfg(cfg),
                           **wrapper_options(cfg)).eval()
        res[kind, soft] = evaluate(model, dataset, cfg, str(tmp_path / f'{kind}{soft}'),
                                   progress=False)
    hard, soft_in = res['lowres8', False]['raw']['AP'], res['lowres8soft', False]['raw']['AP']
    assert hard > 20 and abs(soft_in - hard) < 3


def test_evaluate_degraded_ground_truth_counts_the_gate(dataset, cascadepsp_weights, tmp_path):
    """--gt-degrade lowres8: the raw column is below 100; the gate's counters reach the result
    (off: nothing gated; GATE_MIN_IOU 1.0 keeps coarse every refined segment that changed)."""
    res = {}
    for gate in ('-1.0', '1.0'):
        cfg = setup_cfg([], _opts(cascadepsp_weights) + ['MODEL.SEGREFINE.GATE_MIN_IOU', gate])
        model = wrap_model(GroundTruthModel('lowres8'), build_refiner_from_cfg(cfg),
                           **wrapper_options(cfg)).eval()
        res[gate] = evaluate(model, dataset, cfg, str(tmp_path / gate), progress=False)
    assert res['-1.0']['raw']['PQ'] < 99.0 and res['-1.0']['raw'] == res['1.0']['raw']
    assert res['-1.0']['segments_refined'] >= 4 and res['-1.0']['segments_gated'] == 0
    assert res['1.0']['segments_refined'] == res['-1.0']['segments_refined']
    assert res['1.0']['segments_gated'] >= 1
