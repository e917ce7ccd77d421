"""mmseg's own tools/test.py as users run it (--out, --show-dir, --tta, --launcher pytorch
under torchrun), and the runtime fragment composed with a config's own custom_imports.

The tools run in subprocesses on config files written as a user writes them (``_base_``
with mmseg's default runtime, a user base that has its own ``custom_imports``, and the
shipped fragment), so the fragment's way of importing the adapter is what registers it there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from _mmseg_support import (REFINE_CFG, REPO, RUNTIME_FRAGMENT, TTA_PIPELINE, build_tiny_model,
                            cascadepsp_cfg, dataset_cfg, one_torch_thread, run_test,
                            runner_cfg, save_checkpoint, set_root, tiny_model_cfg)

import cv2  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from segrefine_plugins.io import read_image  # noqa: E402
from segrefine_plugins.mmseg import build_mmseg_refiner  # noqa: E402
from segrefine_plugins.multiobject import refine_label_map  # noqa: E402

pytestmark = pytest.mark.mmseg

_FIXTURES = (set_root, cascadepsp_cfg, one_torch_thread)  # fixtures used below

#: a user's plug-in module (stands for the user's own registered code), imported by the
#: user's own custom_imports
USER_PLUGIN = "IMPORTED = True\nprint('[user plugin imported]')\n"
PLUGIN_MARK = '[user plugin imported]'

#: what a CPU-only machine needs under torchrun (on GPUs mmseg's defaults are right)
CPU_DDP_OPTIONS = ['env_cfg.dist_cfg.backend=gloo', 'model_wrapper_cfg.type=MMDistributedDataParallel',
                   'model_wrapper_cfg.device_ids=None', 'model_wrapper_cfg.broadcast_buffers=False']


def mmseg_tool(name: str) -> Path:
    import mmseg
    script = Path(mmseg.__file__).parent / '.mim' / 'tools' / name
    if not script.is_file():
        pytest.skip(f'mmseg was installed without its tools ({script})')
    return script


def write_user_project(folder: Path, plugin: str = 'user_plugin') -> None:
    """``<plugin>.py`` and ``user_base.py`` (whose custom_imports imports it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{plugin}.py').write_text(USER_PLUGIN)
    (folder / 'user_base.py').write_text(
        f"custom_imports = dict(imports=[{plugin!r}], allow_failed_imports=False)\n")


def config_text(set_root: Path, bases: List[str], evaluator: Any,
                **entries: Any) -> str:
    """A user's config file: ``bases`` + the tiny model and set + ``entries``."""
    values: Dict[str, Any] = dict(
        log_level='INFO',
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        test_dataloader=dict(batch_size=2, num_workers=0, persistent_workers=False,
                             sampler=dict(type='DefaultSampler', shuffle=False),
                             dataset=dataset_cfg(set_root)),
        test_evaluator=evaluator,
        test_cfg=dict(type='TestLoop'),
        tta_pipeline=TTA_PIPELINE,
        # draw every image (mmseg's default: every 50th) for --show-dir
        default_hooks=dict(visualization=dict(type='SegVisualizationHook', interval=1)))
    values = {'model': tiny_model_cfg(), **values, **entries}
    lines = [f'_base_ = {bases!r}']
    lines += [f'{key} = {value!r}' for key, value in values.items()]
    return '\n'.join(lines) + '\n'


def write_config(folder: Path, name: str, set_root: Path, evaluator: Any = None,
                 bases: Optional[List[str]] = None, plugin: str = 'user_plugin',
                 **entries: Any) -> Path:
    """``folder/name``; by default it composes mmseg's runtime, the user's base (own
    custom_imports of ``plugin``) and the shipped fragment."""
    write_user_project(folder, plugin)
    if bases is None:
        bases = ['mmseg::_base_/default_runtime.py', './user_base.py', str(RUNTIME_FRAGMENT)]
    path = folder / name
    path.write_text(config_text(set_root, bases, evaluator or dict(type='BoundaryMetric'),
                                **entries))
    return path


def tool_env(folder: Path) -> dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1',
            'PYTHONPATH': os.pathsep.join([str(REPO), str(folder),
                                           os.environ.get('PYTHONPATH', '')])}


def run_tool(argv: List[str], folder: Path, timeout: int = 600) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, env=tool_env(folder),
                         cwd=str(folder), timeout=timeout)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def test_metrics(work_dir: Path) -> Dict[str, float]:
    """The metrics the test loop logged as JSON under ``work_dir`` (rank 0 writes them)."""
    files = sorted(work_dir.glob('*/*.json'))
    assert files, f'no metrics json under {work_dir}'
    record = json.loads(files[-1].read_text().splitlines()[-1])
    return {k: v for k, v in record.items() if k not in ('data_time', 'time', 'step')}


test_metrics.__test__ = False  # a helper, not a test


def read_pngs(folder: Path) -> Dict[str, np.ndarray]:
    return {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob('*.png'))}


def labels(sample, field='pred_sem_seg'):
    return getattr(sample, field).data.squeeze().cpu().numpy()


def by_name(samples) -> Dict[str, Any]:
    return {Path(s.img_path).stem: s for s in samples}


def refining_entries(how: str, refiner: dict) -> Dict[str, Any]:
    """Config entries that refine the test loop: a ``refiner`` entry (the fragment's hook
    wraps the model) or the model itself a RefinedSegmentor (by its import path)."""
    if how == 'hook':
        return dict(refiner=refiner, refine_cfg=REFINE_CFG)
    return dict(model=dict(type='segrefine_plugins.mmseg.RefinedSegmentor',
                           segmentor=tiny_model_cfg(), refiner=refiner, **REFINE_CFG))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return save_checkpoint(build_tiny_model(), tmp_path_factory.mktemp('ckpt') / 'tiny.pth')


@pytest.fixture(scope='module')
def in_process(tmp_path_factory, set_root, checkpoint, cascadepsp_cfg):
    """Reference runs in this process (1 process, no launcher): coarse, refined, refined
    TTA; each is (metrics, recorder) with BoundaryMetric as the single evaluator."""
    tmp = tmp_path_factory.mktemp('reference')
    single = dict(test_evaluator=dict(type='BoundaryMetric'))
    coarse = run_test(runner_cfg(tmp, set_root, checkpoint, **single))
    refined = run_test(runner_cfg(tmp, set_root, checkpoint, refiner=cascadepsp_cfg,
                                  refine_cfg=REFINE_CFG, **single))
    cfg = runner_cfg(tmp, set_root, checkpoint, refiner=cascadepsp_cfg, refine_cfg=REFINE_CFG,
                     **single)
    cfg.test_dataloader.dataset.pipeline = TTA_PIPELINE  # what tools/test.py --tta does
    cfg.model = dict(type='SegTTAModel', module=tiny_model_cfg())
    return dict(coarse=coarse, refined=refined, tta=run_test(cfg))


# --------------------------------------------------------------------------------------------
# the fragment with a config's own custom_imports, through mmengine's Config and the test loop
# --------------------------------------------------------------------------------------------
def _loop_refines(cfg: Config, tmp: Path, checkpoint: Path, cascadepsp_cfg: dict) -> dict:
    """The real test loop on ``cfg`` (+ the tiny run entries): returns the metrics after
    checking that every prediction was refined."""
    cfg.merge_from_dict(dict(work_dir=str(tmp / 'work'), load_from=str(checkpoint),
                             refiner=cascadepsp_cfg, refine_cfg=REFINE_CFG, log_level='WARNING'))
    metrics, recorder = run_test(cfg)
    assert recorder.samples and all('coarse_sem_seg' in s for s in recorder.samples)
    return metrics


@pytest.mark.parametrize('way', ['base_with_custom_imports', 'own_custom_imports',
                                 'one_line_hook', 'custom_imports_list'])
def test_fragment_composes_with_custom_imports(way, tmp_path, set_root, checkpoint,
                                               cascadepsp_cfg, in_process, monkeypatch):
    """Each documented way of adding the adapter to a config that imports its own code."""
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = f'user_plugin_{way}'  # a module not imported yet
    runtime = 'mmseg::_base_/default_runtime.py'
    fragment = str(RUNTIME_FRAGMENT)
    entries: Dict[str, Any] = {}
    if way == 'base_with_custom_imports':      # another base has custom_imports
        bases = [runtime, './user_base.py', fragment]
    elif way == 'own_custom_imports':          # the config itself has custom_imports
        bases = [runtime, fragment]
        entries['custom_imports'] = dict(imports=[plugin])
    elif way == 'one_line_hook':               # no fragment: one line in the user's config
        bases = [runtime, './user_base.py']
        entries['custom_hooks'] = [dict(type='segrefine_plugins.mmseg.SegRefineHook')]
    else:                                      # the user's own custom_imports list
        bases = [runtime]
        entries['custom_imports'] = dict(imports=[plugin, 'segrefine_plugins.mmseg'])
        entries['custom_hooks'] = [dict(type='SegRefineHook')]
    path = write_config(tmp_path, f'{way}.py', set_root, bases=bases, plugin=plugin,
                        **entries)
    assert plugin not in sys.modules
    cfg = Config.fromfile(str(path))  # raised a duplicate-key error before
    assert sys.modules[plugin].IMPORTED  # the user's own import still happens
    metrics = _loop_refines(cfg, tmp_path, checkpoint, cascadepsp_cfg)
    assert metrics == in_process['refined'][0]


def test_boundary_metric_replaces_iou_metric_without_delete(tmp_path, set_root, checkpoint,
                                                            cascadepsp_cfg, in_process):
    """mmseg's dataset bases set test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU']);
    a child's dict(type='BoundaryMetric') merges over it (no _delete_=True)."""
    (tmp_path / 'dataset_base.py').write_text(
        "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])\n")
    path = write_config(tmp_path, 'child.py', set_root,
                        bases=['mmseg::_base_/default_runtime.py', './dataset_base.py',
                               str(RUNTIME_FRAGMENT)])
    cfg = Config.fromfile(str(path))
    assert cfg.test_evaluator == dict(type='BoundaryMetric', iou_metrics=['mIoU'])
    assert _loop_refines(cfg, tmp_path, checkpoint, cascadepsp_cfg) == in_process['refined'][0]


# --------------------------------------------------------------------------------------------
# mmseg's tools/test.py in a subprocess
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tools_test_out_and_show_dir(tmp_path, set_root, checkpoint, cascadepsp_cfg,
                                     in_process):
    """``tools/test.py CFG CKPT --out DIR --show-dir DIR`` without and with a refiner: the
    written predictions are the loop's (coarse / refined), the metrics the in-process ones."""
    script = mmseg_tool('test.py')
    runs = {'coarse': {}, 'refined': dict(refiner=cascadepsp_cfg, refine_cfg=REFINE_CFG)}
    for kind, entries in runs.items():
        cfg = write_config(tmp_path, f'{kind}.py', set_root, **entries)
        log = run_tool([sys.executable, str(script), str(cfg), str(checkpoint),
                        '--work-dir', str(tmp_path / f'work_{kind}'), '--out',
                        str(tmp_path / kind), '--show-dir', str(tmp_path / f'show_{kind}')],
                       tmp_path)
        assert PLUGIN_MARK in log  # the user's base's custom_imports, next to the fragment
        metrics, recorder = in_process[kind]
        assert test_metrics(tmp_path / f'work_{kind}') == metrics
        written = read_pngs(tmp_path / kind)
        expected = by_name(recorder.samples)
        assert sorted(written) == sorted(expected)
        for name, pred in written.items():
            np.testing.assert_array_equal(pred, labels(expected[name]))
        drawn = sorted((tmp_path / f'show_{kind}').rglob('*.png'))
        assert len(drawn) == len(expected), drawn
        assert all(cv2.imread(str(p)) is not None for p in drawn)
    coarse, refined = read_pngs(tmp_path / 'coarse'), read_pngs(tmp_path / 'refined')
    assert any((coarse[k] != refined[k]).any() for k in coarse)
    assert in_process['refined'][0] != in_process['coarse'][0]


@pytest.mark.slow
@pytest.mark.parametrize('how', ['hook', 'model'])
def test_tools_test_tta_with_refiner(how, tmp_path, set_root, checkpoint, cascadepsp_cfg,
                                     in_process):
    """``tools/test.py --tta --out DIR`` with a refiner entry (the hook wraps the TTA model)
    or with model=RefinedSegmentor (--tta puts it inside the TTA model; the hook swaps them):
    the merged TTA prediction is refined, once."""
    script = mmseg_tool('test.py')
    # composed the other way: the config's own custom_imports next to the fragment
    cfg = write_config(tmp_path, 'tta.py', set_root,
                       bases=['mmseg::_base_/default_runtime.py', str(RUNTIME_FRAGMENT)],
                       custom_imports=dict(imports=['user_plugin']),
                       **refining_entries(how, cascadepsp_cfg))
    log = run_tool([sys.executable, str(script), str(cfg), str(checkpoint), '--tta',
                    '--work-dir', str(tmp_path / 'work'), '--out', str(tmp_path / 'out')],
                   tmp_path)
    assert PLUGIN_MARK in log
    metrics, recorder = in_process['tta']
    assert test_metrics(tmp_path / 'work') == metrics
    written = read_pngs(tmp_path / 'out')
    built = build_mmseg_refiner(cascadepsp_cfg)
    for name, sample in by_name(recorder.samples).items():
        np.testing.assert_array_equal(written[name], labels(sample))
        expected = refine_label_map(read_image(sample.img_path), labels(sample, 'coarse_sem_seg'),
                                    built, **REFINE_CFG).labels
        np.testing.assert_array_equal(written[name], expected)


@pytest.mark.slow
def test_tools_test_format_only(tmp_path, set_root, checkpoint, cascadepsp_cfg, in_process):
    """format_only (a test split without labels): predictions written, no metrics."""
    script = mmseg_tool('test.py')
    cfg = write_config(tmp_path, 'fmt.py', set_root, refiner=cascadepsp_cfg,
                       refine_cfg=REFINE_CFG,
                       evaluator=dict(type='BoundaryMetric', format_only=True,
                                      output_dir=str(tmp_path / 'fmt')))
    log = run_tool([sys.executable, str(script), str(cfg), str(checkpoint),
                    '--work-dir', str(tmp_path / 'work')], tmp_path)
    assert 'nothing scored' in log
    written = read_pngs(tmp_path / 'fmt')
    for name, sample in by_name(in_process['refined'][1].samples).items():
        np.testing.assert_array_equal(written[name], labels(sample))


# --------------------------------------------------------------------------------------------
# distributed: 2 CPU processes (gloo) under torchrun
# --------------------------------------------------------------------------------------------
def torchrun(nproc: int = 2) -> List[str]:
    # --standalone: a local rendezvous on a free port
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone',
            f'--nproc_per_node={nproc}', str(REPO / 'tests' / '_torchrun_cpu.py')]


@pytest.mark.slow
@pytest.mark.parametrize('how', ['hook', 'model'])
def test_tools_test_under_torchrun_equals_one_process(how, tmp_path, set_root, checkpoint,
                                                      cascadepsp_cfg, in_process):
    """mmseg's tools/test.py --launcher pytorch on 2 gloo processes, refining with the hook
    (around MMDistributedDataParallel) or with model=RefinedSegmentor (inside it): the
    gathered metrics equal the 1-process run, every rank's predictions are written."""
    script = mmseg_tool('test.py')
    cfg = write_config(tmp_path, f'dist_{how}.py', set_root,
                       **refining_entries(how, cascadepsp_cfg))
    log = run_tool(torchrun() + [str(script), str(cfg), str(checkpoint), '--launcher', 'pytorch',
                                 '--work-dir', str(tmp_path / 'work'), '--out',
                                 str(tmp_path / 'out'), '--cfg-options'] + CPU_DDP_OPTIONS,
                   tmp_path)
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-3000:]
    metrics, recorder = in_process['refined']
    assert test_metrics(tmp_path / 'work') == metrics
    written = read_pngs(tmp_path / 'out')
    expected = by_name(recorder.samples)
    assert sorted(written) == sorted(expected)
    for name, pred in written.items():
        np.testing.assert_array_equal(pred, labels(expected[name]))


def test_hook_swaps_a_tta_model_around_refined_segmentor_and_back(tmp_path, set_root,
                                                                  checkpoint, cascadepsp_cfg):
    """--tta on model=RefinedSegmentor builds TTA(RefinedSegmentor(seg)); for the test loop
    the hook makes it RefinedSegmentor(TTA(seg)) and puts the original back afterwards."""
    from mmengine.model import BaseTTAModel
    from mmengine.runner import Runner
    from segrefine_plugins.mmseg import RefinedSegmentor, SegRefineHook
    cfg = runner_cfg(tmp_path, set_root, checkpoint)
    cfg.model = dict(type='SegTTAModel', module=refining_entries('model', cascadepsp_cfg)['model'])
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, SegRefineHook))
    original = runner.model
    assert isinstance(original, BaseTTAModel) and isinstance(original.module, RefinedSegmentor)
    refined, plain = original.module, original.module.segmentor
    hook.before_run(runner)
    hook.before_test(runner)
    assert runner.model is refined and refined.segmentor is original
    assert original.module is plain  # the TTA model merges the plain segmentor's views
    hook.after_test(runner)
    assert runner.model is original and original.module is refined
    assert refined.segmentor is plain
