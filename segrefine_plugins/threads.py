"""One place to set how many CPU threads torch and OpenCV use.

    from segrefine_plugins.threads import configure_threads
    configure_threads(2)        # torch: 2 intra-op threads; OpenCV: 1 thread

Why: torch (OpenMP) and OpenCV each start a pool as wide as the machine by default; on a
shared or small machine the two pools, and other processes, fight for the same cores, and
OpenMP threads that wait at a barrier for a descheduled sibling spin. Measured on the
2-core CPU of docs/performance.md with a third process keeping one core busy: a refine with
2 torch threads took several times as long as with 1 (see the table there). Pick ``n`` no
larger than the cores this process really has to itself.

What it sets:

* ``torch.set_num_threads(n)``: intra-op threads (OpenMP / MKL / oneDNN kernels);
* ``torch.set_num_interop_threads(1)`` where still allowed (torch accepts it only before
  its first inter-op parallel work; later calls are skipped silently: the refiners run
  no inter-op parallel work);
* ``cv2.setNumThreads(opencv_threads)``: OpenCV's pool (1 by default: the pipelines call
  OpenCV only for reading / resizing, between the torch work, so a second pool only
  competes).

``OMP_NUM_THREADS`` (read when torch is imported) sets the default of the first; set it in
the environment to bound a process from the outside, e.g. ``OMP_NUM_THREADS=1 segrefine
refine ...``. ``segrefine refine --threads N`` calls this function.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

#: Default thread count: the CPUs this process may use, at most 4 (beyond 4 the refiners
#: gain little on CPU and a shared machine loses more).
MAX_DEFAULT_THREADS = 4


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS tells, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``min(available_cpus(), 4)``."""
    return min(available_cpus(), MAX_DEFAULT_THREADS)


def configure_threads(n: Optional[int] = None, opencv_threads: int = 1) -> int:
    """Set torch's and OpenCV's thread counts (see the module docstring).

    Args:
        n: torch intra-op threads, >= 1; ``None``: :func:`default_threads`.
        opencv_threads: OpenCV threads, >= 1 (1: no pool beside torch's).

    Returns:
        The torch thread count now in force.

    Raises:
        ValueError: ``n`` or ``opencv_threads`` is not an int >= 1.
    """
    if n is None:
        n = default_threads()
    for name, value in (('threads', n), ('opencv_threads', opencv_threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'{name} must be an int >= 1, got {value!r}')
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # inter-op pool already started: torch forbids changing it
        pass
    try:
        import cv2
        cv2.setNumThreads(opencv_threads)
    except ImportError:  # OpenCV is a core dependency; tolerate its absence here anyway
        pass
    return torch.get_num_threads()
