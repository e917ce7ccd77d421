"""The published "modified argmax" that fuses refined objects into one label map.

REFERENCE.md section 4: start from label = the input map and confidence = 0.5 everywhere; for
each refined object, paste its probability into its box (multiplied by 0.51 for 'stuff'
classes) and where it exceeds the running confidence take its class and its value. Pixels
where nothing exceeds 0.5 keep the input label.

Only the running label and confidence maps are held (one (H, W) array each); every object is
pasted as it comes, so memory does not grow with the number of objects.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .components import Box, check_label_map

#: The published starting confidence: a refined probability must exceed it to take a pixel.
BASE_CONFIDENCE = 0.5


class ModifiedArgmax:
    """Running fusion of refined ROIs into a label map.

    Args:
        labels: (H, W) integer ids, the starting labels (copied; dtype kept).
        base_confidence: starting confidence everywhere (published: 0.5).

    Ties are resolved by order: a probability must be strictly greater than the running
    confidence, so of two equal values the one added first keeps the pixel.
    """

    def __init__(self, labels: np.ndarray, base_confidence: float = BASE_CONFIDENCE) -> None:
        check_label_map(labels)
        if not np.isfinite(base_confidence):
            raise ValueError(f'base_confidence must be finite, got {base_confidence}')
        self._labels = labels.copy()
        self._confidence = np.full(labels.shape, base_confidence, dtype=np.float32)
        self._info = np.iinfo(labels.dtype)

    @property
    def shape(self) -> Tuple[int, int]:
        """(H, W) of the maps."""
        return self._labels.shape  # type: ignore[return-value]

    def add(self, prob: np.ndarray, box: Box, class_id: int, scale: float = 1.0) -> None:
        """Paste one refined probability.

        Args:
            prob: (y1 - y0, x1 - x0) float probabilities in [0, 1] for the box.
            box: ``(y0, y1, x0, x1)``, exclusive ends, inside the image.
            class_id: the id written where ``prob * scale`` beats the running confidence; it
                must fit the label dtype.
            scale: multiplier, > 0 (the published 0.51 for 'stuff' classes, 1 otherwise).
        """
        y0, y1, x0, x1 = (int(v) for v in box)
        height, width = self.shape
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f'box {box} is empty or outside the {height}x{width} map')
        if not isinstance(prob, np.ndarray) or prob.shape != (y1 - y0, x1 - x0):
            raise ValueError(f'prob must be a numpy array of the box size {(y1 - y0, x1 - x0)}, '
                             f'got {getattr(prob, "shape", type(prob).__name__)}')
        if not np.issubdtype(prob.dtype, np.floating):
            raise ValueError(f'prob must be float in [0, 1], got dtype {prob.dtype}')
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'scale must be finite and > 0, got {scale}')
        class_id = int(class_id)
        if not self._info.min <= class_id <= self._info.max:
            raise ValueError(f'class id {class_id} does not fit the label dtype '
                             f'{self._labels.dtype}')
        value = prob.astype(np.float32, copy=False)
        lo, hi = float(value.min()), float(value.max())
        if not (0.0 <= lo and hi <= 1.0):   # also false for nan
            raise ValueError(f'prob must be in [0, 1], got range [{lo}, {hi}]')
        if scale != 1.0:
            value = value * np.float32(scale)
        conf = self._confidence[y0:y1, x0:x1]
        better = value > conf
        conf[better] = value[better]
        self._labels[y0:y1, x0:x1][better] = class_id

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(labels, confidence)``: (H, W) of the input dtype and (H, W) float32.

        These are the running maps themselves (no copy, to spare memory at 4K): a later
        :meth:`add` changes them.
        """
        return self._labels, self._confidence
