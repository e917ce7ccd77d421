"""Segmentation metrics on numpy masks (numpy + OpenCV only).

* :func:`iou_counts` / :func:`iou` / :class:`IoUAccumulator`: IoU, accumulated over a
  dataset as published (sum of intersections / sum of unions).
* :func:`boundary_accuracy`: binary mBA exactly as CascadePSP's evaluation computes it.
* :func:`multiclass_boundary_accuracy`: mBA of label maps (band = union of per-class bands,
  void excluded).
* :func:`boundary_iou`: Boundary IoU (Cheng et al., CVPR 2021), dilation ratio 0.02.
* :func:`boundary_shift`: systematic (dy, dx) shift of a prediction's boundaries, in pixels.
* :class:`MetricSummary`, :func:`format_table`, :func:`paired_delta`: dataset summary, a
  text table, and the change between two summaries over the same images.

Binary masks are (H, W) bool, or uint8 0..255 thresholded at > 128 (the published rule).
"""
from .boundary_iou import boundary_iou, boundary_width, mask_boundary
from .boundary_shift import boundary_shift
from .iou import IoUAccumulator, iou, iou_counts
from .masks import as_binary_mask
from .mba import boundary_accuracy, mba_radii, multiclass_boundary_accuracy
from .summary import MetricSummary, format_table, paired_delta

__all__ = ['boundary_accuracy', 'multiclass_boundary_accuracy', 'mba_radii', 'iou', 'iou_counts',
           'IoUAccumulator', 'boundary_iou', 'boundary_width', 'mask_boundary', 'as_binary_mask',
           'boundary_shift',
           'MetricSummary', 'format_table', 'paired_delta']
