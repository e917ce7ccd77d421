"""Multi-process evaluation for detectron2: detectron2's ``launch`` on GPUs, the same on CPUs
(gloo), and processes started by ``torchrun``.

detectron2 (0.5 and later) starts one process per GPU with ``detectron2.engine.launch`` and
NCCL, and refuses to start without CUDA. :func:`launch` keeps that for CUDA devices and does
the same with the gloo backend for ``device='cpu'`` (one process per ``num_processes``), so
``--num-gpus 2 MODEL.DEVICE cpu`` runs two CPU processes. :func:`init_from_env` joins the
process group that ``torchrun`` / ``python -m torch.distributed.run`` describes in the
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``). Either way detectron2's ``comm`` helpers (rank, local rank, gather) work as
under its own launcher, so its ``InferenceSampler`` shards the data set and its evaluators
gather the predictions on rank 0.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

__all__ = ['backend_for', 'init_from_env', 'launch', 'unwrap_parallel']

#: Process-group timeout (detectron2's default).
DEFAULT_TIMEOUT = timedelta(minutes=30)


def backend_for(device: str) -> str:
    """'nccl' for a CUDA device string ('cuda', 'cuda:1'), 'gloo' otherwise."""
    return 'nccl' if str(device).startswith('cuda') else 'gloo'


def unwrap_parallel(model: Any) -> Any:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel``, else ``model``."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    return model.module if isinstance(model, (DataParallel, DistributedDataParallel)) else model


def _check_sizes(num_processes: int, num_machines: int, machine_rank: int) -> None:
    for name, value in (('num_processes', num_processes), ('num_machines', num_machines)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    if not isinstance(machine_rank, int) or not 0 <= machine_rank < num_machines:
        raise ValueError(f'machine_rank must be in [0, {num_machines}), got {machine_rank!r}')


def _set_local_group(num_per_machine: int, machine_rank: int) -> None:
    """detectron2's per-machine process group (``comm.get_local_rank`` / ``get_local_size``).

    Every rank must call this (``new_group`` is collective).
    """
    from detectron2.utils import comm

    world = dist.get_world_size()
    if world % num_per_machine:
        raise ValueError(f'world size {world} is not a multiple of {num_per_machine} '
                         f'processes per machine')
    for i in range(world // num_per_machine):
        ranks = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def init_from_env(device: str = 'cpu') -> bool:
    """Join the process group that torchrun describes in the environment.

    Args:
        device: the model's device ('cpu' -> gloo; 'cuda' -> NCCL and
            ``torch.cuda.set_device(LOCAL_RANK)``).

    Returns:
        True when this process is one of several (the group is initialised, or already was),
        False for a single process (``WORLD_SIZE`` unset or 1; nothing is done).

    Raises:
        ValueError: a CUDA device with fewer GPUs than ``LOCAL_WORLD_SIZE``, or an
            environment that names a world size but not this process's rank.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return False
    if 'RANK' not in os.environ or 'MASTER_ADDR' not in os.environ:
        raise ValueError(f'WORLD_SIZE={world} but RANK / MASTER_ADDR are not set: start the '
                         f'processes with torchrun (python -m torch.distributed.run)')
    rank = int(os.environ['RANK'])
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    local_size = int(os.environ.get('LOCAL_WORLD_SIZE', str(world)))
    backend = backend_for(device)
    if backend == 'nccl':
        if local_size > torch.cuda.device_count():
            raise ValueError(f'{local_size} processes per machine but '
                             f'{torch.cuda.device_count()} CUDA devices')
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method='env://', world_size=world, rank=rank,
                            timeout=DEFAULT_TIMEOUT)
    _set_local_group(local_size, rank // local_size)
    dist.barrier()
    return True


def _find_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


def _cpu_worker(local_rank: int, main_func: Callable[..., Any], world_size: int,
                num_per_machine: int, machine_rank: int, dist_url: str, args: Sequence[Any],
                threads: int) -> None:
    if 'OMP_NUM_THREADS' not in os.environ:
        torch.set_num_threads(threads)
    rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group('gloo', init_method=dist_url, world_size=world_size, rank=rank,
                                timeout=DEFAULT_TIMEOUT)
    except Exception:
        logging.getLogger(__name__).error('process group URL: %s', dist_url)
        raise
    _set_local_group(num_per_machine, machine_rank)
    dist.barrier()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def launch(main_func: Callable[..., Any], num_processes: int, num_machines: int = 1,
           machine_rank: int = 0, dist_url: str = 'auto', args: Sequence[Any] = (),
           device: str = 'cuda') -> None:
    """Run ``main_func(*args)`` in ``num_processes`` processes on each of ``num_machines``.

    CUDA devices: ``detectron2.engine.launch`` (one process per GPU, NCCL). Other devices: the
    same with gloo, threads split evenly between the processes (unless ``OMP_NUM_THREADS``
    is set). One process in all: ``main_func(*args)`` here, no process group.
    ``main_func`` and ``args`` must be picklable (a module-level function).

    Args:
        dist_url: ``tcp://HOST:PORT`` of machine 0 (all machines give the same), or 'auto'
            (a free local port; single machine only).
    """
    _check_sizes(num_processes, num_machines, machine_rank)
    world = num_processes * num_machines
    if backend_for(device) == 'nccl':
        from detectron2.engine import launch as d2_launch

        if num_processes > torch.cuda.device_count():
            raise ValueError(f'{num_processes} processes per machine but '
                             f'{torch.cuda.device_count()} CUDA devices')
        d2_launch(main_func, num_processes, num_machines, machine_rank, dist_url, args=tuple(args))
        return
    if world == 1:
        main_func(*args)
        return
    if dist_url == 'auto':
        if num_machines > 1:
            raise ValueError("dist_url='auto' works on one machine only: give "
                             "tcp://HOST:PORT of machine 0")
        dist_url = f'tcp://127.0.0.1:{_find_free_port()}'
    import torch.multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // num_processes)
    mp.spawn(_cpu_worker, nprocs=num_processes, daemon=False,
             args=(main_func, world, num_processes, machine_rank, dist_url, tuple(args), threads))
