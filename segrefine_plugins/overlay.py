"""A side-by-side picture for people: the image with the coarse contour | with the refined one."""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

#: RGB colours (orange / azure: distinguishable with the common colour-vision deficiencies).
COARSE_COLOUR: Tuple[int, int, int] = (255, 120, 0)
REFINED_COLOUR: Tuple[int, int, int] = (0, 190, 255)
TINT = 0.25


def line_width(height: int, width: int) -> int:
    """Contour width in pixels: 2 at 400 px, about 8 at 4K (long side / 500)."""
    return max(2, int(round(max(height, width) / 500)))


def _panel(image: np.ndarray, fg: np.ndarray, colour: Tuple[int, int, int], label: str,
           t: int) -> np.ndarray:
    panel = image.copy()
    c = np.array(colour, np.float32)
    panel[fg] = (panel[fg].astype(np.float32) * (1 - TINT) + c * TINT).astype(np.uint8)
    contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    edge = max(1, t // 3)
    cv2.drawContours(panel, contours, -1, (0, 0, 0), t + 2 * edge, cv2.LINE_AA)
    cv2.drawContours(panel, contours, -1, colour, t, cv2.LINE_AA)
    h, w = fg.shape
    scale = max(0.45, max(h, w) / 1200)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    cv2.rectangle(panel, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(panel, label, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick,
                cv2.LINE_AA)
    return panel


def make_overlay(image: np.ndarray, coarse: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Side-by-side comparison picture.

    Args:
        image: (H, W, 3) uint8 RGB.
        coarse, refined: (H, W) bool foreground masks.

    Returns:
        (H, 2W + gap, 3) uint8 RGB: left, the image with the coarse mask lightly tinted and
        its contour in orange (labelled "coarse"); right, the same with the refined mask in
        azure ("refined"); contours have a dark edge and are long side / 500 px wide
        (at least 2), so they stay visible on any background and at 4K.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be HxWx3 uint8, got {image.dtype} {image.shape}')
    for name, m in (('coarse', coarse), ('refined', refined)):
        if m.shape != image.shape[:2] or m.dtype != np.bool_:
            raise ValueError(f'{name} must be an HxW bool mask of the image size '
                             f'{image.shape[:2]}, got {m.dtype} {m.shape}')
    h, w = coarse.shape
    t = line_width(h, w)
    gap = np.full((h, max(4, 2 * t), 3), 255, np.uint8)
    return np.concatenate([_panel(image, coarse, COARSE_COLOUR, 'coarse', t), gap,
                           _panel(image, refined, REFINED_COLOUR, 'refined', t)], axis=1)
