"""Give freed host memory back to the operating system between windows of work.

PyTorch's CPU tensors come from the C library's ``malloc``. Blocks under glibc's (adaptive,
up to 32 MB) mmap threshold are carved from the heap and stay resident after they are freed,
so a pipeline that allocates and frees window after window (the CRM encoder, one window per
``tile_size`` tile) sees its resident size creep up with the number of windows, i.e. with
the image size. ``malloc_trim(0)`` returns the free pages; calling it between windows keeps
the resident peak at one window's work. Measured on the 3492x2328 aeroplane with the
published-size CRM: peak work 2.49 GB -> 2.13 GB, same time (README, *Benchmarks*). It is
not free: the next allocations fault their pages in again (~50 ms per call measured on small
ECSSD images with the default refiner), so CRM calls it only between the windows of a tiled
scale, never for one-window (small) inputs.

On other C libraries (musl, macOS, Windows) this is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Optional

_LIBC: Optional[Any] = None
_LOOKED_UP = False


def _malloc_trim() -> Optional[Any]:
    global _LIBC, _LOOKED_UP
    if not _LOOKED_UP:
        _LOOKED_UP = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            _LIBC = libc.malloc_trim
            _LIBC.argtypes, _LIBC.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _LIBC = None
    return _LIBC


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``).

    Returns:
        True if some memory was released, False if none was or the C library has no
        ``malloc_trim``. Never changes any tensor.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
