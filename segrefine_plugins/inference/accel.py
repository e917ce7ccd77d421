"""Opt-in fast modes and the checks that refuse them where the machine cannot run them.

Three knobs every refiner takes (all change the numbers slightly except ``channels_last``,
which changes only float rounding; the defaults are the exact parity mode):

* ``precision='bf16'``: ``torch.autocast`` in bfloat16. On a CPU it needs native bf16 units
  (``avx512_bf16`` or AMX: oneDNN then runs its AMX / AVX512-BF16 convolution and matmul
  kernels); without them bf16 is emulated and slower than fp32, so it is refused.
  ``precision='fp16'`` is refused on a CPU (use bf16); on CUDA both are allowed (bf16 where
  the GPU supports it).
* ``channels_last=True``: NHWC memory for the network and its inputs (what oneDNN's fast
  convolution kernels and tensor cores want).
* ``compile=True``: ``torch.compile`` of the network's heavy modules. Needs TorchDynamo on
  this Python and, on a CPU, a C++ compiler for the inductor backend; the first call of each
  new input size compiles (tens of seconds to minutes).

:func:`cpu_features` reports what the CPU has (the benchmark prints it).
"""
from __future__ import annotations

import functools
import os
import shutil
from typing import Dict, Optional

import torch

#: /proc/cpuinfo flags that matter for the fast modes.
CPU_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile',
             'amx_bf16', 'amx_fp16', 'amx_int8')


class UnsupportedModeError(ValueError):
    """A fast mode this machine / torch cannot run (a ValueError: a configuration problem)."""


@functools.lru_cache(maxsize=1)
def _proc_flags() -> frozenset:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_features() -> Dict[str, object]:
    """What this CPU and torch build offer: ``{flag: bool}`` for :data:`CPU_FLAGS` (from
    /proc/cpuinfo, or torch's own cpuinfo where that file is missing), ``'bf16'`` (torch /
    oneDNN can run bf16 natively: avx512_bf16 or AMX), ``'capability'`` (the vector ISA
    torch's own kernels were dispatched to, e.g. 'AVX512') and ``'mkldnn'`` (oneDNN built in).
    """
    flags = _proc_flags()
    out: Dict[str, object] = {f: f in flags for f in CPU_FLAGS}
    probes = {'avx512_bf16': '_is_avx512_bf16_supported', 'amx_tile': '_is_amx_tile_supported',
              'amx_fp16': '_is_amx_fp16_supported', 'avx512_vnni': '_is_vnni_supported'}
    for flag, probe in probes.items():   # torch's cpuinfo agrees, or fills in off Linux
        fn = getattr(torch.cpu, probe, None)
        if not flags and fn is not None:
            out[flag] = bool(fn())
    mkldnn = torch.backends.mkldnn.is_available()
    native = False
    if mkldnn:
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = bool(out['avx512_bf16'] or out['amx_bf16'])
    out['bf16'] = native and bool(out['avx512_bf16'] or out['amx_bf16'] or out['amx_tile'])
    out['capability'] = torch.backends.cpu.get_cpu_capability()
    out['mkldnn'] = mkldnn
    return out


def describe_cpu() -> str:
    """One line: the CPU model and the flags of :func:`cpu_features` it has."""
    model = 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    feats = cpu_features()
    have = [f for f in CPU_FLAGS if feats.get(f)]
    return (f'{model}, {os.cpu_count()} CPUs, torch {torch.__version__} '
            f'(kernels {feats["capability"]}, oneDNN {"on" if feats["mkldnn"] else "off"}), '
            f'flags: {" ".join(have) or "-"}; native bf16: {"yes" if feats["bf16"] else "no"}')


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`UnsupportedModeError` where ``precision`` cannot run well on ``device``."""
    if precision == 'fp32':
        return
    if device.type == 'cpu':
        if precision == 'fp16':
            raise UnsupportedModeError(
                "precision='fp16' is not supported on a CPU (most CPUs emulate it, slower than "
                "fp32); use precision='bf16' where the CPU has avx512_bf16 / AMX, else 'fp32'")
        if precision == 'bf16' and not cpu_features()['bf16']:
            raise UnsupportedModeError(
                "precision='bf16' on this CPU would be emulated (slower than fp32): it needs "
                "avx512_bf16 or AMX (amx_bf16) and torch built with oneDNN; found: "
                f"{describe_cpu()}. Use precision='fp32'")
    elif device.type == 'cuda' and precision == 'bf16' and torch.cuda.is_available() \
            and not torch.cuda.is_bf16_supported():
        raise UnsupportedModeError(f"precision='bf16' is not supported by this GPU "
                                   f"({torch.cuda.get_device_name(device)}); use 'fp16'")


def check_compile(device: torch.device) -> None:
    """Raise :class:`UnsupportedModeError` where ``torch.compile`` cannot run here."""
    if not hasattr(torch, 'compile'):
        raise UnsupportedModeError(f'compile=True needs torch >= 2.0, this is {torch.__version__}')
    if device.type == 'cpu' and _cpp_compiler() is None:   # checked first: no dynamo import
        raise UnsupportedModeError(
            'compile=True on a CPU needs a C++ compiler for the inductor backend (g++ or '
            'clang++ on PATH, or $CXX); none found: install one or use compile=False')
    try:
        import torch._dynamo as dynamo
        supported = dynamo.is_dynamo_supported()
    except Exception as err:  # dynamo refuses some Python versions at import
        raise UnsupportedModeError(f'compile=True: TorchDynamo is not available here: {err}') \
            from None
    if not supported:
        raise UnsupportedModeError('compile=True: TorchDynamo does not support this Python / '
                                   'platform; use compile=False')


def _cpp_compiler() -> Optional[str]:
    candidates = [os.environ.get('CXX')]
    try:
        from torch._inductor import config
        candidates += [c for c in config.cpp.cxx if c]
    except Exception:  # an inductor without that setting
        pass
    candidates += ['g++', 'clang++', 'c++']
    for c in candidates:
        if c and shutil.which(c):
            return c
    return None


def compile_module(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(module)`` (dynamic shapes after the first recompile). Errors surface
    on the first call; :meth:`Refiner._run` turns them into :func:`compile_failed`."""
    return torch.compile(module)


def is_compile_error(err: BaseException) -> bool:
    """Whether ``err`` comes from TorchDynamo / inductor (or the C++ build they run)."""
    import subprocess
    mod = type(err).__module__ or ''
    return mod.startswith(('torch._dynamo', 'torch._inductor')) \
        or isinstance(err, subprocess.CalledProcessError)


def compile_failed(err: Exception) -> RuntimeError:
    """The error to raise when the first compiled call fails (wraps dynamo / inductor errors)."""
    return RuntimeError(f'compile=True: torch.compile failed on this machine '
                        f'({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}); '
                        f'use compile=False')
