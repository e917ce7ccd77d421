"""Input checks shared by the metrics: binary masks and label maps as numpy arrays."""
from __future__ import annotations

import numpy as np

from ..masks import EVAL_FOREGROUND_ABOVE, foreground

#: uint8 masks are foreground where the value is > this (the published evaluation's rule;
#: :data:`segrefine_plugins.masks.EVAL_FOREGROUND_ABOVE`).
UINT8_THRESHOLD = EVAL_FOREGROUND_ABOVE


def as_binary_mask(mask: np.ndarray, name: str = 'mask') -> np.ndarray:
    """Return an (H, W) bool mask (the package's mask rule, :mod:`segrefine_plugins.masks`,
    at the evaluation threshold).

    Accepted inputs:

    * bool: used as is.
    * uint8 in 0..255: foreground where the value is > 128 (the published evaluation's
      threshold). A uint8 mask whose values are all in {0, 1} (and not all 0) is rejected:
      it would read as empty; pass ``mask.astype(bool)``.

    Anything else (float probabilities, other integer types, wrong rank) raises ValueError:
    threshold probabilities yourself, e.g. ``prob > 0.5``.
    """
    return foreground(mask, EVAL_FOREGROUND_ABOVE, name, allow_float=False)


def as_label_map(labels: np.ndarray, name: str = 'labels') -> np.ndarray:
    """Return an (H, W) integer label map unchanged after checking it (any integer dtype)."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(labels).__name__}')
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f'{name} must be a non-empty HxW array, got shape {labels.shape}')
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f'{name} must hold integer class ids, got dtype {labels.dtype}')
    return labels


def check_same_shape(gt: np.ndarray, pred: np.ndarray) -> None:
    """Raise ValueError unless the two (H, W) arrays have the same shape."""
    if gt.shape != pred.shape:
        raise ValueError(f'prediction size {pred.shape[0]}x{pred.shape[1]} differs from the '
                         f'ground-truth size {gt.shape[0]}x{gt.shape[1]}')


def binary_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and binarise a (ground truth, prediction) pair with :func:`as_binary_mask`."""
    g = as_binary_mask(gt, 'gt')
    p = as_binary_mask(pred, 'pred')
    check_same_shape(g, p)
    return g, p
