"""Dataset summaries of the binary metrics and a plain-text table of them."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional

import numpy as np

from .boundary_iou import boundary_iou
from .iou import IoUAccumulator
from .mba import boundary_accuracy

#: Column order and headers of :func:`format_table`.
COLUMNS = (('iou', 'IoU'), ('mba', 'mBA'), ('boundary_iou', 'bIoU'))


def _nanmean(values: List[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float('nan')


class MetricSummary:
    """Accumulates IoU (sum of intersections / sum of unions), mBA and Boundary IoU (means
    over images) for a set of binary (ground truth, prediction) pairs.

    Images where mBA or Boundary IoU is undefined (nan: a ground truth with no boundary) are
    left out of that mean and counted in ``undefined``.
    """

    def __init__(self, dilation_ratio: float = 0.02) -> None:
        self.dilation_ratio = dilation_ratio
        self.iou = IoUAccumulator()
        self.mba_values: List[float] = []
        self.boundary_iou_values: List[float] = []
        self.names: List[str] = []

    def update(self, gt: np.ndarray, pred: np.ndarray, name: Optional[str] = None) -> Dict[str, float]:
        """Add one pair ((H, W) bool, or uint8 0..255 thresholded at > 128); returns its
        per-image values (``iou`` is that image's own IoU)."""
        inter, union = self.iou.update(gt, pred)
        mba = boundary_accuracy(gt, pred)
        biou = boundary_iou(gt, pred, self.dilation_ratio)
        self.mba_values.append(mba)
        self.boundary_iou_values.append(biou)
        self.names.append(name if name is not None else str(len(self.names)))
        return {'iou': inter / union if union else float('nan'), 'mba': mba, 'boundary_iou': biou,
                'intersection': inter, 'union': union}

    @property
    def count(self) -> int:
        return self.iou.count

    def result(self) -> Dict[str, float]:
        """``{'iou', 'mba', 'boundary_iou', 'images', 'intersection', 'union',
        'mba_undefined', 'boundary_iou_undefined'}``; metric values are fractions in [0, 1]."""
        return {
            'iou': self.iou.value,
            'mba': _nanmean(self.mba_values),
            'boundary_iou': _nanmean(self.boundary_iou_values),
            'images': self.count,
            'intersection': self.iou.intersection,
            'union': self.iou.union,
            'mba_undefined': sum(math.isnan(v) for v in self.mba_values),
            'boundary_iou_undefined': sum(math.isnan(v) for v in self.boundary_iou_values),
        }


def paired_delta(before: MetricSummary, after: MetricSummary) -> Dict[str, float]:
    """``after - before`` per metric over the same images (two summaries updated with the
    same ground truths, in the same order): IoU from the pooled counts; mBA and Boundary IoU
    as means over the images where *both* are defined (Boundary IoU is undefined where a
    ground truth and its prediction are both empty, so the two rows' own means can cover
    different images); nan where no image qualifies."""
    if before.names != after.names:
        raise ValueError('paired_delta needs two summaries of the same images, in order')
    out = {'iou': after.iou.value - before.iou.value}
    for key, a, b in (('mba', before.mba_values, after.mba_values),
                      ('boundary_iou', before.boundary_iou_values, after.boundary_iou_values)):
        both = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
        out[key] = float(np.mean([y - x for x, y in both])) if both else float('nan')
    return out


def format_value(value: float, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals ('nan' stays 'nan')."""
    if math.isnan(value):
        return 'nan'
    return f'{100 * value:+.2f}' if signed else f'{100 * value:.2f}'


def format_table(rows: Mapping[str, Mapping[str, float]], delta: Optional[tuple] = None,
                 delta_values: Optional[Mapping[str, float]] = None) -> str:
    """Plain-text table of metric rows (values in percent, two decimals).

    Args:
        rows: ``{row name: MetricSummary.result()-like dict}``, printed in order.
        delta: optional ``(from_row, to_row)``: adds a row ``to - from`` per metric.
        delta_values: the delta row's values, when given (e.g. :func:`paired_delta`),
            instead of the difference of the two rows.
    """
    names = list(rows)
    if delta is not None:
        names.append('delta')
    w0 = max(len(n) for n in names)
    lines = [f'{"":<{w0}}' + ''.join(f'{h:>9}' for _, h in COLUMNS) + f'{"images":>9}']
    for name, row in rows.items():
        lines.append(f'{name:<{w0}}' + ''.join(f'{format_value(row[k]):>9}' for k, _ in COLUMNS)
                     + f'{int(row.get("images", 0)):>9}')
    if delta is not None:
        a, b = rows[delta[0]], rows[delta[1]]
        values = delta_values if delta_values is not None else {k: b[k] - a[k] for k, _ in COLUMNS}
        lines.append(f'{"delta":<{w0}}'
                     + ''.join(f'{format_value(values[k], signed=True):>9}' for k, _ in COLUMNS))
    return '\n'.join(lines)
