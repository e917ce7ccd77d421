"""CRM's input at one scale, computed window by window from the uint8 image.

The published pipeline normalises the whole image (float32, 12 bytes per pixel), reflect-pads
it (another copy) and resizes it to every scale. :class:`ScaledInput` gives the same numbers
for any window of that resized, padded input without holding any full-resolution float copy:
it gathers the needed uint8 pixels through a reflect index, normalises them and interpolates
them (bilinear, ``align_corners=True``, PyTorch's index arithmetic). At scale 1 the values are
bitwise those of normalise-then-pad; below 1 they match ``F.interpolate`` to float rounding
(~1e-7). The mask fed to a scale comes either from the binarised input mask (padded through
the same index) or from the previous scale's padded probability map, ``2 * (p - 0.5)``.

Memory: one window's pixels at a time (the encoder windows of ``CRMRefiner(tile_size=...)``),
whatever the image size.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..masks import network_mask
from ..models.crm_windows import InputWindows, Range, TensorWindows, lerp_select, \
    linear_resize_weights
from .base import normalize_uint8

__all__ = ['InputWindows', 'ScaledInput', 'TensorWindows', 'reflect_index']


def reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """(n + 2 * pad,) int64: the source index of every position of a reflect-padded axis
    (``F.pad(..., mode='reflect')``: -1 -> 1, n -> n - 2). Needs ``pad < n``."""
    if not 0 <= pad < n:
        raise ValueError(f'reflect padding of {pad} needs an axis longer than {pad}, got {n}')
    i = torch.arange(-pad, n + pad, device=device)
    return torch.where(i < 0, -i, torch.where(i >= n, 2 * (n - 1) - i, i))


class ScaledInput:
    """One scale of CRM's input, window by window (see the module docstring).

    Args:
        image: (3, H, W) uint8, RGB (or BGR with ``bgr=True``).
        mean, std: (1, 3, 1, 1) float32 normalisation (ImageNet, RGB order).
        pad: reflect padding on every side (the published 32).
        scale: in (0, 1]; the input is ``round((H + 2 pad) * scale) x round(...)``.
        mask: (H, W) uint8 0..255, binarised at > 127 (the first scale; read linearly
            with ``soft``), or
        prob: (H + 2 pad, W + 2 pad) float32 in [0, 1], the previous scale's output.
            Exactly one of ``mask`` / ``prob``.
        bgr: the image is BGR; it is read as RGB.
        soft: ``mask`` is read as ``m / 255 * 2 - 1`` instead of binarised (the refiners'
            ``soft_input``).
    """

    def __init__(self, image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, pad: int,
                 scale: float, mask: Optional[torch.Tensor] = None,
                 prob: Optional[torch.Tensor] = None, bgr: bool = False,
                 soft: bool = False) -> None:
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f'image must be a (3, H, W) uint8 tensor, got '
                             f'{tuple(image.shape)} {image.dtype}')
        if (mask is None) == (prob is None):
            raise ValueError('give exactly one of mask (first scale) and prob (later scales)')
        h, w = image.shape[1:]
        self.padded = (h + 2 * pad, w + 2 * pad)
        if mask is not None and tuple(mask.shape) != (h, w):
            raise ValueError(f'mask {tuple(mask.shape)} does not match the image {(h, w)}')
        if prob is not None and tuple(prob.shape) != self.padded:
            raise ValueError(f'prob {tuple(prob.shape)} is not the padded size {self.padded}')
        self.size = (round(self.padded[0] * scale), round(self.padded[1] * scale))
        if min(self.size) < 1:
            raise ValueError(f'scale {scale} shrinks the padded {self.padded[0]}x'
                             f'{self.padded[1]} input to {self.size[0]}x{self.size[1]} px; '
                             f'use a larger scale')
        self.image, self.mask, self.prob = image, mask, prob
        self.mean, self.std, self.bgr, self.soft = mean, std, bool(bgr), bool(soft)
        self.rows_index = reflect_index(h, pad, image.device)
        self.cols_index = reflect_index(w, pad, image.device)

    def _full_res(self, rows: torch.Tensor, cols: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rows / columns (sorted int64 indices) of the padded full-resolution image,
        normalised, and of the mask in [-1, 1]: (1, 3, len(rows), len(cols)) and (1, 1, ...).
        """
        ri, ci = self.rows_index[rows], self.cols_index[cols]
        rgb = normalize_uint8(self.image.index_select(1, ri).index_select(2, ci), self.mean,
                              self.std, self.bgr)
        if self.mask is not None:
            m = self.mask.index_select(0, ri).index_select(1, ci)
            seg = network_mask(m, self.soft)
        else:
            seg = self.prob.index_select(0, rows).index_select(1, cols).sub_(0.5).mul_(2)
        return rgb, seg.view(1, 1, len(rows), len(cols))

    def window(self, rows: Range, cols: Range) -> Tuple[torch.Tensor, torch.Tensor]:
        """(1, 3, r1 - r0, c1 - c0) normalised image and (1, 1, ...) mask in [-1, 1] of this
        scale's input (channels-last, fresh memory). Below scale 1 only the full-resolution
        rows and columns the interpolation reads are gathered (at most two per output row /
        column), so the work memory is a few times the window's, at any scale."""
        device = self.image.device
        picks, lerps = [], []
        for (a, b), n_in, n_out in ((rows, self.padded[0], self.size[0]),
                                    (cols, self.padded[1], self.size[1])):
            if not 0 <= a < b <= n_out:
                raise ValueError(f'window [{a}, {b}) is outside the input (size {n_out})')
            if n_in == n_out:
                picks.append(torch.arange(a, b, device=device))
                lerps.append(None)
            else:
                i0, i1, lam = (t.to(device) for t in linear_resize_weights(n_in, n_out, a, b))
                needed, inverse = torch.unique(torch.cat([i0, i1]), return_inverse=True)
                picks.append(needed)
                lerps.append((inverse[:b - a], inverse[b - a:], lam))
        rgb, seg = self._full_res(picks[0], picks[1])
        for dim, lerp in ((3, lerps[1]), (2, lerps[0])):  # columns first, as PyTorch
            if lerp is None:
                continue
            rgb, seg = lerp_select(rgb, dim, *lerp), lerp_select(seg, dim, *lerp)
        return (rgb.contiguous(memory_format=torch.channels_last),
                seg.contiguous(memory_format=torch.channels_last))
