"""segrefine_plugins: CascadePSP and CRM segmentation refiners for MMSegmentation and Detectron2.

Core API (torch, numpy and OpenCV only)::

    from segrefine_plugins import build_refiner
    refiner = build_refiner(dict(type='CascadePSP', checkpoint='model.pth'), device='cpu')
    prob = refiner.refine(image, mask)   # (H, W, 3) uint8 RGB, (H, W) mask -> (H, W) float32
"""
from __future__ import annotations

import os
import runpy
from typing import Any, Mapping, Union

from .registry import REFINERS
from .inference.base import Refiner
from .resources import SAMPLES_DIR, config_dir, config_path

__version__ = '0.1.0'
__all__ = ['build_refiner', 'Refiner', 'REFINERS', 'SAMPLES_DIR', 'config_dir', 'config_path',
           '__version__']


def load_config_file(path: Union[str, os.PathLike], key: str = 'refiner') -> dict:
    """Read the dict named ``key`` from a Python config file (mmengine-style, plain Python)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file not found: {path!r}')
    namespace = runpy.run_path(path)
    if key not in namespace or not isinstance(namespace[key], Mapping):
        raise ValueError(f'config file {path!r} defines no dict named {key!r}')
    return dict(namespace[key])


def build_refiner(cfg: Union[Mapping[str, Any], str, os.PathLike], **overrides: Any) -> Refiner:
    """Build a refiner from a config dict or the path of a Python config file.

    Args:
        cfg: ``dict(type='CascadePSP' | 'CRM', checkpoint=..., ...)`` (the refiner's keyword
            arguments), or the path of a ``.py`` file that defines ``refiner = dict(...)``.
        **overrides: keyword arguments that replace the config's (e.g. ``device='cuda'``).

    Raises:
        TypeError: ``cfg`` is neither a dict nor a path, ``type`` is not a string, or an
            option the refiner does not take / of the wrong type (named in the message).
        ValueError: no or an unknown ``type``, an option value out of its range, a device
            this machine does not have. Checkpoint problems raise
            :class:`~segrefine_plugins.models.checkpoint.CheckpointError` (a ValueError) or
            OSError, naming the file.
    """
    from . import inference  # noqa: F401  (registers the refiners)

    if isinstance(cfg, (str, os.PathLike)):
        if isinstance(cfg, str) and cfg in REFINERS and not os.path.exists(cfg):
            raise FileNotFoundError(f'config file not found: {cfg!r} (to build that refiner '
                                    f'type, pass a dict: build_refiner(dict(type={cfg!r})))')
        cfg = load_config_file(cfg)
    if not isinstance(cfg, Mapping):
        raise TypeError(f'build_refiner takes a config dict such as dict(type="CRM") or the '
                        f'path of a .py config file, got {type(cfg).__name__} {cfg!r}')
    cfg = dict(cfg)
    cfg.update(overrides)
    return REFINERS.build(cfg)
