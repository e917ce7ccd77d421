"""SegRefineHook in mmengine's real Runner / test loop, the shipped config fragment and configs."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import missing
from _mmseg_support import (REFINE_CFG, REPO, TTA_PIPELINE, RecordPredictions, build_tiny_model,
                            cascadepsp_cfg, one_torch_thread, run_test, runner_cfg,
                            save_checkpoint, set_root, tiny_model_cfg)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from segrefine_plugins.io import read_image  # noqa: E402
from segrefine_plugins.mmseg import (RefinedSegmentor, SegRefineHook,  # noqa: E402
                                     build_mmseg_refiner)
from segrefine_plugins.mmseg.metric import class_counts  # noqa: E402
from segrefine_plugins.models.checkpoint import read_state_dict  # noqa: E402
from segrefine_plugins.multiobject import refine_label_map  # noqa: E402

pytestmark = pytest.mark.mmseg

_FIXTURES = (set_root, cascadepsp_cfg, one_torch_thread)  # fixtures used below
HOOK_PATH = 'segrefine_plugins.mmseg.SegRefineHook'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return save_checkpoint(build_tiny_model(), tmp_path_factory.mktemp('ckpt') / 'tiny.pth')


@pytest.fixture(scope='module')
def coarse_run(tmp_path_factory, set_root, checkpoint):
    """The test loop with the fragment but no refiner entry."""
    return run_test(runner_cfg(tmp_path_factory.mktemp('coarse'), set_root, checkpoint))


def labels(sample, field='pred_sem_seg'):
    return getattr(sample, field).data.squeeze().cpu().numpy()


def dataset_miou(samples, field='pred_sem_seg'):
    inter = union = 0
    for s in samples:
        i, u = class_counts(labels(s, 'gt_sem_seg'), labels(s, field), 2, 255)
        inter, union = inter + i, union + u
    return round(100 * float(np.nanmean(np.where(union > 0, inter / np.maximum(union, 1),
                                                 np.nan))), 2)


def test_no_refiner_leaves_the_test_loop_bit_identical(tmp_path, set_root, checkpoint, coarse_run):
    metrics_none, rec_none = coarse_run
    # no hook at all (plain mmseg) vs the hook with refiner = None
    plain_cfg = runner_cfg(tmp_path, set_root, checkpoint, custom_hooks=[])
    metrics_plain, rec_plain = run_test(plain_cfg)
    explicit_none, rec_explicit = run_test(runner_cfg(tmp_path, set_root, checkpoint, refiner=None))
    assert metrics_none == metrics_plain == explicit_none
    for a, b, c in zip(rec_plain.samples, rec_none.samples, rec_explicit.samples):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert torch.equal(a.pred_sem_seg.data, c.pred_sem_seg.data)
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert 'coarse_sem_seg' not in b


def refined_run(tmp: Path, set_root: Path, checkpoint: Path, refiner: dict):
    """(config, metrics, recorder) of the test loop with ``refiner`` and the tiny options."""
    cfg = runner_cfg(tmp, set_root, checkpoint, refiner=refiner, refine_cfg=REFINE_CFG)
    return (cfg, *run_test(cfg))


@pytest.fixture(scope='module')
def cascadepsp_run(tmp_path_factory, set_root, checkpoint, cascadepsp_cfg):
    return refined_run(tmp_path_factory.mktemp('refined'), set_root, checkpoint, cascadepsp_cfg)


@pytest.mark.parametrize('kind', ['cascadepsp', 'crm'])
def test_refined_labels_reach_the_evaluator(kind, request, tmp_path, set_root, checkpoint,
                                            coarse_run):
    if kind == 'cascadepsp':
        cfg, metrics, recorder = request.getfixturevalue('cascadepsp_run')
    else:
        crm = dict(type='CRMRefiner', checkpoint=str(request.getfixturevalue('crm_weights')))
        cfg, metrics, recorder = refined_run(tmp_path, set_root, checkpoint, crm)
    metrics_coarse, rec_coarse = coarse_run
    assert not isinstance(recorder.runner.model, RefinedSegmentor)  # put back after the loop
    built = build_mmseg_refiner(cfg.refiner)
    changed = 0
    for coarse, sample in zip(rec_coarse.samples, recorder.samples):
        assert torch.equal(sample.coarse_sem_seg.data, coarse.pred_sem_seg.data)
        expected = refine_label_map(read_image(sample.img_path), labels(coarse), built,
                                    **REFINE_CFG).labels
        np.testing.assert_array_equal(labels(sample), expected)
        changed += int((labels(sample) != labels(coarse)).any())
    assert changed > 0
    # the evaluators scored exactly the refined labels, and they changed the score
    assert metrics['mIoU'] == dataset_miou(recorder.samples)
    assert metrics_coarse['mIoU'] == dataset_miou(rec_coarse.samples, 'pred_sem_seg')
    assert metrics['mIoU'] != metrics_coarse['mIoU']
    assert metrics['boundary/mIoU'] == metrics['mIoU']
    assert metrics['boundary/mBA'] != metrics_coarse['boundary/mBA']


def test_tta_model_is_refined_after_merging(tmp_path, set_root, checkpoint, cascadepsp_cfg):
    def tta_cfg(**entries):
        # what mmseg's tools/test.py --tta does to a config
        cfg = runner_cfg(tmp_path, set_root, checkpoint, **entries)
        cfg.test_dataloader.dataset.pipeline = TTA_PIPELINE
        cfg.model = dict(type='SegTTAModel', module=tiny_model_cfg())
        return cfg

    _, coarse = run_test(tta_cfg())
    metrics, refined = run_test(tta_cfg(refiner=cascadepsp_cfg, refine_cfg=REFINE_CFG))
    built = build_mmseg_refiner(cascadepsp_cfg)
    for c, r in zip(coarse.samples, refined.samples):
        assert torch.equal(r.coarse_sem_seg.data, c.pred_sem_seg.data)
        expected = refine_label_map(read_image(r.img_path), labels(c), built, **REFINE_CFG).labels
        np.testing.assert_array_equal(labels(r), expected)
    assert metrics['mIoU'] == dataset_miou(refined.samples)


def test_validation_refined_only_when_asked(tmp_path, set_root, checkpoint, cascadepsp_cfg):
    def train(hooks):
        cfg = runner_cfg(tmp_path, set_root, checkpoint, refiner=cascadepsp_cfg,
                         refine_cfg=REFINE_CFG, custom_hooks=hooks)
        train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                          dict(type='Resize', scale=(64, 64), keep_ratio=False),
                          dict(type='PackSegInputs')]
        cfg.train_dataloader = dict(
            batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset={**cfg.test_dataloader.dataset, 'pipeline': train_pipeline})
        cfg.val_dataloader = cfg.test_dataloader
        cfg.val_evaluator = cfg.test_evaluator
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
        cfg.val_cfg = dict(type='ValLoop')
        cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))
        cfg.default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                                 by_epoch=False, save_best='mIoU'))
        cfg.randomness = dict(seed=0)
        runner = Runner.from_cfg(cfg)
        recorder = RecordPredictions()
        runner.register_hook(recorder, priority='LOWEST')
        runner.train()
        assert not isinstance(runner.model, RefinedSegmentor)
        return runner, recorder

    runner, val_refined = train([dict(type='SegRefineHook', val=True)])
    _, val_plain = train([dict(type='SegRefineHook')])  # test only: validation stays coarse
    assert all('coarse_sem_seg' in s for s in val_refined.samples)
    assert not any('coarse_sem_seg' in s for s in val_plain.samples)
    for p, r in zip(val_plain.samples, val_refined.samples):
        assert torch.equal(r.coarse_sem_seg.data, p.pred_sem_seg.data)
    # the best checkpoint was saved while the model was wrapped: it is a plain segmentor's
    best = sorted(Path(runner.work_dir).glob('best_mIoU*.pth'))
    assert best, 'no best checkpoint saved'
    state = read_state_dict(best[0])   # the package's loader: weights_only=True
    build_tiny_model().load_state_dict(state, strict=True)


@pytest.mark.parametrize('entries, match', [
    (dict(refiner=dict(type='NoSuchRefiner', checkpoint='x.pth')), 'unknown refiner type'),
    (dict(refiner=dict(type='CascadePSPRefiner', checkpoint='missing/cascadepsp.pth')),
     'checkpoint file not found'),
    (dict(refiner='CascadePSPRefiner'), 'must be a dict'),
    (dict(refine_cfg=dict(min_aera=3)), 'bad refine_cfg'),
    (dict(refine_cfg=dict(min_area=-3)), 'min_area'),
])
def test_bad_entries_fail_before_anything_is_loaded(entries, match, tmp_path, set_root,
                                                    cascadepsp_cfg):
    entries.setdefault('refiner', cascadepsp_cfg)
    # load_from does not exist: the refiner error must come first
    cfg = runner_cfg(tmp_path, set_root, tmp_path / 'no_such_checkpoint.pth', **entries)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=match):
        runner.test()


def test_shipped_configs_resolve():
    from mmseg.datasets import ADE20KDataset, CityscapesDataset, PascalVOCDataset
    from mmseg.registry import METRICS
    runtime = Config.fromfile(str(REPO / 'configs' / '_base_' / 'segrefine_runtime.py'))
    # no custom_imports (it would clash with a config's own): the hook's import path
    assert 'custom_imports' not in runtime
    assert [h['type'] for h in runtime.custom_hooks] == [HOOK_PATH]
    from mmseg.registry import HOOKS
    assert HOOKS.get(HOOK_PATH) is SegRefineHook
    # ADE20K stuff list (the published 35, REFERENCE.md section 4) against mmseg's class names
    ade_stuff = {'wall', 'building', 'sky', 'floor', 'ceiling', 'road', 'grass', 'sidewalk',
                 'earth', 'mountain', 'water', 'house', 'sea', 'rug', 'field', 'sand',
                 'skyscraper', 'grandstand', 'path', 'runway', 'stairway', 'river', 'bridge',
                 'hill', 'hovel', 'tower', 'dirt track', 'land', 'escalator', 'stage',
                 'conveyer belt', 'swimming pool', 'waterfall', 'lake', 'pier'}
    datasets = {'ade20k': (ADE20KDataset, ade_stuff),
                'cityscapes': (CityscapesDataset, {'road', 'sidewalk', 'building', 'wall',
                                                   'fence', 'pole', 'traffic light',
                                                   'traffic sign', 'vegetation', 'terrain',
                                                   'sky'}),
                'voc12aug': (PascalVOCDataset, {'background'})}
    files = sorted((REPO / 'configs' / 'mmseg').glob('*_cascadepsp.py')) + sorted(
        (REPO / 'configs' / 'mmseg').glob('*_crm.py'))
    assert len(files) == 12
    for path in files:
        cfg = Config.fromfile(str(path))
        assert cfg.model.type == 'EncoderDecoder'
        assert cfg.refiner.type in ('CascadePSPRefiner', 'CRMRefiner')
        assert cfg.test_evaluator.type == 'BoundaryMetric'  # merged over IoUMetric's entry
        METRICS.build(cfg.test_evaluator)
        assert [h['type'] for h in cfg.custom_hooks] == [HOOK_PATH]
        key = next(k for k in datasets if k in path.name)
        dataset, stuff = datasets[key]
        names = [n.strip() for n in dataset.METAINFO['classes']]
        assert {names[i] for i in cfg.refine_cfg.stuff_classes} == stuff, path.name
        assert len(cfg.refine_cfg.stuff_classes) == len(stuff)
        assert cfg.model.decode_head.num_classes == len(names)


@pytest.mark.slow
def test_mmseg_tools_test_reports_refined_metrics(tmp_path, checkpoint, cascadepsp_run,
                                                  coarse_run):
    """mmseg's own tools/test.py (shipped in mmseg/.mim/tools) on a config made with the
    fragment, as a user runs it: it reports the refined metrics of the in-process run."""
    import mmseg
    script = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'test.py'
    if not script.is_file():
        missing('mmseg', f'mmseg was installed without its tools ({script})')
    cfg, in_process, _ = cascadepsp_run
    cfg = copy.deepcopy(cfg)
    cfg.log_level = 'INFO'  # tools/test.py reports the metrics in the log
    cfg_path = tmp_path / 'refined_cfg.py'
    cfg.dump(str(cfg_path))
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])}
    out = subprocess.run([sys.executable, str(script), str(cfg_path), str(checkpoint),
                          '--work-dir', str(tmp_path / 'tools_test')],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    found = re.findall(r'(?<![/\w])mIoU: ([0-9.]+)', log)
    assert found, log[-3000:]
    assert float(found[-1]) == in_process['mIoU'] != coarse_run[0]['mIoU']


def test_a_refining_model_is_recognised_alone_and_inside_tta():
    """The hook's "no refiner configured" log is not given when the model refines itself:
    RefinedSegmentor alone or inside mmseg's SegTTAModel."""
    from mmseg.models import SegTTAModel
    from segrefine_plugins.mmseg.hook import _refining_model

    plain = build_tiny_model()
    refined = RefinedSegmentor(build_tiny_model(), None)
    assert not _refining_model(plain) and _refining_model(refined)
    assert _refining_model(SegTTAModel(module=refined))
    assert not _refining_model(SegTTAModel(module=build_tiny_model()))


def test_unknown_class_names_fail_before_the_checkpoint_loads(tmp_path, set_root,
                                                               cascadepsp_cfg):
    """refine_cfg class names are checked against the built test loop's dataset in
    before_run: the error names the class, although load_from does not even exist (it would
    be the next thing to fail)."""
    cfg = runner_cfg(tmp_path, set_root, tmp_path / 'missing.pth', refiner=cascadepsp_cfg,
                     refine_cfg=dict(REFINE_CFG, stuff_classes=['sky']))
    with pytest.raises(ValueError, match="'sky' is not a class of this dataset"):
        Runner.from_cfg(cfg).test()
