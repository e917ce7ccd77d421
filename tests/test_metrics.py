"""segrefine_plugins.metrics: published mBA parity, IoU counts, multi-class mBA, Boundary IoU."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segrefine_plugins.metrics import (IoUAccumulator, MetricSummary, as_binary_mask,
                                       boundary_accuracy, boundary_iou, boundary_width,
                                       format_table, iou, iou_counts, mask_boundary, mba_radii,
                                       multiclass_boundary_accuracy)


def _golden_rows(golden_dir):
    return json.loads((golden_dir / 'index.json').read_text())['mba']


@pytest.fixture(scope='module')
def golden_mba(golden_dir):
    rows = _golden_rows(golden_dir)
    assert len(rows) == 5
    return [(row, np.load(golden_dir / row['file'])) for row in rows]


# ------------------------------------------------------------------ published parity
def test_mba_matches_every_golden_row(golden_mba):
    for row, d in golden_mba:
        assert abs(boundary_accuracy(d['gt'], d['pred']) - row['mba_pred']) < 1e-9, row['file']
        assert abs(boundary_accuracy(d['gt'], d['noisy']) - row['mba_noisy']) < 1e-9, row['file']


def test_iou_counts_match_every_golden_row(golden_mba):
    acc = IoUAccumulator()
    for row, d in golden_mba:
        assert iou_counts(d['gt'], d['pred']) == (row['intersection_pred'], row['union_pred'])
        acc.update(d['gt'], d['pred'])
    total_i = sum(r['intersection_pred'] for r, _ in golden_mba)
    total_u = sum(r['union_pred'] for r, _ in golden_mba)
    assert (acc.intersection, acc.union, acc.count) == (total_i, total_u, 5)
    assert acc.value == total_i / total_u


def test_uint8_masks_threshold_above_128(golden_mba):
    row, d = golden_mba[0]
    # 129 is foreground, 128 is background: the published '> 128' rule
    gt8 = np.where(d['gt'], 129, 128).astype(np.uint8)
    pred8 = np.where(d['pred'], 255, 0).astype(np.uint8)
    assert boundary_accuracy(gt8, pred8) == boundary_accuracy(d['gt'], d['pred'])
    assert iou_counts(gt8, pred8) == (row['intersection_pred'], row['union_pred'])


# ------------------------------------------------------------------ mBA radii and bands
def test_radii_rule_never_reaches_the_top_radius():
    assert mba_radii(267, 400) == [1, 1, 1, 1, 1]
    # 3492 + 2328 = 5820 -> max_r = 19.4: 1 + int(18.4 / 5 * i)
    assert mba_radii(2328, 3492) == [1, 4, 8, 12, 15]
    assert mba_radii(300, 300) == [1, 1, 1, 1, 1]
    assert max(mba_radii(3000, 3000)) < 20


def test_mba_vertical_edge_by_hand():
    # 600x600: max_r = 4 -> radii 1, 1, 2, 2, 3. A vertical edge's band is 2r columns; a
    # prediction one column too wide is wrong on 1 of them.
    gt = np.zeros((600, 600), bool)
    gt[:, :300] = True
    pred = np.zeros_like(gt)
    pred[:, :301] = True
    assert mba_radii(600, 600) == [1, 1, 2, 2, 3]
    expected = np.mean([1 - 1 / (2 * r) for r in (1, 1, 2, 2, 3)])
    assert boundary_accuracy(gt, pred) == pytest.approx(expected, abs=1e-12)
    assert boundary_accuracy(gt, gt) == 1.0
    assert boundary_accuracy(gt, ~gt) == 0.0


def test_mba_undefined_without_boundary():
    empty = np.zeros((20, 30), bool)
    full = np.ones((20, 30), bool)
    assert math.isnan(boundary_accuracy(empty, full))
    assert math.isnan(boundary_accuracy(full, full))  # image borders are not boundaries


@pytest.mark.parametrize('bad, match', [
    (np.zeros((4, 4), np.float32), 'dtype'),
    (np.eye(4, dtype=np.uint8), r'\{0, 1\}'),
    (np.zeros((4, 4), np.int64), 'dtype'),
    (np.zeros((4, 4, 3), bool), 'HxW'),
    (np.zeros((0, 4), bool), 'empty'),
    ([[True]], 'numpy'),
])
def test_bad_binary_masks_raise(bad, match):
    ok = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match=match):
        boundary_accuracy(ok, bad)
    with pytest.raises(ValueError, match=match):
        as_binary_mask(bad)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='differs'):
        boundary_accuracy(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match='differs'):
        iou_counts(np.zeros((4, 4), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match='differs'):
        multiclass_boundary_accuracy(np.zeros((4, 4), int), np.zeros((5, 4), int))


# ------------------------------------------------------------------ IoU
def test_iou_accumulates_sums_not_means():
    a = np.zeros((10, 10), bool)
    a[:5] = True                       # 50 px
    b = np.zeros((10, 10), bool)
    b[:1, :1] = True                   # 1 px
    acc = IoUAccumulator()
    assert acc.update(a, a) == (50, 50)
    assert acc.update(b, np.zeros_like(b)) == (0, 1)
    assert acc.value == 50 / 51        # the mean of per-image IoUs would be 0.5
    assert iou(b, np.zeros_like(b)) == 0.0
    assert math.isnan(iou(np.zeros_like(b), np.zeros_like(b)))
    assert math.isnan(IoUAccumulator().value)
    with pytest.raises(ValueError):
        acc.add_counts(5, 4)


# ------------------------------------------------------------------ multi-class mBA
def test_multiclass_two_halves_by_hand():
    gt = np.zeros((10, 10), np.int64)
    gt[:, 5:] = 1                      # band (radius 1, cross kernel) = columns 4 and 5
    pred = gt.copy()
    assert multiclass_boundary_accuracy(gt, pred) == 1.0
    pred[:, 5] = 0                     # column 5 wrong: 10 of 20 band pixels
    assert multiclass_boundary_accuracy(gt, pred) == 0.5
    pred[3, 0] = 1                     # outside the band: no effect
    assert multiclass_boundary_accuracy(gt, pred) == 0.5


def test_multiclass_void_is_excluded_by_hand():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, 5:] = 1
    gt[0, :] = 255                     # void top row
    # bands: columns 4-5 (rows 1-9) and, next to the void row, rows 0-1; row 0 is void and
    # is removed: 10 (row 1) + 16 (columns 4-5, rows 2-9) = 26 band pixels.
    pred = gt.copy()
    pred[0, :] = 7                     # predictions on void pixels never count
    assert multiclass_boundary_accuracy(gt, pred) == 1.0
    pred[1, 0] = 1                     # one wrong band pixel
    assert multiclass_boundary_accuracy(gt, pred) == pytest.approx(25 / 26, abs=1e-15)
    # with another void label the 255 row is an ordinary class
    assert multiclass_boundary_accuracy(gt, pred, ignore_index=99) < 25 / 26


def test_multiclass_three_classes_equals_binary_for_two():
    rng = np.random.default_rng(0)
    gt = np.zeros((40, 50), np.int32)
    gt[10:30, 5:25] = 3
    gt[5:20, 30:45] = 9
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.1] = 3
    value = multiclass_boundary_accuracy(gt, pred)
    band = np.zeros(gt.shape, bool)
    import cv2
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    for c in (0, 3, 9):
        band |= cv2.morphologyEx((gt == c).astype(np.uint8), cv2.MORPH_GRADIENT, k) > 0
    assert value == pytest.approx(np.count_nonzero((pred == gt) & band) / band.sum(), abs=1e-15)
    # two classes: same as the binary mBA
    two = (gt == 3)
    two_pred = (pred == 3)
    assert multiclass_boundary_accuracy(two.astype(np.uint8), two_pred.astype(np.uint8)) == \
        pytest.approx(boundary_accuracy(two, two_pred), abs=1e-15)
    assert math.isnan(multiclass_boundary_accuracy(np.full((5, 5), 255), np.zeros((5, 5), int)))
    with pytest.raises(ValueError, match='integer'):
        multiclass_boundary_accuracy(gt.astype(np.float32), pred)


# ------------------------------------------------------------------ Boundary IoU
def test_boundary_width():
    assert boundary_width(300, 400) == 10                 # 0.02 * 500
    assert boundary_width(10, 10) == 1                    # round(0.28) = 0 -> at least 1
    assert boundary_width(300, 400, dilation_ratio=0.005) == 2


def test_boundary_iou_squares_by_hand():
    gt = np.zeros((10, 10), bool)
    gt[2:8, 2:8] = True                # 6x6 square: a 20-pixel ring (d = 1)
    pred = np.zeros_like(gt)
    pred[2:8, 3:9] = True              # shifted one column: rings share rows 2 and 7, cols 3-7
    assert mask_boundary(gt, 1).sum() == 20
    assert boundary_iou(gt, pred) == pytest.approx(10 / 30, abs=1e-15)
    assert boundary_iou(gt, gt) == 1.0
    far = np.zeros_like(gt)
    far[0:2, 0:2] = True
    assert boundary_iou(gt, far) == 0.0
    assert boundary_iou(gt, np.zeros_like(gt)) == 0.0
    assert math.isnan(boundary_iou(np.zeros_like(gt), np.zeros_like(gt)))


def test_boundary_iou_image_border():
    full = np.ones((10, 10), bool)
    assert mask_boundary(full, 1).sum() == 36              # published: the border is a boundary
    assert mask_boundary(full, 2).sum() == 64
    assert mask_boundary(full, 1, image_border_is_boundary=False).sum() == 0
    left = np.zeros((10, 10), bool)
    left[:, :5] = True
    # border off: only the inner edge (column 4) is a boundary
    assert np.array_equal(np.nonzero(mask_boundary(left, 1, False).any(0))[0], [4])
    shifted = np.zeros_like(left)
    shifted[:, :6] = True
    assert boundary_iou(left, shifted, image_border_is_boundary=False) == 0.0
    # border on: rings of 26 and 28 px sharing rows 0 / 9 (cols 0-4) and column 0: 18 / 36
    assert boundary_iou(left, shifted) == 0.5
    with pytest.raises(ValueError, match='dilation_ratio'):
        boundary_iou(left, left, dilation_ratio=0)


def test_boundary_iou_width_grows_with_ratio():
    gt = np.zeros((200, 200), bool)
    gt[50:150, 50:150] = True
    pred = np.zeros_like(gt)
    pred[52:152, 50:150] = True        # off by 2 rows
    narrow = boundary_iou(gt, pred, dilation_ratio=0.004)   # d = 1: the top/bottom rings miss
    wide = boundary_iou(gt, pred, dilation_ratio=0.05)      # d = 14: mostly overlap
    assert narrow < 0.7 < wide < 1.0


# ------------------------------------------------------------------ summary and table
def test_metric_summary_equals_the_functions(golden_mba):
    summary = MetricSummary()
    for row, d in golden_mba:
        per = summary.update(d['gt'], d['noisy'], name=row['file'])
        assert per['mba'] == boundary_accuracy(d['gt'], d['noisy'])
    summary.update(np.zeros((30, 30), bool), np.zeros((30, 30), bool), name='empty')
    res = summary.result()
    pairs = [(d['gt'], d['noisy']) for _, d in golden_mba]
    assert res['images'] == 6 and res['mba_undefined'] == 1 and res['boundary_iou_undefined'] == 1
    assert res['mba'] == pytest.approx(np.mean([r['mba_noisy'] for r, _ in golden_mba]), abs=1e-12)
    assert res['boundary_iou'] == pytest.approx(np.mean([boundary_iou(g, p) for g, p in pairs]),
                                                abs=1e-12)
    counts = [iou_counts(g, p) for g, p in pairs]
    assert res['iou'] == sum(c[0] for c in counts) / sum(c[1] for c in counts)


def test_format_table_rows_and_delta():
    rows = {'coarse': {'iou': 0.5, 'mba': 0.25, 'boundary_iou': float('nan'), 'images': 3},
            'refined': {'iou': 0.75, 'mba': 0.5, 'boundary_iou': 0.125, 'images': 3}}
    lines = format_table(rows, delta=('coarse', 'refined')).splitlines()
    assert lines[0].split() == ['IoU', 'mBA', 'bIoU', 'images']
    assert lines[1].split() == ['coarse', '50.00', '25.00', 'nan', '3']
    assert lines[2].split() == ['refined', '75.00', '50.00', '12.50', '3']
    assert lines[3].split() == ['delta', '+25.00', '+25.00', 'nan']


def test_paired_delta_compares_the_same_images():
    """Boundary IoU is undefined where ground truth and prediction are both empty: the rows'
    own means then cover different images, and the delta is taken over the images defined
    in both (here unchanged where both are defined: delta 0, not the rows' difference)."""
    from segrefine_plugins.metrics import MetricSummary, format_table, paired_delta

    gt_obj = np.zeros((40, 40), bool)
    gt_obj[10:30, 10:30] = True
    near = np.zeros_like(gt_obj)
    near[11:30, 10:30] = True
    empty = np.zeros_like(gt_obj)
    coarse, refined = MetricSummary(), MetricSummary()
    for gt, c, r, name in ((gt_obj, near, near, 'a'), (empty, near, empty, 'b')):
        coarse.update(gt, c, name)
        refined.update(gt, r, name)
    a, b = coarse.result(), refined.result()
    assert b['boundary_iou_undefined'] == 1 and a['boundary_iou_undefined'] == 0
    assert b['boundary_iou'] - a['boundary_iou'] > 0.2          # the naive difference
    d = paired_delta(coarse, refined)
    assert d['boundary_iou'] == 0.0 and d['iou'] == b['iou'] - a['iou']
    table = format_table({'coarse': a, 'refined': b}, delta=('coarse', 'refined'),
                         delta_values=d)
    assert table.splitlines()[-1].split()[3] == '+0.00'
    other = MetricSummary()
    other.update(gt_obj, near, 'z')
    with pytest.raises(ValueError, match='same images'):
        paired_delta(coarse, other)
