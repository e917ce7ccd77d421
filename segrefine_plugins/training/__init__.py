"""Training CascadePSP / CRM refiners with MMEngine.

The models, the metric and the registration need ``mmengine``; :mod:`.perturbation`,
:mod:`.transforms`, :mod:`.datasets`, :mod:`.losses` and :mod:`.export` need only torch / OpenCV.

Where mmengine is installed, importing this package registers into its registries:

* ``DATASETS``: :class:`MaskPairDataset` (image / mask folders, published augmentation and
  perturbation);
* ``MODELS``: :class:`CRMTrainModel`, :class:`CascadePSPTrainModel` (state dict = published
  layout);
* ``METRICS``: :class:`RefinementMetric` (IoU / mBA of refined and coarse masks).

Modules: :mod:`.perturbation`, :mod:`.transforms`, :mod:`.datasets`, :mod:`.losses`, :mod:`.export`,
:mod:`.models`, :mod:`.metrics`. ``tools/train.py`` runs them with mmengine's ``Runner``.
"""
from __future__ import annotations

from typing import Optional

from .datasets import MaskPairDataset

__all__ = ['MaskPairDataset', 'RefinementMetric', 'CRMTrainModel', 'CascadePSPTrainModel',
           'init_trunk_from_imagenet']

try:
    from mmengine.registry import DATASETS, METRICS, MODELS
except ImportError as _err:  # the data, loss and transform modules work without mmengine
    _MMENGINE_ERROR: Optional[ImportError] = _err
else:
    _MMENGINE_ERROR = None
    from .metrics import RefinementMetric
    from .models import CascadePSPTrainModel, CRMTrainModel, init_trunk_from_imagenet

    for _registry, _cls in ((DATASETS, MaskPairDataset), (MODELS, CRMTrainModel),
                            (MODELS, CascadePSPTrainModel), (METRICS, RefinementMetric)):
        if _registry.get(_cls.__name__) is None:
            _registry.register_module(module=_cls)


def __getattr__(name: str):
    """Without mmengine, the mmengine-based names raise an ImportError that says what to install."""
    if _MMENGINE_ERROR is not None and name in __all__:
        raise ImportError(f'segrefine_plugins.training.{name} needs mmengine '
                          '(tools/env/15_mmengine.sh: pip install mmengine==0.10.7)') from _MMENGINE_ERROR
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
