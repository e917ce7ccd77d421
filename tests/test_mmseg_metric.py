"""BoundaryMetric against mmseg's IoUMetric and the core metric functions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import require_module

mmseg = require_module('mmseg')
import torch  # noqa: E402
from mmseg.evaluation import IoUMetric  # noqa: E402
from mmseg.registry import METRICS  # noqa: E402

from segrefine_plugins.metrics import boundary_iou, multiclass_boundary_accuracy  # noqa: E402
from segrefine_plugins.mmseg import BoundaryMetric  # noqa: E402
from segrefine_plugins.mmseg.metric import boundary_counts  # noqa: E402

pytestmark = pytest.mark.mmseg

CLASSES = ('a', 'b', 'c')


def blobs(shape, seed, void=False):
    """A label map of three classes made of rectangles and a disc (+ a void stripe)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    lab = np.zeros(shape, np.int64)
    for c in (1, 2):
        for _ in range(3):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            lab[y:y + rng.integers(6, h // 2), x:x + rng.integers(6, w // 2)] = c
    yy, xx = np.mgrid[:h, :w]
    lab[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 6) ** 2] = 1
    if void:
        lab[:, w - 5:] = 255
    return lab


def perturb(lab, seed):
    rng = np.random.default_rng(seed)
    out = np.roll(lab, (1, -2), axis=(0, 1)).copy()
    out[rng.random(lab.shape) < 0.02] = 0
    out[out == 255] = 0  # predictions never hold the void label
    return out


def samples_of(pairs):
    return [dict(pred_sem_seg=dict(data=torch.from_numpy(p)[None]),
                 gt_sem_seg=dict(data=torch.from_numpy(g)[None].to(torch.uint8)))
            for g, p in pairs]


def evaluate(metric, pairs):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples_of(pairs))
    return metric.compute_metrics(metric.results)


@pytest.fixture(scope='module')
def pairs():
    shapes = [(60, 80), (90, 70), (50, 50)]
    gts = [blobs(s, i, void=(i == 1)) for i, s in enumerate(shapes)]
    return [(g, perturb(g, 10 + i)) for i, g in enumerate(gts)]


def test_miou_equals_mmseg_iou_metric(pairs):
    ours = evaluate(BoundaryMetric(classwise=False), pairs)
    theirs = evaluate(IoUMetric(iou_metrics=['mIoU']), pairs)
    assert ours['mIoU'] == theirs['mIoU']
    assert 0 < ours['mIoU'] < 100


def test_mba_is_the_image_mean_of_multiclass_mba(pairs):
    ours = evaluate(BoundaryMetric(metrics=['mBA']), pairs)
    expected = np.mean([multiclass_boundary_accuracy(g, p) for g, p in pairs])
    assert ours == {'mBA': round(100 * expected, 2)}


def test_boundary_iou_per_class_matches_the_binary_definition(pairs):
    for gt, pred in pairs[:1] + pairs[2:]:  # no void: each class is a binary Boundary IoU
        inter, union = boundary_counts(gt, pred, 3, 255)
        for c in range(3):
            assert inter[c] / union[c] == pytest.approx(boundary_iou(gt == c, pred == c))
    ours = evaluate(BoundaryMetric(metrics=['mBIoU']), pairs[:1])
    gt, pred = pairs[0]
    expected = np.mean([boundary_iou(gt == c, pred == c) for c in range(3)])
    assert ours['mBIoU'] == round(100 * expected, 2)


def test_void_pixels_do_not_count(pairs):
    gt, pred = pairs[1]
    assert (gt == 255).any()
    other = pred.copy()
    other[gt == 255] = 2
    assert evaluate(BoundaryMetric(), [(gt, pred)]) == evaluate(BoundaryMetric(), [(gt, other)])


def test_perfect_prediction_scores_100(pairs):
    perfect = [(g, np.where(g == 255, 0, g)) for g, _ in pairs]
    assert evaluate(BoundaryMetric(), perfect) == {'mIoU': 100.0, 'mBA': 100.0, 'mBIoU': 100.0}


def test_undefined_mba_images_are_left_out():
    single = np.ones((40, 40), np.int64)  # one class: no boundary band
    gt, pred = blobs((40, 40), 3), perturb(blobs((40, 40), 3), 4)
    res = evaluate(BoundaryMetric(metrics=['mBA']), [(single, single), (gt, pred)])
    assert res['mBA'] == round(100 * multiclass_boundary_accuracy(gt, pred), 2)


def test_registered_and_bad_arguments():
    assert isinstance(METRICS.build(dict(type='BoundaryMetric')), BoundaryMetric)
    with pytest.raises(ValueError, match='subset'):
        BoundaryMetric(metrics=['mDice'])
    with pytest.raises(ValueError, match='dilation_ratio'):
        BoundaryMetric(dilation_ratio=0)
    metric = BoundaryMetric()
    with pytest.raises(ValueError, match='dataset_meta'):
        metric.process({}, samples_of([(np.zeros((4, 4), np.int64),) * 2]))
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match='differ in size'):
        metric.process({}, samples_of([(np.zeros((4, 4), np.int64), np.zeros((4, 5), np.int64))]))
    only_mba = BoundaryMetric(metrics=['mBA'])
    assert math.isnan(only_mba.compute_metrics([{'mba': float('nan')}])['mBA'])


def with_paths(samples, names, reduce_zero_label=False):
    for sample, name in zip(samples, names):
        sample.update(img_path=f'/data/img_dir/{name}.jpg', reduce_zero_label=reduce_zero_label)
    return samples


@pytest.mark.parametrize('reduce_zero_label', [False, True])
def test_output_dir_writes_the_pngs_iou_metric_writes(pairs, tmp_path, reduce_zero_label):
    """mmseg's tools/test.py --out sets output_dir and keep_results: same files as IoUMetric."""
    import cv2
    names = ['a', 'b', 'c']
    results = {}
    for cls in (BoundaryMetric, IoUMetric):
        out = tmp_path / cls.__name__ / 'preds'  # not there yet: the metric makes it
        metric = cls(output_dir=str(out), keep_results=True)
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process({}, with_paths(samples_of(pairs), names, reduce_zero_label))
        results[cls] = metric.compute_metrics(metric.results)
        assert sorted(p.name for p in out.iterdir()) == ['a.png', 'b.png', 'c.png']
        for name, (_, pred) in zip(names, pairs):
            written = cv2.imread(str(out / f'{name}.png'), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(written, pred + int(reduce_zero_label))
    assert results[BoundaryMetric]['mIoU'] == results[IoUMetric]['mIoU']
    assert set(results[BoundaryMetric]) == {'mIoU', 'mBA', 'mBIoU'}


def test_format_only_writes_predictions_without_ground_truth(pairs, tmp_path):
    metric = METRICS.build(dict(type='BoundaryMetric', format_only=True,
                                output_dir=str(tmp_path / 'fmt')))
    metric.dataset_meta = dict(classes=CLASSES)
    samples = with_paths(samples_of(pairs), ['x', 'y', 'z'])
    for s in samples:
        del s['gt_sem_seg']  # a test split without labels
    metric.process({}, samples)
    assert metric.results == []
    assert metric.compute_metrics(metric.results) == {}
    assert sorted(p.name for p in (tmp_path / 'fmt').iterdir()) == ['x.png', 'y.png', 'z.png']
    with pytest.raises(ValueError, match='needs output_dir'):
        BoundaryMetric(format_only=True)


def test_iou_metric_arguments_are_accepted(pairs):
    # a child config's dict(type='BoundaryMetric') merged over mmseg's IoUMetric entry
    merged = METRICS.build(dict(type='BoundaryMetric', iou_metrics=['mIoU']))
    assert evaluate(merged, pairs) == evaluate(BoundaryMetric(), pairs)
    with pytest.raises(ValueError, match="not \\['mDice'\\].*IoUMetric"):
        BoundaryMetric(iou_metrics=['mIoU', 'mDice'])
    with pytest.raises(ValueError, match='iou_metrics'):
        BoundaryMetric(iou_metrics=['mIOU'])
    with pytest.raises(TypeError):
        BoundaryMetric(no_such_argument=1)
    # nan_to_num as IoUMetric applies it: class 'c' absent everywhere counts as 0
    two = [(np.where(g == 2, 0, g), np.where(p == 2, 0, p)) for g, p in pairs]
    ours = evaluate(BoundaryMetric(nan_to_num=0, metrics=['mIoU'], classwise=False), two)
    theirs = evaluate(IoUMetric(nan_to_num=0), two)
    assert ours['mIoU'] == theirs['mIoU'] < evaluate(BoundaryMetric(metrics=['mIoU']), two)['mIoU']
