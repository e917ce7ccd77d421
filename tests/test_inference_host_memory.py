"""release_free_memory: freed heap blocks go back to the OS (glibc Linux)."""
from __future__ import annotations

import platform

import pytest
import torch

from segrefine_plugins.inference.host_memory import release_free_memory


def _rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmRSS')


@pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                    reason='malloc_trim is glibc-only')
def test_freed_heap_blocks_are_returned():
    torch.empty(30 << 20, dtype=torch.uint8).fill_(1)   # freed: glibc raises its mmap threshold
    blocks = [torch.ones(4 << 20, dtype=torch.uint8) for _ in range(60)]   # 240 MB on the heap
    keep = blocks[-1]                                   # pins the top of the heap
    del blocks
    before = _rss_mb()
    assert release_free_memory() is True
    assert before - _rss_mb() > 150, 'the freed 4 MB blocks stayed resident'
    assert int(keep[0]) == 1


def test_release_is_harmless_to_live_tensors():
    x = torch.arange(1000.0)
    release_free_memory()
    assert float(x.sum()) == 499500.0
