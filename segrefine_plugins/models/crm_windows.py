"""Window geometry of CRM's encoder: which input window and which trunk / branch pixels a
rectangle of the feature map F depends on, and the align_corners=True linear resize restricted
to a range of output rows / columns.

Used by :meth:`segrefine_plugins.models.crm.CRMNet.encode_windows` (F computed window by
window, equal to the full pass within float rounding) and by
:mod:`segrefine_plugins.inference.crm_input` (input windows resized on demand).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol, Tuple

import torch

__all__ = ['InputWindows', 'Range', 'RegionPlan', 'TensorWindows', 'lerp_select',
           'linear_resize_weights', 'region_plan', 'resize_region']

Range = Tuple[int, int]


class InputWindows(Protocol):
    """What the windowed CRM encoder reads: the input's size and any window of it."""

    size: Tuple[int, int]

    def window(self, rows: Range, cols: Range) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, r1 - r0, c1 - c0) normalised image and (N, 1, ...) mask in [-1, 1]."""
        ...


class TensorWindows:
    """:class:`InputWindows` over tensors already in memory (windows are views)."""

    def __init__(self, rgb: torch.Tensor, seg: torch.Tensor) -> None:
        if rgb.dim() != 4 or rgb.shape[1] != 3 or seg.dim() != 4 or seg.shape[1] != 1 \
                or rgb.shape[0] != seg.shape[0] or rgb.shape[-2:] != seg.shape[-2:]:
            raise ValueError(f'need rgb (N, 3, H, W) and seg (N, 1, H, W) of one size, got '
                             f'{tuple(rgb.shape)} and {tuple(seg.shape)}')
        self.rgb, self.seg = rgb, seg
        self.size = (int(rgb.shape[-2]), int(rgb.shape[-1]))

    def window(self, rows: Range, cols: Range) -> Tuple[torch.Tensor, torch.Tensor]:
        (r0, r1), (c0, c1) = rows, cols
        return self.rgb[..., r0:r1, c0:c1], self.seg[..., r0:r1, c0:c1]


class RegionPlan(NamedTuple):
    """Along one axis: what :meth:`CRMNet.encode_region` needs to compute F[start:stop]."""

    sizes: Tuple[int, int, int]                   #: lengths of x_1 (= F), x_2, x_3
    cat: Tuple[int, int]                          #: range of the fused map before last_conv
    sources: Tuple[Tuple[int, int], ...]          #: ranges of x_1, x_2, x_3 that feed it
    window: Tuple[int, int]                       #: input range read by the trunk


def linear_resize_weights(in_size: int, out_size: int, start: int,
                          stop: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and weight of i1 of an align_corners=True linear resize.

    PyTorch's arithmetic: scale = (in - 1) / (out - 1) in float32, source = scale * o.
    """
    scale = torch.tensor(float(in_size - 1), dtype=torch.float32) / max(out_size - 1, 1)
    real = scale * torch.arange(start, stop, dtype=torch.float32)
    i0 = real.floor().long().clamp_(max=in_size - 1)
    lam = (real - i0).clamp_(0, 1)
    i1 = i0 + (i0 < in_size - 1).long()
    return i0, i1, lam


def region_plan(rng: Tuple[int, int], size: int, radii: Tuple[int, int, int]) -> RegionPlan:
    start, stop = int(rng[0]), int(rng[1])
    s1 = (size - 1) // 2 + 1
    s2 = (s1 - 1) // 2 + 1
    s3 = (s2 - 1) // 2 + 1
    if not 0 <= start < stop <= s1:
        raise ValueError(f'region [{start}, {stop}) is outside the feature map (size {s1})')
    c0, c1 = max(start - 1, 0), min(stop + 1, s1)       # last_conv is 3x3
    sources = [(c0, c1)]
    for n in (s2, s3):
        if n == s1:
            sources.append((c0, c1))
        else:
            i0, i1, _ = linear_resize_weights(n, s1, c0, c1)
            sources.append((int(i0[0]), int(i1[-1]) + 1))
    lo = min(stride * a - r for stride, (a, _), r in zip((2, 4, 8), sources, radii))
    hi = max(stride * (b - 1) + r for stride, (_, b), r in zip((2, 4, 8), sources, radii))
    lo = max(0, (lo - 8) // 8 * 8)                      # strided grids line up from here
    hi = min(size, hi + 9)
    return RegionPlan((s1, s2, s3), (c0, c1), tuple(sources), (lo, hi))


def resize_region(x: torch.Tensor, py: RegionPlan, px: RegionPlan, level: int) -> torch.Tensor:
    """Rows / columns ``plan.cat`` of the align_corners=True resize of x_k to x_1's size.

    ``x`` holds the branch output at source ranges ``plan.sources[level]``.
    """
    for dim, plan in ((2, py), (3, px)):
        n_in, n_out = plan.sizes[level], plan.sizes[0]
        (c0, c1), (s0, _) = plan.cat, plan.sources[level]
        if n_in == n_out:
            continue
        i0, i1, lam = linear_resize_weights(n_in, n_out, c0, c1)
        x = lerp_select(x, dim, i0 - s0, i1 - s0, lam)
    return x


def lerp_select(x: torch.Tensor, dim: int, i0: torch.Tensor, i1: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
    """``x[i0] * (1 - lam) + x[i1] * lam`` along ``dim`` of a 4-D tensor: one axis of a
    linear resize with the weights of :func:`linear_resize_weights` (indices relative to
    the first row / column ``x`` holds)."""
    shape = [1, 1, 1, 1]
    shape[dim] = -1
    lam = lam.to(device=x.device, dtype=x.dtype).view(shape)
    i0, i1 = i0.to(x.device), i1.to(x.device)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous():
        # channels-last: gather along the contiguous (N, H, W, C) view, which copies whole
        # C-vectors and keeps the result channels-last (same values; 5-11x faster than
        # index_select on the NCHW view along W, measured on 32 x 599 x 151 maps)
        nhwc, d = x.permute(0, 2, 3, 1), {2: 1, 3: 2}[dim]
        a = nhwc.index_select(d, i0).permute(0, 3, 1, 2)
        b = nhwc.index_select(d, i1).permute(0, 3, 1, 2)
    else:
        a, b = x.index_select(dim, i0), x.index_select(dim, i1)
    return a * (1 - lam) + b * lam
