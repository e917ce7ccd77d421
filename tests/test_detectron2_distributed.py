"""Distributed detectron2 evaluation with the SegRefine wrapper: 2 CPU processes (gloo)
through torchrun and through detectron2-style ``--num-gpus``, metrics equal to 1 process;
the launcher's argument checks."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_module

require_module('detectron2')
require_module('panopticapi', 'detectron2')
pytestmark = pytest.mark.detectron2

import torch  # noqa: E402

from segrefine_plugins.detectron2.datasets import make_ecssd_dataset  # noqa: E402
from segrefine_plugins.detectron2.distributed import (backend_for, init_from_env,  # noqa: E402
                                                      launch, unwrap_parallel)
from segrefine_plugins.detectron2.evaluation import EvalSettings, setup_cfg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'eval_detectron2.py'
ZOO = 'COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml'
#: a real PanopticFPN (1 thing + 1 stuff class) at 96 px; random weights, so keep low-scored
#: things and damp the random box regressions
MODEL_OPTS = [
    'MODEL.DEVICE', 'cpu', 'INPUT.MIN_SIZE_TEST', '96', 'INPUT.MAX_SIZE_TEST', '128',
    'MODEL.ROI_HEADS.NUM_CLASSES', '1', 'MODEL.SEM_SEG_HEAD.NUM_CLASSES', '2',
    'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'TEST.DETECTIONS_PER_IMAGE', '2',
    'MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH', '0.0',
    'MODEL.RPN.BBOX_REG_WEIGHTS', '(100.0, 100.0, 100.0, 100.0)',
    'MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS', '(100.0, 100.0, 100.0, 100.0)']
NUM_IMAGES = 4


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env.pop('WORLD_SIZE', None)
    return env


def _run(cmd, timeout=900):
    proc = subprocess.run(cmd, cwd=str(REPO), env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{cmd}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n' \
                                 f'{proc.stderr[-6000:]}'
    return proc


def _torchrun(nproc):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone',
            '--nproc_per_node', str(nproc)]


@pytest.fixture(scope='module')
def setup(data_root, cascadepsp_weights, tmp_path_factory):
    """The dataset, the model's weights (seeded random init, saved once, so that every process
    holds the same model) and the tool's arguments."""
    root = tmp_path_factory.mktemp('d2dist')
    paths = make_ecssd_dataset(str(data_root), str(root / 'data'), num=NUM_IMAGES, size=96)
    cfg = setup_cfg([ZOO], MODEL_OPTS)
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    weights = root / 'panoptic_fpn_random.pth'
    torch.save({'model': build_model(cfg).state_dict()}, weights)
    refiner = ['MODEL.SEGREFINE.REFINER.TYPE', 'CascadePSP',
               'MODEL.SEGREFINE.REFINER.CHECKPOINT', str(cascadepsp_weights),
               'MODEL.SEGREFINE.REFINER.L', '96', 'MODEL.SEGREFINE.REFINER.FAST', 'True']
    settings = EvalSettings(config_files=[ZOO], opts=MODEL_OPTS + refiner, weights=str(weights),
                            image_root=paths['image_root'], panoptic_json=paths['panoptic_json'],
                            panoptic_root=paths['panoptic_root'],
                            instances_json=paths['instances_json'], progress=False)
    args = ['--config-file', ZOO, '--weights', str(weights), '--no-progress',
            '--image-root', paths['image_root'], '--panoptic-json', paths['panoptic_json'],
            '--panoptic-root', paths['panoptic_root'], '--instances-json',
            paths['instances_json']]
    return dict(root=root, settings=settings, args=args, opts=MODEL_OPTS + refiner)


def _tool(setup, launcher, out, extra=()):
    _run(launcher + [str(TOOL), *setup['args'], '--output', str(out), *extra, *setup['opts']])
    return json.loads((out / 'results.json').read_text())


def _same_metrics(a, b):
    assert a.keys() == b.keys() and {'PQ', 'PQ_th', 'PQ_st', 'AP'} <= set(a)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-9), key


@pytest.mark.slow
def test_two_processes_equal_one(setup):
    """A real PanopticFPN through the tool in 1 process and under torchrun with 2 gloo
    processes: the same raw and refined PQ / AP. The standard detectron2 flow
    (inference_on_dataset + DatasetEvaluators on a DDP-wrapped SegRefineWrapper) under torchrun
    gives the refined numbers too, each rank running its own shard."""
    root = setup['root']
    one = _tool(setup, [sys.executable], root / 'one')
    assert one['processes'] == 1 and one['images'] == NUM_IMAGES
    # the refiner changed something on these random-model outputs (else the test proves little)
    assert one['raw'] != one['refined']

    two = _tool(setup, _torchrun(2), root / 'torchrun')
    assert two['processes'] == 2
    for tag in ('raw', 'refined'):
        _same_metrics(two[tag], one[tag])

    settings = root / 'settings.json'
    settings.write_text(json.dumps(dataclasses.asdict(setup['settings'])))
    out = root / 'd2flow'
    out.mkdir()
    _run(_torchrun(2) + [str(REPO / 'tests' / '_d2_ddp_eval.py'), str(settings), str(out)])
    d2 = json.loads((out / 'metrics.json').read_text())
    assert d2.pop('world_size') == 2
    shards = d2.pop('images')
    assert len(shards) == 2 and all(shards)                     # both ranks ran images
    assert sorted(i for s in shards for i in s) == list(range(1, NUM_IMAGES + 1))
    _same_metrics(d2, one['refined'])


@pytest.mark.slow
def test_num_gpus_on_cpu_equals_one_process(setup):
    """detectron2-style ``--num-gpus 2`` with MODEL.DEVICE cpu: 2 gloo processes. The ground
    truth as the model: raw PQ and mask AP must read 100 (a rank that evaluated only its own
    shard would miss half the objects), refined equal to the 1-process run."""
    root = setup['root']
    gt = ['--gt-as-prediction']
    one = _tool(setup, [sys.executable], root / 'gt_one', gt)
    two = _tool(setup, [sys.executable], root / 'gt_spawn', gt + ['--num-gpus', '2'])
    assert (one['processes'], two['processes']) == (1, 2)
    for key in ('PQ', 'PQ_th', 'PQ_st', 'AP', 'AP50'):
        assert one['raw'][key] == two['raw'][key] == pytest.approx(100.0), key
    assert 0.0 < one['refined']['AP'] < 100.0                  # refinement moved the masks
    for tag in ('raw', 'refined'):
        _same_metrics(two[tag], one[tag])


def test_backend_and_argument_checks():
    assert backend_for('cpu') == 'gloo' and backend_for('cuda:1') == 'nccl'
    with pytest.raises(ValueError, match='num_processes'):
        launch(print, 0, device='cpu')
    with pytest.raises(ValueError, match='machine_rank'):
        launch(print, 1, num_machines=2, machine_rank=2, device='cpu')
    with pytest.raises(ValueError, match="dist_url='auto'"):
        launch(print, 2, num_machines=2, machine_rank=0, device='cpu')
    seen = []
    launch(seen.append, 1, args=('ran here',), device='cpu')   # 1 process: no group
    assert seen == ['ran here']
    model = torch.nn.Linear(2, 2)
    assert unwrap_parallel(torch.nn.DataParallel(model)) is model
    assert unwrap_parallel(model) is model


def test_init_from_env_single_process_and_bad_env(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert init_from_env('cpu') is False
    monkeypatch.setenv('WORLD_SIZE', '1')
    assert init_from_env('cpu') is False
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.delenv('RANK', raising=False)
    with pytest.raises(ValueError, match='torchrun'):
        init_from_env('cpu')
