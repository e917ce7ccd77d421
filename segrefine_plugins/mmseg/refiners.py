"""The core refiners as entries of MMSegmentation's ``MODELS`` registry.

Every refiner of the core registry (:data:`segrefine_plugins.registry.REFINERS`) is registered
into ``mmseg.registry.MODELS`` under its class-style name: ``'CascadePSP'`` ->
``'CascadePSPRefiner'``, ``'CRM'`` -> ``'CRMRefiner'``. They are the core classes themselves
(no mmseg-specific behaviour), so a config entry takes exactly the core's arguments::

    refiner = dict(type='CRMRefiner', checkpoint='crm.pth')
    refiner = dict(type='CascadePSPRefiner', checkpoint='cascadepsp.pth', L=900, fast=False)

:func:`build_mmseg_refiner` builds such an entry with checks that fail early and clearly
(unknown type, missing checkpoint file) and places the refiner on the segmentor's device unless
the entry names a ``device``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

import torch
from mmseg.registry import MODELS

from .. import inference  # noqa: F401  (registers the core refiners)
from ..inference.base import Refiner
from ..registry import REFINERS

#: mmseg type name -> core refiner class, filled by :func:`register_refiners`.
REFINER_TYPES: Dict[str, type] = {}


def mmseg_type_name(core_name: str) -> str:
    """``'CRM'`` -> ``'CRMRefiner'`` (names already ending in ``Refiner`` are kept)."""
    return core_name if core_name.endswith('Refiner') else core_name + 'Refiner'


def register_refiners() -> Dict[str, type]:
    """Register every core refiner into ``mmseg.registry.MODELS`` (idempotent)."""
    for core_name in REFINERS.keys():
        cls = REFINERS.get(core_name)
        name = mmseg_type_name(core_name)
        registered = MODELS.module_dict.get(name)
        if registered is None:
            MODELS.register_module(name=name, module=cls)
        elif registered is not cls:
            raise KeyError(f'{name!r} is already registered in mmseg MODELS by '
                           f'{registered.__module__}.{registered.__qualname__}')
        REFINER_TYPES[name] = cls
    return dict(REFINER_TYPES)


def build_mmseg_refiner(cfg: Union[Mapping[str, Any], Refiner],
                        default_device: Optional[Union[str, torch.device]] = None) -> Refiner:
    """Build a refiner from an mmseg config entry (or pass a built one through).

    Args:
        cfg: ``dict(type='CascadePSPRefiner' | 'CRMRefiner', checkpoint=..., **core_args)``
            or a :class:`~segrefine_plugins.inference.base.Refiner` instance.
        default_device: device used when ``cfg`` names none (the segmentor's device).

    Raises:
        ValueError: the entry is not a dict with a known refiner ``type``, or its
            ``checkpoint`` file does not exist (the message names the entry).
    """
    if isinstance(cfg, Refiner):
        return cfg
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ValueError(f'a refiner config must be a dict with a "type" key '
                         f'(e.g. dict(type="CRMRefiner", checkpoint="crm.pth")), got {cfg!r}')
    args = dict(cfg)
    args.pop('_scope_', None)
    kind = args['type']
    if kind not in REFINER_TYPES:
        raise ValueError(f'unknown refiner type {kind!r}; the registered refiners are '
                         f'{", ".join(sorted(REFINER_TYPES))} (config entry: {dict(cfg)!r})')
    checkpoint = args.get('checkpoint')
    if isinstance(checkpoint, (str, os.PathLike)) and not os.path.isfile(checkpoint):
        raise ValueError(f'{kind}: checkpoint file not found: {os.fspath(checkpoint)!r} '
                         f'(relative paths are read from {os.getcwd()!r}; config entry: '
                         f'{dict(cfg)!r})')
    if default_device is not None:
        args.setdefault('device', str(default_device))
    args['type'] = REFINER_TYPES[kind]
    return MODELS.build(args)


register_refiners()
