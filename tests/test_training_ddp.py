"""tools/train.py under torchrun: 2 CPU processes (gloo, DDP) train the small CRM recipe and
write a checkpoint that ``build_refiner`` loads."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module  # noqa: E402

require_module('mmengine')

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.models.checkpoint import read_state_dict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'configs' / 'train' / 'crm_cpu_small.py')


@pytest.mark.slow
@pytest.mark.mmseg
def test_ddp_training_on_two_cpu_processes_writes_a_loadable_checkpoint(tmp_path, data_root):
    work = tmp_path / 'work'
    options = ['train_cfg.max_iters=4', 'train_cfg.val_interval=1000',
               f'train_dataloader.dataset.roots=[{str(data_root / "duts-te-2k")!r}]',
               'train_dataloader.dataset.subset=[0,4]', 'train_dataloader.dataset.crop_size=48',
               'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=4',
               'default_hooks.logger.interval=1', 'val_dataloader.dataset.subset=[0,1]']
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1',
           'SEGREFINE_DATA': str(data_root),
           'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])}
    # --standalone: a local rendezvous on a free port; the config's nccl backend and CUDA
    # device ids are replaced by gloo / None on a machine without CUDA (tools/train.py)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           str(REPO / 'tools' / 'train.py'), CONFIG, '--launcher', 'pytorch',
           '--work-dir', str(work), '--cfg-options'] + options
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path),
                         timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert re.search(r'Distributed training: True', log), log[-3000:]
    assert re.search(r'GPU number: 2|world_size.{0,4}2', log), log[-3000:]
    assert re.search(r'Iter\(train\) \[4/4\]', log), log[-3000:]
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file(), sorted(p.name for p in work.iterdir())
    # the published layout (no 'module.' of the DDP wrapper), read with weights_only=True
    state = read_state_dict(str(ckpt))
    assert not any(k.startswith('module.') for k in state)
    refiner = build_refiner(dict(type='CRM', checkpoint=str(ckpt), scales=(1.0,)))
    assert refiner.model.width == 16  # the small recipe's architecture, read from the file
    losses = [float(v) for v in re.findall(r'Iter\(train\) \[\d/4\].*?\bloss: ([0-9.]+)', log)]
    assert losses and all(np.isfinite(losses)), log[-3000:]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 20:44] = 255
    prob = refiner.refine(image, mask)
    assert prob.shape == (64, 64) and 0 <= prob.min() <= prob.max() <= 1
