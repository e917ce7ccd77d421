"""tools/train.py on mmengine's Runner: loss goes down, checkpoints load in build_refiner,
resume continues from the saved iteration, --cfg-options / --amp / --work-dir handling."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_module

require_module('mmengine')
from mmengine.hooks import Hook  # noqa: E402

from segrefine_plugins import build_refiner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'configs' / 'train' / 'crm_cpu_small.py')


def _train_tool():
    spec = importlib.util.spec_from_file_location('segrefine_train_tool', REPO / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Record(Hook):
    """Records the iteration index and loss of every training step."""

    def __init__(self) -> None:
        self.iters, self.losses = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.iters.append(runner.iter + 1)   # runner.iter counts finished iterations
        self.losses.append(float(sum(v.detach() for k, v in outputs.items()
                                     if k.startswith('loss_'))))


def _options(data_root: Path, max_iters: int) -> list:
    return ['--cfg-options', f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=1000',
            f'train_dataloader.dataset.roots=[{str(data_root / "duts-te-2k")!r}]',
            'train_dataloader.dataset.subset=[0,4]', 'train_dataloader.dataset.crop_size=64',
            'train_dataloader.batch_size=4', 'default_hooks.checkpoint.interval=8',
            'param_scheduler.0.milestones=[1000]', 'default_hooks.logger.interval=3',
            'optim_wrapper.optimizer.lr=0.005', 'val_dataloader.dataset.subset=[0,2]']


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; one avoids OpenMP spinning on a busy CPU."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope='module')
def trained(data_root, tmp_path_factory):
    """16 iterations on 4 DUTS-TE pairs, checkpoints every 8 iterations."""
    os.environ.setdefault('SEGREFINE_DATA', str(data_root))
    work = tmp_path_factory.mktemp('train')
    tool = _train_tool()
    torch.manual_seed(0)
    runner = tool.build_runner([CONFIG, '--work-dir', str(work)] + _options(data_root, 16))
    rec = _Record()
    runner.register_hook(rec)
    runner.train()
    return tool, work, rec


def test_loss_goes_down(trained):
    _, _, rec = trained
    assert rec.iters == list(range(1, 17))
    assert np.mean(rec.losses[-3:]) < 0.9 * np.mean(rec.losses[:3])


def test_checkpoint_loads_in_build_refiner(trained, data_root):
    _, work, _ = trained
    ckpt = work / 'iter_16.pth'
    assert ckpt.is_file() and (work / 'iter_8.pth').is_file()
    refiner = build_refiner(dict(type='CRM', checkpoint=str(ckpt), scales=(0.5, 1.0)))
    assert refiner.model.width == 16
    from segrefine_plugins.training.datasets import find_pairs, read_pair
    image, mask = read_pair(*find_pairs(data_root / 'ecssd')[0])
    prob = refiner.refine(image[:96, :96].copy(), mask[:96, :96].copy() if mask[:96, :96].max() > 127
                          else np.full((96, 96), 255, np.uint8))
    assert prob.shape == (96, 96) and 0 <= prob.min() <= prob.max() <= 1


def test_resume_continues_from_saved_iteration(trained, data_root):
    tool, work, _ = trained
    runner = tool.build_runner([CONFIG, '--work-dir', str(work), '--resume',
                                str(work / 'iter_8.pth')] + _options(data_root, 11))
    rec = _Record()
    runner.register_hook(rec)
    tool.train(runner)
    assert rec.iters == [9, 10, 11]


def test_config_switches(tmp_path):
    tool = _train_tool()
    args = tool.parse_args([CONFIG, '--amp', '--resume', '--cfg-options', 'model.width=8'])
    cfg = tool.build_config(args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.resume is True
    assert cfg.load_from is None and cfg.model.width == 8
    assert cfg.work_dir == os.path.join('work_dirs', 'crm_cpu_small')
    assert cfg.launcher == 'none'
    with pytest.raises(SystemExit):
        tool.build_config(tool.parse_args([str(tmp_path / 'missing.py')]))


def test_benchmark_data_reports_a_rate(data_root):
    os.environ.setdefault('SEGREFINE_DATA', str(data_root))
    rate = _train_tool().benchmark_data(CONFIG, 2, {'train_dataloader.dataset.crop_size': 48})
    assert rate > 0


@pytest.mark.parametrize('content, match', [(None, 'not found'), (b'', 'empty file'),
                                            (b'not a checkpoint', 'corrupt')])
def test_bad_resume_or_load_from_is_named_before_training(tmp_path, content, match):
    """The package's one checkpoint reader checks ``--resume PATH`` / ``load_from`` first."""
    tool = _train_tool()
    path = tmp_path / 'iter_10.pth'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit, match=match) as err:
        tool.build_config(tool.parse_args([CONFIG, '--resume', str(path)]))
    assert 'iter_10.pth' in str(err.value)
    cfg = tool.build_config(tool.parse_args([CONFIG, '--cfg-options', 'load_from=None']))
    assert cfg.load_from is None


def test_resume_allow_list_is_the_checkpoint_modules():
    from segrefine_plugins.models.checkpoint import mmengine_safe_globals
    assert _train_tool().resume_allow_list() == mmengine_safe_globals()
    assert getattr in mmengine_safe_globals()


def _flushes_denormals() -> bool:
    return float(torch.tensor([1e-39]) * 1.0) == 0.0


@pytest.mark.parametrize('keep', [False, True])
def test_main_flushes_denormals_unless_told_not_to(data_root, tmp_path, keep):
    """Adam moments decaying towards zero become denormal floats, which slowed a CPU training
    run 3.7x (0.41 vs 1.52 s / iteration); main() flushes them to zero by default."""
    os.environ.setdefault('SEGREFINE_DATA', str(data_root))
    torch.set_flush_denormal(False)
    try:
        assert not _flushes_denormals()
        flag = ['--keep-denormals'] if keep else []
        _train_tool().main([CONFIG, '--work-dir', str(tmp_path)] + flag + _options(data_root, 2))
        assert (tmp_path / 'iter_2.pth').is_file()
        assert _flushes_denormals() is (not keep)
    finally:
        torch.set_flush_denormal(False)
