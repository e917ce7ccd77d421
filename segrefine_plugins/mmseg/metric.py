"""``BoundaryMetric``: mIoU, multi-class mBA and mean Boundary IoU in one mmseg evaluator.

For ``test_evaluator`` / ``val_evaluator``::

    test_evaluator = dict(type='BoundaryMetric')   # -> mIoU, mBA, mBIoU (percent)

* **mIoU** as mmseg's ``IoUMetric`` computes it: per-class intersections and unions summed
  over the dataset (ground-truth ``ignore_index`` pixels excluded), IoU per class, mean over
  the classes with a non-empty union.
* **mBA**: CascadePSP's multi-class mean boundary accuracy of each image
  (:func:`segrefine_plugins.metrics.multiclass_boundary_accuracy`: five radii from the image
  size, band = union of the per-class ground-truth bands, void excluded), averaged over the
  images where it is defined (an image with a single valid class has no band; their number is
  logged).
* **mBIoU**: Boundary IoU (Cheng et al., CVPR 2021) per class: the pixels of the
  ground-truth / predicted class mask within ``d = dilation_ratio * image diagonal`` of its
  contour (:func:`segrefine_plugins.metrics.mask_boundary`, image border counted as contour,
  as in the published code); their intersections and unions are summed over the dataset like
  mIoU's, ground-truth void pixels excluded; mean over the classes with a non-empty union.

It takes ``IoUMetric``'s arguments, so it replaces ``IoUMetric`` by its type alone (a child
config's ``test_evaluator = dict(type='BoundaryMetric')`` merges over mmseg's
``dict(type='IoUMetric', iou_metrics=['mIoU'])`` without ``_delete_=True``), and mmseg's
``tools/test.py --out DIR`` (which sets ``output_dir`` and ``keep_results``) works: every
prediction is written to ``DIR/<image name>.png`` as ``IoUMetric`` writes it; with
``format_only=True`` nothing is scored (no ground truth needed) and no metrics are returned.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmseg.registry import METRICS

from ..metrics import boundary_width, mask_boundary, multiclass_boundary_accuracy

METRIC_NAMES = ('mIoU', 'mBA', 'mBIoU')
#: IoUMetric's ``iou_metrics`` choices; BoundaryMetric computes only mIoU of them
IOU_METRIC_NAMES = ('mIoU', 'mDice', 'mFscore')


def class_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (intersection, union) pixel counts of one label map, void excluded.

    Predicted ids outside ``[0, num_classes)`` count in no class (as in ``IoUMetric``).
    """
    valid = gt != ignore_index
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    p_in = (p >= 0) & (p < num_classes)
    hit = g[g == p]
    inter = np.bincount(hit[(hit >= 0) & (hit < num_classes)], minlength=num_classes)
    area_g = np.bincount(g[(g >= 0) & (g < num_classes)], minlength=num_classes)
    area_p = np.bincount(p[p_in], minlength=num_classes)
    return inter[:num_classes], (area_g + area_p - inter)[:num_classes]


def boundary_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int,
                    dilation_ratio: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Boundary IoU (intersection, union) counts of one label map, void excluded.

    Each class mask's boundary is computed on the bounding box of ground truth | prediction
    (grown by one pixel), which equals the full-image computation: outside it both masks are
    empty.
    """
    h, w = gt.shape
    d = boundary_width(h, w, dilation_ratio)
    valid = gt != ignore_index
    inter = np.zeros(num_classes, np.int64)
    union = np.zeros(num_classes, np.int64)
    present = np.union1d(np.unique(gt[valid]), np.unique(pred[valid]))
    for c in present[(present >= 0) & (present < num_classes)]:
        g = gt == c
        p = (pred == c) & valid
        ys, xs = np.nonzero(g | p)
        y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h)
        x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w)
        gb = mask_boundary(g[y0:y1, x0:x1], d)
        pb = mask_boundary(p[y0:y1, x0:x1], d) & valid[y0:y1, x0:x1]
        inter[c] = np.count_nonzero(gb & pb)
        union[c] = np.count_nonzero(gb | pb)
    return inter, union


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float('nan')


@METRICS.register_module()
class BoundaryMetric(BaseMetric):
    """mIoU, multi-class mBA and mean Boundary IoU of semantic segmentation, in percent.

    Args:
        ignore_index: void label of the ground truth (mmseg: 255).
        dilation_ratio: Boundary IoU's boundary width relative to the image diagonal (0.02).
        metrics: which of ``'mIoU'``, ``'mBA'``, ``'mBIoU'`` to report.
        classwise: log a per-class IoU / Boundary IoU table.
        output_dir: write every prediction as ``<output_dir>/<image name>.png`` (class ids,
            8-bit, or 16-bit where an id exceeds 255; ``+ 1`` for ``reduce_zero_label``
            datasets, as ``IoUMetric`` does). mmseg's ``tools/test.py --out DIR`` sets it.
        format_only: only write the predictions (needs ``output_dir``); nothing is scored,
            ground truth may be absent, no metrics are returned.
        keep_results: accepted for ``tools/test.py --out`` (which sets it); the written
            files are always kept.
        iou_metrics, nan_to_num, beta: ``IoUMetric``'s arguments, accepted so that a config
            inheriting ``dict(type='IoUMetric', iou_metrics=['mIoU'])`` can switch the type
            alone. Only ``'mIoU'`` is computed (add an ``IoUMetric`` to a list of evaluators
            for mDice / mFscore); ``nan_to_num`` replaces the per-class NaNs (classes absent
            from ground truth and prediction) before the mIoU / mBIoU means, as in
            ``IoUMetric``; ``beta`` only concerns mFscore.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.

    Raises:
        ValueError: unknown ``metrics`` / ``iou_metrics`` entries, a non-positive
            ``dilation_ratio``, or ``format_only`` without ``output_dir``.
    """

    def __init__(self, ignore_index: int = 255, dilation_ratio: float = 0.02,
                 metrics: Sequence[str] = METRIC_NAMES, classwise: bool = True,
                 output_dir: Optional[str] = None, format_only: bool = False,
                 keep_results: bool = False, iou_metrics: Sequence[str] = ('mIoU',),
                 nan_to_num: Optional[float] = None, beta: float = 1,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(metrics, str):
            metrics = [metrics]
        unknown = [m for m in metrics if m not in METRIC_NAMES]
        if unknown or not metrics:
            raise ValueError(f'BoundaryMetric: metrics must be a non-empty subset of '
                             f'{METRIC_NAMES}, got {list(metrics)!r}')
        if isinstance(iou_metrics, str):
            iou_metrics = [iou_metrics]
        if any(m not in IOU_METRIC_NAMES for m in iou_metrics):
            raise ValueError(f'BoundaryMetric: iou_metrics entries must be among '
                             f'{IOU_METRIC_NAMES}, got {list(iou_metrics)!r}')
        if any(m != 'mIoU' for m in iou_metrics):
            raise ValueError(f'BoundaryMetric computes mIoU, mBA and mBIoU, not '
                             f'{[m for m in iou_metrics if m != "mIoU"]}: use a list of '
                             f'evaluators, [dict(type=\'IoUMetric\', iou_metrics=[...]), '
                             f'dict(type=\'BoundaryMetric\')]')
        if not (isinstance(dilation_ratio, (int, float)) and 0 < dilation_ratio):
            raise ValueError(f'BoundaryMetric: dilation_ratio must be > 0, got {dilation_ratio!r}')
        if format_only and not output_dir:
            raise ValueError('BoundaryMetric: format_only=True writes the predictions only and '
                             'needs output_dir (the folder to write them to)')
        self.ignore_index = int(ignore_index)
        self.dilation_ratio = float(dilation_ratio)
        self.metrics = tuple(metrics)
        self.classwise = bool(classwise)
        self.output_dir = None if output_dir is None else str(output_dir)
        self.format_only = bool(format_only)
        self.keep_results = bool(keep_results)
        self.nan_to_num = nan_to_num
        self.beta = beta
        if self.output_dir:
            # every rank may write before rank 0 gets here: each makes the folder
            os.makedirs(self.output_dir, exist_ok=True)

    def _num_classes(self) -> int:
        meta = self.dataset_meta or {}
        if not meta.get('classes'):
            raise ValueError('BoundaryMetric needs dataset_meta["classes"] (the evaluator sets '
                             'it from the dataset)')
        return len(meta['classes'])

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Count one batch: per image IoU / Boundary IoU counts and mBA; write the
        predictions when ``output_dir`` is set."""
        num_classes = None if self.format_only else self._num_classes()
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            if self.output_dir:
                self._write(sample, pred)
            if self.format_only:
                continue
            gt = sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            if pred.shape != gt.shape:
                raise ValueError(f'BoundaryMetric: prediction {pred.shape} and ground truth '
                                 f'{gt.shape} differ in size ({sample.get("img_path")})')
            result: Dict[str, Any] = {}
            if 'mIoU' in self.metrics:
                result['iou'] = class_counts(gt, pred, num_classes, self.ignore_index)
            if 'mBIoU' in self.metrics:
                result['biou'] = boundary_counts(gt, pred, num_classes, self.ignore_index,
                                                 self.dilation_ratio)
            if 'mBA' in self.metrics:
                result['mba'] = multiclass_boundary_accuracy(gt, pred, self.ignore_index)
            self.results.append(result)

    def _write(self, sample: dict, pred: np.ndarray) -> None:
        """``pred`` as ``<output_dir>/<image name>.png`` (IoUMetric's naming and values)."""
        img_path = sample.get('img_path')
        if not img_path:
            raise ValueError('BoundaryMetric: output_dir needs the image path of each sample '
                             '(img_path) to name the written prediction')
        labels = pred.astype(np.int64) + (1 if sample.get('reduce_zero_label', False) else 0)
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
            raise ValueError(f'BoundaryMetric: class ids {labels.min()}..{labels.max()} of '
                             f'{img_path} do not fit a PNG')
        labels = labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16)
        path = osp.join(self.output_dir, osp.splitext(osp.basename(img_path))[0] + '.png')
        if not cv2.imwrite(path, labels):
            raise OSError(f'BoundaryMetric: could not write {path}')

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Dataset metrics in percent (two decimals), as mmseg reports them; none with
        ``format_only``."""
        if self.format_only:
            print_log(f'BoundaryMetric: format_only: predictions written to {self.output_dir}, '
                      f'nothing scored', logger='current')
            return {}
        out: Dict[str, float] = {}
        table: Dict[str, np.ndarray] = {}
        for key, name in (('iou', 'mIoU'), ('biou', 'mBIoU')):
            if name not in self.metrics:
                continue
            inter = sum(r[key][0] for r in results)
            union = sum(r[key][1] for r in results)
            per_class = _ratio(inter, union)
            if self.nan_to_num is not None:
                per_class = np.nan_to_num(per_class, nan=self.nan_to_num)
            table[name[1:]] = per_class
            out[name] = round(100 * _nanmean(per_class), 2)
        if 'mBA' in self.metrics:
            values = np.array([r['mba'] for r in results], dtype=np.float64)
            out['mBA'] = round(100 * _nanmean(values), 2)
            undefined = int(np.isnan(values).sum())
            if undefined:
                print_log(f'BoundaryMetric: mBA undefined (no class boundary) on {undefined} of '
                          f'{len(values)} images; averaged over the others', logger='current')
        if self.classwise and table:
            print_log('per-class results:\n' + self._table(table), logger='current')
        return out

    def _table(self, columns: Dict[str, np.ndarray]) -> str:
        names = [str(n) for n in self.dataset_meta['classes']]
        w0 = max(len('class'), *(len(n) for n in names))
        lines = [f'{"class":<{w0}}' + ''.join(f'{c:>9}' for c in columns)]
        for i, name in enumerate(names):
            cells = ''.join('      nan' if math.isnan(v[i]) else f'{100 * v[i]:9.2f}'
                            for v in columns.values())
            lines.append(f'{name:<{w0}}{cells}')
        return '\n'.join(lines)
