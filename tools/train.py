#!/usr/bin/env python
"""Train a CascadePSP / CRM refiner with mmengine's Runner.

    python tools/train.py configs/train/crm_cpu_small.py --work-dir work_dirs/crm_small
    python tools/train.py CONFIG --resume                 # continue from the last checkpoint
    python tools/train.py CONFIG --resume PATH.pth        # continue from a given checkpoint
    python tools/train.py CONFIG --amp                    # mixed precision (GPU)
    torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 \
        --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch   # on each of 2 machines
    python tools/train.py CONFIG --cfg-options train_cfg.max_iters=100 model.width=16
    python tools/train.py CONFIG --benchmark-data 50      # data pipeline speed, masks / s

Checkpoints (``iter_N.pth``) hold the model's state dict in the published layout under
``state_dict``; ``build_refiner(dict(type='CRM', checkpoint='.../iter_N.pth', ...))`` loads
them. Validation reports IoU / mBA of the refined and of the coarse masks (percent).
Data: configs read ``$SEGREFINE_DATA`` (default ``../shared/data``).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='training config file (configs/train/*.py)')
    p.add_argument('--work-dir', help='where logs and checkpoints go '
                   '(default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto', default=None,
                   help='resume from the latest checkpoint of the work dir, or from PATH')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help='job launcher (pytorch: under torchrun, one process per GPU)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries, e.g. train_cfg.max_iters=100')
    p.add_argument('--benchmark-data', type=int, metavar='N', default=0,
                   help='only measure the training dataloader: masks / s over N batches')
    p.add_argument('--keep-denormals', action='store_true',
                   help='do not flush denormal floats to zero on the CPU (by default they are: '
                        'Adam moments and weights decaying towards zero become denormal and '
                        'slowed a CPU run 3.7x by iteration 1600)')
    p.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace):
    """The mmengine Config of a run: file + --cfg-options + command-line switches."""
    from mmengine.config import Config
    if not osp.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    check_load_from(cfg.get('load_from'))
    return cfg


def prepare_cpu_distributed(cfg) -> None:
    """Distributed training without CUDA (e.g. ``torchrun --nproc_per_node 2`` on CPUs).

    mmengine's own set-up for ``--launcher pytorch`` pins a CUDA device
    (``torch.cuda.set_device``) and wraps the model with ``device_ids=[LOCAL_RANK]``; both fail
    on a machine without CUDA. There the process group is started here with gloo (nccl needs
    CUDA; the config's ``env_cfg.dist_cfg`` timeout is kept) and DDP gets ``device_ids=None``.
    Does nothing with CUDA or without a launcher.
    """
    import torch
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    import datetime
    import torch.distributed as dist
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    if not dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        extra = {} if timeout is None else {'timeout': datetime.timedelta(seconds=timeout)}
        dist.init_process_group(backend='gloo', **extra)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


def build_runner(argv: Optional[List[str]] = None):
    """Parse ``argv`` and build the mmengine Runner (not started)."""
    args = parse_args(argv)
    import segrefine_plugins.training  # noqa: F401  (registers datasets / models / metrics)
    from mmengine.runner import Runner
    cfg = build_config(args)
    prepare_cpu_distributed(cfg)
    return Runner.from_cfg(cfg)


def benchmark_data(config: str, n_batches: int, cfg_options: Optional[dict] = None) -> float:
    """Masks per second the config's training dataloader delivers (its batch size, workers,
    augmentation and perturbation; no model). Prints and returns the rate."""
    import time
    from mmengine.config import Config
    from mmengine.runner import Runner
    import segrefine_plugins.training  # noqa: F401
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    it = iter(loader)
    next(it)  # worker start-up is not counted
    start, masks = time.perf_counter(), 0
    for _ in range(n_batches):
        masks += next(it)['seg'].shape[0]
    rate = masks / (time.perf_counter() - start)
    print(f'{masks} training masks in {masks / rate:.1f} s: {rate:.1f} masks/s '
          f'(batch {cfg.train_dataloader.batch_size}, '
          f'{cfg.train_dataloader.get("num_workers", 0)} workers)')
    return rate


def resume_allow_list() -> list:
    """Globals that mmengine Runner checkpoints pickle besides tensors
    (:func:`segrefine_plugins.models.checkpoint.mmengine_safe_globals`, the package's one
    checkpoint module): resuming keeps ``weights_only=True`` and allows exactly these."""
    from segrefine_plugins.models.checkpoint import mmengine_safe_globals
    return mmengine_safe_globals()


def check_load_from(path: Optional[str]) -> None:
    """Read ``load_from`` / ``--resume PATH`` with the package's checkpoint reader before the
    Runner starts, so a missing, empty or corrupt file is named at once (SystemExit), not
    reported by torch's unpickler after the model and data are built."""
    if not path:
        return
    from segrefine_plugins.models.checkpoint import CheckpointError, read_state_dict
    try:
        read_state_dict(path)
    except (CheckpointError, TypeError) as e:
        raise SystemExit(f'error: load_from / --resume: {e}') from None


def train(runner) -> None:
    """``runner.train()``; a resumed run, or one starting from ``load_from``, reads
    mmengine's own objects from the checkpoint (see :func:`resume_allow_list`)."""
    import torch
    if runner._resume or runner._load_from:
        with torch.serialization.safe_globals(resume_allow_list()):
            runner.train()
    else:
        runner.train()


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.benchmark_data:
        benchmark_data(args.config, args.benchmark_data, args.cfg_options)
        return
    if not args.keep_denormals:
        import torch
        torch.set_flush_denormal(True)   # before any thread pool starts; False where unsupported
    train(build_runner(argv))


if __name__ == '__main__':
    main()
