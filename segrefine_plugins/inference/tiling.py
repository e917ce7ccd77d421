"""The crop grid of tiled inference: window positions, chipping, accumulation.

Pure functions on integer geometry plus a small accumulator; nothing model-specific. The
rules are those of CascadePSP's published local step (REFERENCE.md section 2):

* windows of ``L`` px with ``step = L // 2 - 2 * chip`` (418 for ``L=900``, ``chip=16``);
  for ``i in range(size // step + 1)`` the window starts at ``i * step``; a window running
  past the edge is shifted to end at the edge, then clamped to ``[0, size]`` (so along a side
  shorter than ``L`` the window is the whole side); repeated windows are dropped;
* crops are the product of the column and row windows, columns in the outer loop (the order
  decides the float summation order of overlapping outputs, kept for parity);
* ``chip`` px are dropped from every crop side that is not on the image border, then the
  outputs are summed and divided by the number of crops covering each pixel.

4000x3000 at ``L=900`` gives 63 crops, 2048x1600 gives 12, anything within ``L`` x ``L``
gives one. Every crop of one image has the same size: ``min(L, H) x min(L, W)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch

#: Pixels dropped from crop sides that are not on the image border (published value).
CHIP = 16


@dataclass(frozen=True)
class Crop:
    """A crop window ``[y0, y1) x [x0, x1)`` of an image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> Tuple[slice, slice]:
        """(rows, cols) slices selecting the crop from an (..., H, W) array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def grid_step(L: int, chip: int = CHIP) -> int:
    """Window step ``L // 2 - 2 * chip``; raises ValueError when ``L`` is too small (< 66
    for ``chip=16``) to give a positive step."""
    if not isinstance(L, int) or isinstance(L, bool):
        raise ValueError(f'L must be an int, got {L!r}')
    step = L // 2 - 2 * chip
    if step < 1:
        raise ValueError(f'L={L} is too small for the crop grid: the step L // 2 - {2 * chip} '
                         f'must be >= 1, so L must be >= {2 * (2 * chip + 1)}')
    return step


def axis_windows(size: int, L: int, chip: int = CHIP) -> List[Tuple[int, int]]:
    """Distinct ``(start, end)`` windows along one side of ``size`` px, in published order."""
    if size < 1:
        raise ValueError(f'size must be >= 1, got {size}')
    step = grid_step(L, chip)
    windows: List[Tuple[int, int]] = []
    for i in range(size // step + 1):
        start, end = i * step, i * step + L
        if end > size:
            start, end = size - L, size
        window = (max(0, start), min(size, end))
        if window not in windows:
            windows.append(window)
    return windows


def crop_grid(height: int, width: int, L: int, chip: int = CHIP) -> List[Crop]:
    """All crops of an image of ``height x width`` px, columns outer, rows inner."""
    rows = axis_windows(height, L, chip)
    return [Crop(y0, y1, x0, x1) for x0, x1 in axis_windows(width, L, chip) for y0, y1 in rows]


def chip_crop(crop: Crop, height: int, width: int,
              chip: int = CHIP) -> Tuple[Tuple[slice, slice], Tuple[slice, slice]]:
    """Where a crop's output lands once ``chip`` px are dropped from its inner sides.

    Returns ``(image_slices, crop_slices)``: (rows, cols) in the image and the matching
    (rows, cols) in the crop's own output. A side is on the border when its start is 0 or its
    end is the image size; border sides keep all their pixels.
    """
    ch, cw = crop.shape

    def side(start: int, end: int, length: int, size: int) -> Tuple[slice, slice]:
        lo = chip if start != 0 else 0
        hi = chip if end != size else 0
        return slice(start + lo, end - hi), slice(lo, length - hi)

    (iy, cy), (ix, cx) = side(crop.y0, crop.y1, ch, height), side(crop.x0, crop.x1, cw, width)
    return (iy, ix), (cy, cx)


class TileAccumulator:
    """Sums chipped crop outputs and counts coverage, then averages.

    Args:
        height, width: image size.
        device: where the (height, width) float32 sum and count live (8 bytes per pixel).
        chip: pixels dropped from inner crop sides.
    """

    def __init__(self, height: int, width: int, device: torch.device | str = 'cpu',
                 chip: int = CHIP) -> None:
        self.height, self.width, self.chip = height, width, chip
        self.total = torch.zeros(height, width, dtype=torch.float32, device=device)
        self.count = torch.zeros(height, width, dtype=torch.float32, device=device)

    def add(self, crop: Crop, output: torch.Tensor) -> None:
        """Add one crop's (h, w) output (the crop's full size, before chipping)."""
        if tuple(output.shape[-2:]) != crop.shape:
            raise ValueError(f'output {tuple(output.shape)} does not match crop {crop.shape}')
        dst, src = chip_crop(crop, self.height, self.width, self.chip)
        self.total[dst] += output.reshape(crop.shape)[src].float()
        self.count[dst] += 1

    def result(self, fallback: torch.Tensor) -> torch.Tensor:
        """(height, width) average of the outputs; ``fallback`` where no crop landed."""
        return torch.where(self.count == 0, fallback.to(self.total.dtype),
                           self.total / self.count)
