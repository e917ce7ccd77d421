"""Training CascadePSP / CRM refiners with MMEngine (needs ``mmengine``; the core does not).

Importing this package registers into mmengine's registries:

* ``DATASETS``: :class:`MaskPairDataset` (image / mask folders, published augmentation and
  perturbation);
* ``MODELS``: :class:`CRMTrainModel`, :class:`CascadePSPTrainModel` (state dict = published
  layout);
* ``METRICS``: :class:`RefinementMetric` (IoU / mBA of refined and coarse masks).

Modules: :mod:`.perturbation`, :mod:`.transforms`, :mod:`.datasets`, :mod:`.losses`, :mod:`.export`,
:mod:`.models`, :mod:`.metrics`. ``tools/train.py`` runs them with mmengine's ``Runner``.
"""
from __future__ import annotations

try:
    from mmengine.registry import DATASETS, METRICS, MODELS
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError('segrefine_plugins.training needs mmengine (tools/env/15_mmengine.sh: '
                      'pip install mmengine==0.10.7)') from err

from .datasets import MaskPairDataset
from .metrics import RefinementMetric
from .models import CascadePSPTrainModel, CRMTrainModel, init_trunk_from_imagenet

for _registry, _cls in ((DATASETS, MaskPairDataset), (MODELS, CRMTrainModel),
                        (MODELS, CascadePSPTrainModel), (METRICS, RefinementMetric)):
    if _registry.get(_cls.__name__) is None:
        _registry.register_module(module=_cls)

__all__ = ['MaskPairDataset', 'RefinementMetric', 'CRMTrainModel', 'CascadePSPTrainModel',
           'init_trunk_from_imagenet']
