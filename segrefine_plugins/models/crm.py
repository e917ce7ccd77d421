"""CRM, the Continuous Refinement Model (CVPR 2022): encoder and implicit (LIIF-style) decoder.

Parameter names follow the published checkpoint (``feats``, ``aspp_``, ``imnet``), so the
published file loads strictly.

* :meth:`CRMNet.encode` ``(rgb, seg) -> F``: a dilated ResNet trunk on cat(rgb, seg) and three
  1x1 branches fused by a 3x3 conv into a 256-channel map at 1/2 resolution.
* :meth:`CRMNet.decode` ``(F, coord, cell) -> logits``: the published query decoding, literally
  (grid_sample on the 256-channel map, a 262-value MLP input per query and neighbour).
* :class:`QueryDecoder` (from :meth:`CRMNet.query_decoder`): the same numbers, computed faster:
  the feature part of the first MLP layer is applied once per feature pixel (a 1x1 conv
  256 -> 32), nearest-neighbour sampling is integer index arithmetic, and only the queries of
  one chunk exist at a time.

**Deliberate quirks (parity):** ``feats.layer4`` is built so that the published checkpoint
loads strictly, but it is never run (the published model does not use its output); x_1 is
taken *after* bn1 + ReLU (CascadePSP takes it before); the four neighbour predictions are
weighted by the *diagonally opposite* neighbour's area (LIIF's local ensemble).
"""
from __future__ import annotations

import copy
from typing import NamedTuple, Optional, Protocol, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import DilatedResNet

#: Channels of the fused feature map F (and of the MLP's feature input).
FEAT_CHANNELS = 256
#: MLP input: feature (256) + relative position (2) + query coordinate (2) + cell (2).
MLP_IN = FEAT_CHANNELS + 6
#: Shift added to query coordinates before nearest-neighbour sampling (published value).
EPS_SHIFT = 1e-6
#: (vx, vy) neighbour shifts in the published order; prediction k is weighted by area 3 - k.
SHIFTS: Tuple[Tuple[int, int], ...] = ((-1, -1), (-1, 1), (1, -1), (1, 1))

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


def make_coord(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of ``n`` pixels in [-1, 1]: ``-1 + (2i + 1) / n``, (n,) float32.

    Computed in float32 in the published order (``(v0 + r) + (2r) * i``) so that
    nearest-neighbour choices match the published code bit for bit.
    """
    r = 1.0 / n
    return (-1.0 + r) + (2.0 * r) * torch.arange(n, device=device, dtype=torch.float32)


def grid_coords(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Query coordinates of every pixel of a ``height x width`` grid: (H*W, 2) float32, (y, x)."""
    ys, xs = make_coord(height, device), make_coord(width, device)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).reshape(-1, 2)


class _ConvBNReLU(nn.Module):
    """Conv1x1 (no bias) + BN + ReLU; names ``atrous_conv``, ``bn`` as published."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.atrous_conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class CRMFusion(nn.Module):
    """``aspp_``: 1x1 branches on x_1, x_2, x_3, resized to x_1's size and fused by a 3x3 conv.

    Args:
        in_channels: channels of (x_1, x_2, x_3), (64, 256, 1024) for ResNet-50.

    Branch outputs are 64, 64 and 128 channels whatever the trunk (the published names say
    128/256/1024 after the ResNet-50 input widths), so F always has 256 channels.
    """

    def __init__(self, in_channels: Sequence[int] = (64, 256, 1024),
                 feat_channels: int = FEAT_CHANNELS) -> None:
        super().__init__()
        if feat_channels < 4 or feat_channels % 4:
            raise ValueError(f'feat_channels must be a positive multiple of 4, got {feat_channels}')
        c1, c2, c3 = in_channels
        q = feat_channels // 4  # published: 64, 64, 128 branch channels for F = 256
        self.aspp1_128 = _ConvBNReLU(c1, q)
        self.aspp1_256 = _ConvBNReLU(c2, q)
        self.aspp1_1024 = _ConvBNReLU(c3, 2 * q)
        self.bn1_128 = nn.BatchNorm2d(q)
        self.bn1_256 = nn.BatchNorm2d(q)
        self.bn1_1024 = nn.BatchNorm2d(2 * q)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        self.last_conv = nn.Sequential(
            nn.Conv2d(feat_channels, feat_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(feat_channels), nn.ReLU(inplace=True), nn.Dropout(0.5))

    def branches(self, x_1: torch.Tensor, x_2: torch.Tensor,
                 x_3: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three branch outputs at their own resolutions (64, 64, 128 channels)."""
        b1 = self.dropout(self.relu(self.bn1_128(self.aspp1_128(x_1))))
        b2 = self.dropout(self.relu(self.bn1_256(self.aspp1_256(x_2))))
        b3 = self.dropout(self.relu(self.bn1_1024(self.aspp1_1024(x_3))))
        return b1, b2, b3

    def forward(self, x_1: torch.Tensor, x_2: torch.Tensor, x_3: torch.Tensor) -> torch.Tensor:
        b1, b2, b3 = self.branches(x_1, x_2, x_3)
        size = b1.shape[-2:]
        b2 = F.interpolate(b2, size=size, mode='bilinear', align_corners=True)
        b3 = F.interpolate(b3, size=size, mode='bilinear', align_corners=True)
        return self.last_conv(torch.cat([b1, b2, b3], dim=1))


class ImplicitMLP(nn.Module):
    """``imnet``: Linear 262 -> 32 -> 32 -> 32 -> 32 -> 1 with ReLUs (names ``layers.0/2/4/6/8``)."""

    def __init__(self, in_dim: int = MLP_IN, hidden: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(hidden, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CRMNet(nn.Module):
    """The CRM network (published: ResNet-50 trunk, 24.3 M parameters, 9.3 M of them used).

    Args:
        blocks: bottleneck blocks per trunk layer, (3, 4, 6, 3) for the published model.
        width: trunk base width (64 published); x_1, x_2, x_3 have width, 4 * width and
            16 * width channels.
        feat_channels: channels of F (256 published); the branches give F/4, F/4, F/2.
            Smaller values make small, fast variants (the shipped default).
        hidden: width of the MLP's hidden layers (32 published).
    """

    def __init__(self, blocks: Sequence[int] = (3, 4, 6, 3), width: int = 64,
                 feat_channels: int = FEAT_CHANNELS, hidden: int = 32) -> None:
        super().__init__()
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f'blocks must be four positive integers, got {tuple(blocks)}')
        if int(width) < 1:
            raise ValueError(f'width must be a positive integer, got {width}')
        self.blocks = tuple(int(b) for b in blocks)
        self.width = int(width)
        # layer4 is kept (never run) so that the published checkpoint loads strictly.
        self.feats = DilatedResNet(4, self.blocks, self.width, with_layer4=True)
        self.feat_channels, self.hidden = int(feat_channels), int(hidden)
        self.aspp_ = CRMFusion((self.width, 4 * self.width, 16 * self.width), self.feat_channels)
        self.imnet = ImplicitMLP(self.feat_channels + 6, self.hidden)

    # ------------------------------------------------------------------ encoder
    def trunk(self, rgb: torch.Tensor,
              seg: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_1 (1/2, after bn1 + ReLU), x_2 (layer1, 1/4), x_3 (layer3, 1/8); layer4 not run."""
        f = self.feats
        x_1 = f.relu(f.bn1(f.conv1(torch.cat([rgb, seg], dim=1))))
        x_2 = f.layer1(f.maxpool(x_1))
        x_3 = f.layer3(f.layer2(x_2))
        return x_1, x_2, x_3

    def encode(self, rgb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Feature map F.

        Args:
            rgb: (N, 3, H, W) float, ImageNet-normalised.
            seg: (N, 1, H, W) float in [-1, 1] (foreground +1).

        Returns:
            (N, 256, ceil(H/2), ceil(W/2)) float.
        """
        if rgb.dim() != 4 or rgb.shape[1] != 3 or seg.dim() != 4 or seg.shape[1] != 1 \
                or rgb.shape[0] != seg.shape[0] or rgb.shape[-2:] != seg.shape[-2:]:
            raise ValueError(f'encode needs rgb (N,3,H,W) and seg (N,1,H,W) of one size, got '
                             f'{tuple(rgb.shape)} and {tuple(seg.shape)}')
        return self.aspp_(*self.trunk(rgb, seg))

    def feature_size(self, height: int, width: int) -> Tuple[int, int]:
        """Size (Hf, Wf) of F for an input of ``height x width`` (conv1: 7x7, stride 2, pad 3)."""
        return (height - 1) // 2 + 1, (width - 1) // 2 + 1

    def receptive_radii(self) -> Tuple[int, int, int]:
        """Input-pixel radius of the receptive field of one pixel of x_1, x_2 and x_3.

        x_k pixel o (stride 2, 4, 8) depends on input pixels within ``stride * o +- radius``.
        """
        b0, b1, b2, _ = self.blocks
        r1 = 3                                               # conv1 7x7 at stride 2
        r2 = r1 + 2 + 4 * b0                                 # max-pool, layer1 (3x3 at 1/4)
        r3 = r2 + 4 + 8 * (b1 - 1) + 8 + 16 * (b2 - 1)       # layer2 (s2), layer3 (dil. 2)
        return r1, r2, r3

    def encode_region(self, rgb: torch.Tensor, seg: torch.Tensor, rows: Range,
                      cols: Range) -> torch.Tensor:
        """Feature pixels ``F[:, :, r0:r1, c0:c1]`` computed from a window of the input only.

        Equal to ``encode(rgb, seg)[:, :, r0:r1, c0:c1]`` within float rounding: the window
        adds every input pixel the region depends on (the receptive-field radius) and starts
        on a multiple of 8, so every strided grid lines up; rows and columns outside the image
        are zero-padded exactly as in the full pass. Memory is that of the window, whatever
        the image size.

        Args:
            rgb, seg: as for :meth:`encode`, the whole image (only the window is read).
            rows, cols: [start, stop) ranges on F (size :meth:`feature_size`).

        Returns:
            (N, F, r1 - r0, c1 - c0) float.
        """
        return self.encode_windows(TensorWindows(rgb, seg), rows, cols)

    def encode_windows(self, inputs: InputWindows, rows: Range, cols: Range) -> torch.Tensor:
        """:meth:`encode_region` reading the input through ``inputs.window`` (the only
        window read is the receptive field of the region), so that the full input need
        not exist in memory (see :class:`segrefine_plugins.inference.crm_input.ScaledInput`).
        """
        height, width = inputs.size
        plans = [_region_plan(rng, size, self.receptive_radii())
                 for rng, size in ((rows, height), (cols, width))]
        x_1, x_2, x_3 = self.trunk(*inputs.window(plans[0].window, plans[1].window))
        (y0, _), (x0, _) = plans[0].window, plans[1].window
        pieces = []
        for k, x in enumerate((x_1, x_2, x_3)):
            stride = 2 ** (k + 1)
            (s0, s1), (t0, t1) = plans[0].sources[k], plans[1].sources[k]
            oy, ox = y0 // stride, x0 // stride
            pieces.append(x[..., s0 - oy:s1 - oy, t0 - ox:t1 - ox])
        b1, b2, b3 = self.aspp_.branches(*pieces)
        b2 = _resize_region(b2, plans[0], plans[1], level=1)
        b3 = _resize_region(b3, plans[0], plans[1], level=2)
        out = self.aspp_.last_conv(torch.cat([b1, b2, b3], dim=1))
        (c0, _), (d0, _) = plans[0].cat, plans[1].cat
        return out[..., rows[0] - c0:rows[1] - c0, cols[0] - d0:cols[1] - d0]

    def folded(self) -> 'CRMNet':
        """An inference copy with every BatchNorm folded into the convolution before it.

        Same numbers up to float rounding (~1e-6), about 15 % faster on CPU (one memory pass
        less per convolution). The copy drops ``feats.layer4`` (never run) and its state
        dict is not the published layout: keep the original for saving / loading. Eval-mode
        only (running statistics are baked in).
        """
        net = copy.deepcopy(self).eval()
        del net.feats.layer4
        f, a = net.feats, net.aspp_
        pairs = [(f, 'conv1', 'bn1'), (a.last_conv, '0', '1')]
        pairs += [(b, 'atrous_conv', 'bn') for b in (a.aspp1_128, a.aspp1_256, a.aspp1_1024)]
        for layer in (f.layer1, f.layer2, f.layer3):
            for block in layer:
                pairs += [(block, f'conv{i}', f'bn{i}') for i in (1, 2, 3)]
                if block.downsample is not None:
                    pairs.append((block.downsample, '0', '1'))
        with torch.no_grad():
            for parent, conv_name, bn_name in pairs:
                conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    shift = shift + conv.bias * scale
                fmt = torch.channels_last if conv.weight.is_contiguous(
                    memory_format=torch.channels_last) else torch.contiguous_format
                conv.weight = nn.Parameter(
                    (conv.weight * scale.view(-1, 1, 1, 1)).contiguous(memory_format=fmt),
                    requires_grad=False)
                conv.bias = nn.Parameter(shift, requires_grad=False)
                setattr(parent, bn_name, nn.Identity())
        return net

    # ------------------------------------------------------------------ decoders
    def decode(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Published query decoding, literally (reference path; slow and memory-hungry).

        Args:
            feat: (N, 256, Hf, Wf) feature map from :meth:`encode`.
            coord: (N, Q, 2) query pixel centres in [-1, 1], (y, x) order.
            cell: (N, Q, 2) query cell size (2 / Ht, 2 / Wt) of the target grid.

        Returns:
            (N, Q, 1) logits (sigmoid gives the probability).
        """
        n, _, hf, wf = feat.shape
        rx, ry = 1.0 / hf, 1.0 / wf
        feat_coord = torch.stack(torch.meshgrid(make_coord(hf, feat.device),
                                                make_coord(wf, feat.device), indexing='ij'))
        feat_coord = feat_coord.unsqueeze(0).expand(n, 2, hf, wf).to(feat.dtype)
        rel_cell = cell * cell.new_tensor([hf, wf])
        preds, areas = [], []
        for vx, vy in SHIFTS:
            shifted = coord.clone()
            shifted[..., 0] += vx * rx + EPS_SHIFT
            shifted[..., 1] += vy * ry + EPS_SHIFT
            shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = shifted.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(feat, grid, mode='nearest', align_corners=False)
            q_coord = F.grid_sample(feat_coord, grid, mode='nearest', align_corners=False)
            q_feat = q_feat[:, :, 0, :].permute(0, 2, 1)
            rel = (coord - q_coord[:, :, 0, :].permute(0, 2, 1)) * coord.new_tensor([hf, wf])
            inp = torch.cat([q_feat, rel, coord, rel_cell], dim=-1)
            preds.append(self.imnet(inp))
            areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
        total = torch.stack(areas).sum(dim=0)
        out = 0
        for k, pred in enumerate(preds):
            out = out + pred * (areas[3 - k] / total).unsqueeze(-1)
        return out

    def query_decoder(self, feat: torch.Tensor, offset: Tuple[int, int] = (0, 0),
                      feat_size: Optional[Tuple[int, int]] = None) -> 'QueryDecoder':
        """Prepare the fast decoder on one image's feature map (or a rectangle of it).

        Args:
            feat: (1, 256, h, w) feature pixels ``[r0, r0 + h) x [c0, c0 + w)`` of a map of
                ``feat_size`` (Hf, Wf) (default: the whole map, ``offset = (0, 0)``).
            offset: (r0, c0).
        """
        return QueryDecoder(self.imnet, feat, offset, feat_size)

    def grid_queries(self, feat_size: Tuple[int, int],
                     target_size: Tuple[int, int]) -> 'GridQueries':
        """Per-row / per-column query terms for decoding every pixel of a target grid."""
        return GridQueries(self.imnet, feat_size, target_size, self.imnet.layers[0].weight.device)



class _RegionPlan(NamedTuple):
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


def _region_plan(rng: Tuple[int, int], size: int, radii: Tuple[int, int, int]) -> _RegionPlan:
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
    return _RegionPlan((s1, s2, s3), (c0, c1), tuple(sources), (lo, hi))


def _resize_region(x: torch.Tensor, py: _RegionPlan, px: _RegionPlan, level: int) -> torch.Tensor:
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
    a = x.index_select(dim, i0.to(x.device))
    b = x.index_select(dim, i1.to(x.device))
    return a * (1 - lam) + b * lam


class _AxisTerms(NamedTuple):
    """Per-coordinate decoding terms along one axis, for the two neighbour shifts (-1, +1)."""

    index: torch.Tensor  #: (2, n) int64, feature pixel index along the axis
    rel: torch.Tensor    #: (2, n) float32, (query - feature centre) * feature size
    pos: torch.Tensor    #: (2, n, 32) float32, first-layer terms W_r * rel + W_c * coord


def _nearest_index(c: torch.Tensor, shift: float, size: int) -> torch.Tensor:
    """Index of the feature pixel that nearest-neighbour grid_sample picks (align_corners=False).

    Replicates the published float32 arithmetic: shift, clamp to +-(1 - 1e-6), unnormalise as
    ``(c + 1) * (size / 2) - 0.5`` and round half to even.
    """
    c = (c + shift).clamp_(-1 + 1e-6, 1 - 1e-6)
    return c.add_(1).mul_(size / 2).sub_(0.5).round_().long().clamp_(0, size - 1)


def _axis_terms(c: torch.Tensor, size: int, w_rel: torch.Tensor,
                w_coord: torch.Tensor) -> _AxisTerms:
    centres = make_coord(size, c.device)
    index, rel, pos = [], [], []
    for v in (-1, 1):
        i = _nearest_index(c, v * (1.0 / size) + EPS_SHIFT, size)
        r = (c - centres[i]) * size
        index.append(i)
        rel.append(r)
        pos.append(r[:, None] * w_rel + c[:, None] * w_coord)
    return _AxisTerms(torch.stack(index), torch.stack(rel), torch.stack(pos))


def _first_layer(imnet: ImplicitMLP) -> Tuple[torch.Tensor, torch.Tensor, list]:
    layers = [m for m in imnet.layers if isinstance(m, nn.Linear)]
    hidden = [(m.weight.t().contiguous(), m.bias) for m in layers[1:]]
    return layers[0].weight, layers[0].bias, hidden


class GridQueries:
    """Decoding terms of every pixel of a target grid (Ht x Wt) on a feature map (Hf x Wf).

    Queries are the pixel centres of the grid with cell (2 / Ht, 2 / Wt), as the published
    inference builds them; everything that depends on one coordinate only is computed once
    per row / column (O(Ht + Wt) memory), never per pixel.
    """

    def __init__(self, imnet: ImplicitMLP, feat_size: Tuple[int, int],
                 target_size: Tuple[int, int], device: torch.device | str | None = None,
                 coords: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 cell: Optional[torch.Tensor] = None) -> None:
        self.feat_size = (int(feat_size[0]), int(feat_size[1]))
        self.target_size = (int(target_size[0]), int(target_size[1]))
        hf, wf = self.feat_size
        ht, wt = self.target_size
        w0, _, _ = _first_layer(imnet)
        w_pos = w0[:, -6:].t().float()  # (6, 32): r_y r_x c_y c_x s_y s_x
        if coords is None:
            coords = (make_coord(ht, device), make_coord(wt, device))
        if cell is None:
            cell = torch.tensor([2.0 / ht, 2.0 / wt], dtype=torch.float32, device=device)
        rel_cell = cell.float() * cell.new_tensor([hf, wf], dtype=torch.float32)
        self.rows = _axis_terms(coords[0].float(), hf, w_pos[0], w_pos[2])
        cols = _axis_terms(coords[1].float(), wf, w_pos[1], w_pos[3])
        # the cell term is the same for every query: fold it into the column terms
        self.cols = cols._replace(pos=cols.pos + rel_cell @ w_pos[4:6])


class QueryDecoder:
    """Fast, chunk-friendly implementation of :meth:`CRMNet.decode` for one feature map.

    The first MLP layer ``W0 [feature, r, coord, cell] + b0`` is split: ``W0_f F + b0`` is a
    1x1 conv computed once per feature pixel (a table of 32 values per pixel, 8x smaller than
    F); the position terms are added per query from :class:`GridQueries`. Sampling uses
    integer indices computed with the published float32 arithmetic, so the same neighbours
    are chosen; results equal :meth:`CRMNet.decode` within float rounding (~1e-6).

    Memory: the table (h * w * 32 floats) plus, per call of Q queries, about
    ``Q * 4 * 32 * 2`` floats of temporaries (~1 KB per query in float32).

    Args:
        imnet: the model's MLP.
        feat: (1, 256, h, w), the feature pixels ``[r0, r0 + h) x [c0, c0 + w)`` of a map of
            ``feat_size`` (Hf, Wf); queries must only need feature pixels inside it.
        offset: (r0, c0).
    """

    def __init__(self, imnet: ImplicitMLP, feat: torch.Tensor, offset: Tuple[int, int] = (0, 0),
                 feat_size: Optional[Tuple[int, int]] = None) -> None:
        w0, b0, self.hidden = _first_layer(imnet)
        nf = w0.shape[1] - 6  # feature channels: 256 published (smaller variants: fewer)
        if feat.dim() != 4 or feat.shape[0] != 1 or feat.shape[1] != nf:
            raise ValueError(f'feat must be (1, {nf}, h, w), got {tuple(feat.shape)}')
        self.imnet = imnet
        self.region = (int(feat.shape[2]), int(feat.shape[3]))
        self.offset = (int(offset[0]), int(offset[1]))
        self.feat_size = tuple(int(v) for v in feat_size) if feat_size is not None \
            else self.region
        table = F.conv2d(feat, w0[:, :nf, None, None].to(feat.dtype),
                         b0.to(feat.dtype))
        self.table = table[0].flatten(1).t().contiguous()  # (h * w, 32)
        dt = self.table.dtype
        self.hidden = [(w.to(dt), b.to(dt)) for w, b in self.hidden]
        self._work: list = [self.table.new_empty(0), self.table.new_empty(0)]

    def _buffer(self, i: int, rows: int) -> torch.Tensor:
        """Reusable (rows, 32) work buffer ``i`` (grown on demand, never shrunk)."""
        if self._work[i].shape[0] < rows:
            self._work[i] = self.table.new_empty((rows, self.table.shape[1]))
        return self._work[i][:rows]

    def _check(self, grid: GridQueries) -> None:
        if grid.feat_size != self.feat_size:
            raise ValueError(f'grid terms are for a {grid.feat_size} feature map, the decoder '
                             f'holds one of {self.feat_size}')

    def block(self, grid: GridQueries, rows: Tuple[int, int],
              cols: Tuple[int, int]) -> torch.Tensor:
        """Logits of the target pixels ``[i0, i1) x [j0, j1)``: (i1 - i0) * (j1 - j0), row-major."""
        self._check(grid)
        (i0, i1), (j0, j1) = rows, cols
        r0, c0 = self.offset
        w = self.region[1]
        iy = (grid.rows.index[:, i0:i1] - r0) * w
        ix = grid.cols.index[:, j0:j1] - c0
        ni, nj = i1 - i0, j1 - j0
        n = ni * nj
        h = self._buffer(0, 4 * n).view(4, n, -1)
        areas = []
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            torch.index_select(self.table, 0, (iy[a][:, None] + ix[b][None, :]).view(-1),
                               out=h[k])
            hk = h[k].view(ni, nj, -1)
            hk += grid.rows.pos[a, i0:i1, None, :]
            hk += grid.cols.pos[b, None, j0:j1, :]
            areas.append((grid.rows.rel[a, i0:i1, None] * grid.cols.rel[b, None, j0:j1])
                         .abs_().add_(1e-9).view(-1))
        return self._mlp(h, areas)

    def pixels(self, grid: GridQueries, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits of the target pixels (rows[q], cols[q]): (Q,) for (Q,) int64 rows and cols."""
        self._check(grid)
        r0, c0 = self.offset
        w = self.region[1]
        n = rows.shape[0]
        h = self._buffer(0, 4 * n).view(4, n, -1)
        # per-axis terms gathered once per chunk, shared by the four neighbours
        iy = (grid.rows.index[:, rows] - r0) * w
        ix = grid.cols.index[:, cols] - c0
        ry, rx = grid.rows.rel[:, rows], grid.cols.rel[:, cols]
        py = grid.rows.pos.index_select(1, rows)
        px = grid.cols.pos.index_select(1, cols)
        areas = []
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            torch.index_select(self.table, 0, iy[a] + ix[b], out=h[k])
            h[k] += py[a]
            h[k] += px[b]
            areas.append((ry[a] * rx[b]).abs_().add_(1e-9))
        return self._mlp(h, areas)

    def __call__(self, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Logits of arbitrary queries (the fast equivalent of :meth:`CRMNet.decode`).

        Args:
            coord: (Q, 2) float32 pixel centres in [-1, 1], (y, x).
            cell: (2,) float32 cell size (2 / Ht, 2 / Wt), shared by all queries.

        Returns:
            (Q,) float32 logits.
        """
        if coord.dim() != 2 or coord.shape[1] != 2 or cell.numel() != 2:
            raise ValueError(f'coord must be (Q, 2) and cell (2,), got {tuple(coord.shape)} '
                             f'and {tuple(cell.shape)}')
        q = coord.shape[0]
        grid = GridQueries(self.imnet, self.feat_size, (q, q), coord.device,
                           coords=(coord[:, 0], coord[:, 1]), cell=cell.reshape(2))
        idx = torch.arange(q, device=coord.device)
        return self.pixels(grid, idx, idx)

    def _mlp(self, h: torch.Tensor, areas: list) -> torch.Tensor:
        """(4, n, 32) first-layer pre-activations + four (n,) areas -> (n,) logits."""
        n = h.shape[1]
        h = h.view(4 * n, -1).relu_()
        *inner, (w_out, b_out) = self.hidden
        for i, (w, bias) in enumerate(inner):
            h = torch.addmm(bias, h, w, out=self._buffer((i + 1) % 2, 4 * n)).relu_()
        pred = torch.addmm(b_out, h, w_out).view(4, n).float()
        total = areas[0] + areas[1] + areas[2] + areas[3]
        out = pred[0] * (areas[3] / total)
        for k in range(1, 4):
            out += pred[k] * (areas[3 - k] / total)
        return out
