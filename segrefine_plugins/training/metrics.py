"""Validation metric for refiner training: IoU and mBA of the refined output and of the input.

:class:`RefinementMetric` (an mmengine ``BaseMetric``) consumes the ``predict`` outputs of the
training models (``prob``, ``gt``, ``seg`` per image), binarises the probability at 0.5 and the
soft ground truth at 0.5 (128 of 255), and reports, in percent:

* ``iou`` / ``mba``: dataset IoU (sum of intersections / sum of unions) and mean mBA of the
  refined masks (:mod:`segrefine_plugins.metrics`);
* ``coarse_iou`` / ``coarse_mba``: the same for the coarse input masks, so the gain is visible.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from ..metrics import MetricSummary

__all__ = ['RefinementMetric']


class RefinementMetric(BaseMetric):
    """IoU / mBA of refined and coarse masks against the ground truth (see module docstring)."""

    default_prefix: Optional[str] = 'refine'

    def __init__(self, collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        for sample in data_samples:
            if 'gt' not in sample:
                raise ValueError('RefinementMetric needs the ground truth in the predictions')
            gt = sample['gt'].cpu().numpy() > 0.5
            pred = sample['prob'].cpu().numpy() > 0.5
            seg = sample['seg'].cpu().numpy().astype(bool)
            self.results.append((gt, pred, seg))

    def compute_metrics(self, results: List[Any]) -> Dict[str, float]:
        refined, coarse = MetricSummary(), MetricSummary()
        for gt, pred, seg in results:
            refined.update(gt, pred)
            coarse.update(gt, seg)
        r, c = refined.result(), coarse.result()
        return {'iou': 100.0 * r['iou'], 'mba': 100.0 * r['mba'],
                'coarse_iou': 100.0 * c['iou'], 'coarse_mba': 100.0 * c['mba'],
                'images': float(len(results))}
