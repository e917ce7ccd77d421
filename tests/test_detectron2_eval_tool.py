"""tools/eval_detectron2.py (the command line) on a tiny COCO-panoptic dataset made from ECSSD.

The package functions it calls are tested in test_detectron2_evaluation.py,
test_detectron2_datasets.py and test_detectron2_distributed.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import load_tool, require_module

require_module('detectron2')
require_module('panopticapi', 'detectron2')
pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[1]


def _load_tool():
    return load_tool('eval_detectron2.py')


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


def test_command_line_errors(dataset, monkeypatch):
    with pytest.raises(SystemExit, match='--config-file is required'):
        tool.main(['--image-root', dataset['image_root']])
    with pytest.raises(SystemExit, match='--dataset NAME'):
        tool.main(['--gt-as-prediction'])
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(SystemExit, match='torchrun'):
        tool.main(['--gt-as-prediction', *_dataset_args(dataset), '--num-gpus', '2'])
    args = tool.parse_args(['--num-gpus', '2', '--num-machines', '2', '--machine-rank', '1',
                            '--dist-url', 'tcp://10.0.0.1:29500', 'MODEL.DEVICE', 'cpu'])
    assert (args.num_gpus, args.num_machines, args.machine_rank, args.dist_url) == \
        (2, 2, 1, 'tcp://10.0.0.1:29500')
    assert args.opts == ['MODEL.DEVICE', 'cpu']
    settings = tool.settings_from_args(tool.parse_args(
        ['--refiner', 'r.py', '--tasks', 'segm,', 'A.B', '1']))
    r = 'MODEL.SEGREFINE.REFINER.'
    assert settings.opts == [r + 'CONFIG', 'r.py', r + 'TYPE', '', r + 'CHECKPOINT', '',
                             r + 'L', '0', r + 'FAST', 'False', r + 'SCALES', '[]',
                             r + 'PRECISION', 'fp32', r + 'DEVICE', '', 'A.B', '1']
    assert settings.tasks == ['segm']


def test_refiner_file_decides_over_an_overlay_yaml(tmp_path):
    """--refiner FILE with a shipped overlay: the file's type and options win over the
    overlay's TYPE / L (they were silently dropped, or refused for the other type); KEY VALUE
    overrides typed after still apply; a TYPE contradicting the file is a clear error."""
    from segrefine_plugins.detectron2.config import refiner_config
    from segrefine_plugins.detectron2.evaluation import setup_cfg

    psp = tmp_path / 'psp.py'
    psp.write_text("refiner = dict(type='CascadePSP', checkpoint='w.pth', L=320, fast=True)\n")
    crm = tmp_path / 'crm.py'
    crm.write_text("refiner = dict(type='CRM', work_scale=2.0)\n")
    overlays = REPO / 'configs' / 'detectron2'
    for overlay, file, want in (
            ('panoptic_fpn_cascadepsp.yaml', psp,
             {'type': 'CascadePSP', 'checkpoint': 'w.pth', 'L': 320, 'fast': True}),
            ('panoptic_fpn_crm.yaml', psp,
             {'type': 'CascadePSP', 'checkpoint': 'w.pth', 'L': 320, 'fast': True}),
            ('panoptic_fpn_cascadepsp.yaml', crm, {'type': 'CRM', 'work_scale': 2.0})):
        settings = tool.settings_from_args(tool.parse_args(
            ['--config-file', str(overlays / overlay), '--refiner', str(file),
             'MODEL.DEVICE', 'cpu']))
        cfg = setup_cfg(settings.config_files, settings.opts)
        assert refiner_config(cfg.MODEL.SEGREFINE) == dict(want, device='cpu'), overlay
    settings = tool.settings_from_args(tool.parse_args(
        ['--config-file', str(overlays / 'panoptic_fpn_cascadepsp.yaml'), '--refiner', str(psp),
         'MODEL.SEGREFINE.REFINER.L', '96']))
    cfg = setup_cfg(settings.config_files, settings.opts)
    assert refiner_config(cfg.MODEL.SEGREFINE)['L'] == 96
    cfg = setup_cfg([str(overlays / 'panoptic_fpn_crm.yaml')],
                    ['MODEL.SEGREFINE.REFINER.CONFIG', str(psp)])
    with pytest.raises(ValueError, match='contradicts the type'):
        refiner_config(cfg.MODEL.SEGREFINE)
