"""The original, un-normalised image of an mmseg data sample, at its original size.

mmseg predictions (``pred_sem_seg``) are at the original image size (``ori_shape``), but the
tensors a segmentor receives have been resized (and possibly flipped) by the data pipeline.
The refiner must see the image the prediction belongs to, so:

* ``'file'``: read ``img_path`` again, exactly as ``LoadImageFromFile`` does by default
  (``mmengine.fileio.get`` + ``mmcv.imfrombytes``, flag ``'color'``, cv2 decoder). Exact; works
  for every pipeline whose loading step is the default one. Its size must equal
  ``ori_shape``, otherwise a ValueError is raised (a custom loading step: use ``'inputs'``).
* ``'inputs'``: undo the pipeline on the packed input tensor: crop to ``img_shape``, undo
  ``flip``, resize (bilinear) to ``ori_shape``. Approximate (resampling twice), for images
  that have no file (``mmseg.apis.inference_model`` on arrays). mmcv pipelines carry BGR
  images, so the tensor is taken as BGR unless told otherwise.
* ``'auto'`` (default): ``'file'`` when the sample has an ``img_path``, else ``'inputs'``.

All functions return (H, W, 3) uint8 RGB arrays.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import mmcv
import numpy as np
import torch
from mmengine.fileio import get

IMAGE_SOURCES = ('auto', 'file', 'inputs')
CHANNEL_ORDERS = ('bgr', 'rgb')


def read_original(img_path: str) -> np.ndarray:
    """Read ``img_path`` as mmseg's default ``LoadImageFromFile`` does; (H, W, 3) uint8 RGB."""
    img = mmcv.imfrombytes(get(img_path), flag='color', channel_order='rgb', backend='cv2')
    if img is None:
        raise ValueError(f'cannot decode the image {img_path!r}')
    return img


def _unflip(img: np.ndarray, direction: Optional[str]) -> np.ndarray:
    if direction in (None, 'horizontal'):
        return img[:, ::-1]
    if direction == 'vertical':
        return img[::-1]
    if direction == 'diagonal':
        return img[::-1, ::-1]
    raise ValueError(f'unknown flip_direction {direction!r} in the data sample')


def restore_from_inputs(inputs: torch.Tensor, metainfo: dict, channel_order: str = 'bgr'
                        ) -> np.ndarray:
    """Undo the test pipeline on a packed (3, h, w) uint8 input; (H, W, 3) uint8 RGB.

    Uses ``img_shape`` (crop off padding), ``flip`` / ``flip_direction`` and ``ori_shape``
    from ``metainfo``.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f'inputs_channel_order must be one of {CHANNEL_ORDERS}, got '
                         f'{channel_order!r}')
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3 or inputs.shape[0] != 3:
        raise ValueError(f'cannot restore the original image from inputs of shape '
                         f'{tuple(getattr(inputs, "shape", ()))}: expected (3, h, w)')
    img = inputs.detach().cpu()
    if img.dtype != torch.uint8:
        img = img.round().clamp(0, 255).to(torch.uint8)
    img = img.permute(1, 2, 0).numpy()
    h, w = metainfo.get('img_shape', img.shape[:2])[:2]
    img = img[:h, :w]
    if metainfo.get('flip', False):
        img = _unflip(img, metainfo.get('flip_direction'))
    oh, ow = metainfo['ori_shape'][:2]
    if (oh, ow) != img.shape[:2]:
        img = cv2.resize(np.ascontiguousarray(img), (ow, oh), interpolation=cv2.INTER_LINEAR)
    if channel_order == 'bgr':
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def original_image(metainfo: dict, inputs: Optional[torch.Tensor] = None,
                   source: str = 'auto', channel_order: str = 'bgr') -> np.ndarray:
    """The original image of one sample, (H, W, 3) uint8 RGB of size ``ori_shape``.

    Args:
        metainfo: the sample's metainfo (``img_path``, ``ori_shape``, ``img_shape``, ``flip``).
        inputs: the sample's packed input tensor (3, h, w), needed for ``source='inputs'``.
        source: ``'auto'``, ``'file'`` or ``'inputs'`` (see the module docstring).
        channel_order: channel order of ``inputs`` (``'bgr'`` in mmcv pipelines).
    """
    if source not in IMAGE_SOURCES:
        raise ValueError(f'image_source must be one of {IMAGE_SOURCES}, got {source!r}')
    if 'ori_shape' not in metainfo:
        raise ValueError('the data sample has no ori_shape: cannot locate the original image')
    ori_shape = tuple(metainfo['ori_shape'][:2])
    img_path: Any = metainfo.get('img_path')
    if source == 'file' or (source == 'auto' and isinstance(img_path, str) and img_path):
        if not isinstance(img_path, str) or not img_path:
            raise ValueError("image_source='file' but the data sample has no img_path")
        img = read_original(img_path)
        if img.shape[:2] != ori_shape:
            raise ValueError(f'{img_path!r} reads as {img.shape[0]}x{img.shape[1]} but the '
                             f'sample\'s ori_shape is {ori_shape[0]}x{ori_shape[1]} (a custom '
                             f"loading step?); use image_source='inputs'")
        return img
    if inputs is None:
        raise ValueError('the data sample has no img_path and no input tensor was given: '
                         'cannot locate the original image')
    return restore_from_inputs(inputs, metainfo, channel_order)
