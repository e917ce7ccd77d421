"""RefinementMetric: IoU / mBA of refined and coarse masks, in percent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_module
from segrefine_plugins.metrics import IoUAccumulator, boundary_accuracy

require_module('mmengine')
from segrefine_plugins.training.metrics import RefinementMetric  # noqa: E402


def _sample(gt, prob, seg):
    return {'gt': torch.from_numpy(gt.astype(np.float32)),
            'prob': torch.from_numpy(prob.astype(np.float32)),
            'seg': torch.from_numpy(seg)}


def test_metric_matches_core_metrics():
    rng = np.random.default_rng(0)
    metric = RefinementMetric()
    acc_r, acc_c, mba_r, mba_c = IoUAccumulator(), IoUAccumulator(), [], []
    for _ in range(3):
        gt = np.zeros((40, 50), bool)
        gt[10:30, 12:40] = True
        prob = np.clip(gt + rng.normal(0, 0.3, gt.shape), 0, 1)
        seg = np.roll(gt, 3, axis=1)
        metric.process(None, [_sample(gt, prob, seg)])
        acc_r.update(gt, prob > 0.5)
        acc_c.update(gt, seg)
        mba_r.append(boundary_accuracy(gt, prob > 0.5))
        mba_c.append(boundary_accuracy(gt, seg))
    out = metric.compute_metrics(metric.results)
    assert out['iou'] == pytest.approx(100 * acc_r.value)
    assert out['coarse_iou'] == pytest.approx(100 * acc_c.value)
    assert out['mba'] == pytest.approx(100 * np.mean(mba_r))
    assert out['coarse_mba'] == pytest.approx(100 * np.mean(mba_c))
    assert out['images'] == 3


def test_perfect_prediction_scores_100():
    gt = np.zeros((30, 30), bool)
    gt[5:20, 5:25] = True
    metric = RefinementMetric()
    metric.process(None, [_sample(gt, gt.astype(np.float32), gt)])
    out = metric.compute_metrics(metric.results)
    assert out['iou'] == 100 and out['mba'] == 100 and out['coarse_iou'] == 100


def test_soft_ground_truth_is_binarised_at_half():
    gt = np.full((10, 10), 0.4)
    gt[2:8, 2:8] = 0.6
    metric = RefinementMetric()
    metric.process(None, [_sample(gt, (gt > 0.5).astype(np.float32), gt > 0.5)])
    assert metric.compute_metrics(metric.results)['iou'] == 100


def test_missing_ground_truth_raises():
    metric = RefinementMetric()
    with pytest.raises(ValueError, match='ground truth'):
        metric.process(None, [{'prob': torch.zeros(4, 4), 'seg': torch.zeros(4, 4, dtype=torch.bool)}])
