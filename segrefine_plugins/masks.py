"""The one mask rule of the package: what a mask may be, and where its foreground is.

A single-object mask is an (H, W) array (or (H, W, 1), or a torch tensor, read on the CPU):

* **bool**: True is foreground (255 on the 0..255 scale);
* **uint8** 0..255. A uint8 mask whose values are all in {0, 1} (and not all 0) is refused:
  it is almost surely a 0/1 label mask that would read as empty; pass ``mask.astype(bool)``;
* **float** (16/32/64) probabilities in [0, 1] (finite), mapped to ``round(p * 255)``,
  where a caller accepts soft masks (the refiners do; the metrics do not: threshold
  probabilities yourself).

:func:`mask_to_uint8` gives the canonical (H, W) uint8 0..255 form (C-contiguous), and
:func:`foreground` its ``> above`` binarisation. Two thresholds exist, both published, and
every module uses one of these two names:

* :data:`REFINE_FOREGROUND_ABOVE` = 127: the published refiners binarise their input mask at
  ``> 127`` (a float mask: ``p >= 0.5``). Used by the refiners, the multi-object protocol's
  input and the CLI's overlay of the coarse mask.
* :data:`EVAL_FOREGROUND_ABOVE` = 128: the published evaluation reads 8-bit masks as
  foreground where ``> 128``. Used by the metrics and by the CLI for the refined outputs it
  writes as ``floor(p * 255)`` (so ``--binary`` outputs evaluate like the soft ones).

A mask of value exactly 128 is thus foreground as refiner input and background when
evaluated: the published code does the same; the golden parity tests pin both.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

#: Refiner input: foreground where the 0..255 value is > 127 (published refiners).
REFINE_FOREGROUND_ABOVE = 127
#: Evaluation: foreground where the 0..255 value is > 128 (published evaluation).
EVAL_FOREGROUND_ABOVE = 128

MaskLike = Union[np.ndarray, torch.Tensor]


def _as_2d_array(mask: MaskLike, name: str) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(mask).__name__}')
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f'{name} must be HxW, got shape {mask.shape}')
    if mask.size == 0:
        raise ValueError(f'{name} is empty: shape {mask.shape}')
    return mask


def _check_shape(mask: np.ndarray, shape: Optional[Tuple[int, int]], name: str) -> None:
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f'{name} size {mask.shape[0]}x{mask.shape[1]} differs from the image '
                         f'size {shape[0]}x{shape[1]}')


def _kinds(allow_float: bool) -> str:
    return 'bool, uint8 (0..255)' + (' or float (0..1)' if allow_float else
                                     '; threshold probabilities yourself, e.g. prob > 0.5')


def _check_uint8(mask: np.ndarray, name: str, above: int) -> None:
    if mask.max(initial=0) == 1:
        raise ValueError(f'{name} is uint8 with values only in {{0, 1}}; uint8 masks are read '
                         f'as 0..255 (foreground > {above}). Pass mask.astype(bool) (a mask '
                         f'file: save it as 0/255, e.g. mask * 255).')


def mask_to_uint8(mask: MaskLike, shape: Optional[Tuple[int, int]] = None, name: str = 'mask',
                  allow_float: bool = True) -> np.ndarray:
    """The canonical form of a mask: (H, W) uint8 0..255, C-contiguous.

    Args:
        mask: (H, W) or (H, W, 1) bool / uint8 0..255 / float in [0, 1] (numpy or torch).
        shape: the (H, W) it must have (the image's), or None.
        name: how error messages call it.
        allow_float: accept float probabilities (mapped to ``round(p * 255)``).

    Raises:
        ValueError: naming the problem (type, rank, size, dtype, 0/1 uint8, values).
    """
    mask = _as_2d_array(mask, name)
    _check_shape(mask, shape, name)
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.dtype == np.uint8:
        _check_uint8(mask, name, REFINE_FOREGROUND_ABOVE)
        return np.ascontiguousarray(mask)
    if allow_float and np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)):
            raise ValueError(f'{name} has non-finite values (nan / inf)')
        lo, hi = float(mask.min()), float(mask.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f'float {name} must be in [0, 1], got range [{lo}, {hi}]')
        return np.rint(mask.astype(np.float32) * 255.0).astype(np.uint8)
    raise ValueError(f'{name} dtype {mask.dtype} is not supported: use {_kinds(allow_float)}')


def foreground(mask: MaskLike, above: int, name: str = 'mask',
               shape: Optional[Tuple[int, int]] = None, allow_float: bool = True) -> np.ndarray:
    """(H, W) bool: where the mask's 0..255 value is ``> above`` (bool masks as they are).

    ``above`` is :data:`REFINE_FOREGROUND_ABOVE` (refiner input) or
    :data:`EVAL_FOREGROUND_ABOVE` (evaluation). Checks as :func:`mask_to_uint8`.
    """
    if above not in (REFINE_FOREGROUND_ABOVE, EVAL_FOREGROUND_ABOVE):
        raise ValueError(f'above must be REFINE_FOREGROUND_ABOVE (127) or '
                         f'EVAL_FOREGROUND_ABOVE (128), got {above!r}')
    arr = _as_2d_array(mask, name)
    if arr.dtype == np.bool_:
        _check_shape(arr, shape, name)
        return arr
    if arr.dtype == np.uint8:  # no copy before the comparison; the 0/1 message names `above`
        _check_shape(arr, shape, name)
        _check_uint8(arr, name, above)
        return arr > above
    return mask_to_uint8(arr, shape, name, allow_float) > above


def network_mask(mask_u8: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """The refiners' mask input: (..., H, W) uint8 0..255 -> float32 in [-1, 1], binarised at
    > :data:`REFINE_FOREGROUND_ABOVE` to {-1, +1} (published), or ``m / 255 * 2 - 1`` with
    ``soft`` (the refiners' ``soft_input``)."""
    if soft:
        return mask_u8.float().mul_(2.0 / 255.0).sub_(1.0)
    return (mask_u8 > REFINE_FOREGROUND_ABOVE).float().mul_(2).sub_(1)
