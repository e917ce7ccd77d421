"""The published on-the-fly augmentation (REFERENCE.md section 6), numpy + OpenCV only.

Joint (image and mask): random crop of ``size x size`` (zero padding, bottom / right, when a
side is shorter, as torchvision's ``RandomCrop(pad_if_needed=True)`` pads both sides
symmetrically — here the pad is split the same way), horizontal flip with p = 0.5.
Image only: colour jitter (brightness 0.2, contrast 0.05, saturation 0.05, applied in a random
order as torchvision does) and random grayscale with p = 0.1.

Every function draws from the ``numpy.random.Generator`` it is given.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

__all__ = ['random_rescale', 'random_crop_flip', 'color_jitter', 'random_grayscale', 'to_gray']

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL / torchvision


def _pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph == 0 and pw == 0:
        return arr
    pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pad, mode='constant', constant_values=0)


def random_rescale(image: np.ndarray, mask: np.ndarray, scale_range: Tuple[float, float],
                   rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Resize image (area / bilinear) and soft mask (bilinear) by one random factor.

    Not part of the published recipe (an option of the dataset): down-scaling lets a small
    training crop cover more of the object. Returns uint8 arrays of the new size (>= 1 px).
    """
    f = float(rng.uniform(*scale_range))
    h, w = mask.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp), cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)


def random_crop_flip(image: np.ndarray, mask: np.ndarray, size: int,
                     rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Same random ``size x size`` crop (zero-padded if needed) and flip of image and mask.

    Args:
        image: (H, W, 3) uint8.
        mask: (H, W) any dtype.
        size: crop side in pixels (> 0).

    Returns:
        (size, size, 3) image and (size, size) mask, contiguous.
    """
    if size <= 0:
        raise ValueError(f'crop size must be positive, got {size}')
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f'image {image.shape[:2]} and mask {mask.shape[:2]} sizes differ')
    image, mask = _pad_to(image, size), _pad_to(mask, size)
    h, w = mask.shape[:2]
    y = int(rng.integers(h - size + 1))
    x = int(rng.integers(w - size + 1))
    image, mask = image[y:y + size, x:x + size], mask[y:y + size, x:x + size]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> (H, W, 1) luminance (float32)."""
    return (image.astype(np.float32) @ _GRAY)[..., None]


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.2,
                 contrast: float = 0.05, saturation: float = 0.05) -> np.ndarray:
    """torchvision-style ColorJitter on an (H, W, 3) uint8 RGB image; returns uint8.

    Each factor is drawn uniformly from [1 - v, 1 + v]; the three operations run in a random
    order: brightness scales, contrast blends with the mean luminance, saturation blends with
    the per-pixel luminance; results are clipped to [0, 255] after each step.
    """
    out = image.astype(np.float32)
    ops = rng.permutation(3)
    factors = [float(rng.uniform(1 - v, 1 + v)) for v in (brightness, contrast, saturation)]
    for op in ops:
        f = factors[op]
        if op == 0:
            out = out * f
        elif op == 1:
            out = out * f + float(to_gray(out).mean()) * (1 - f)
        else:
            out = out * f + to_gray(out) * (1 - f)
        np.clip(out, 0, 255, out=out)
    return np.rint(out).astype(np.uint8)


def random_grayscale(image: np.ndarray, rng: np.random.Generator, p: float = 0.1) -> np.ndarray:
    """With probability ``p`` replace an (H, W, 3) uint8 image by its luminance in 3 channels."""
    if rng.random() < p:
        gray = np.rint(np.clip(to_gray(image), 0, 255)).astype(np.uint8)
        return np.repeat(gray, 3, axis=2)
    return image
