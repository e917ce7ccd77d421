"""CRM, the Continuous Refinement Model (CVPR 2022): the network.

Parameter names follow the published checkpoint (``feats``, ``aspp_``, ``imnet``), so the
published file loads strictly.

* :meth:`CRMNet.encode` ``(rgb, seg) -> F``: a dilated ResNet trunk on cat(rgb, seg) and three
  1x1 branches fused by a 3x3 conv into a 256-channel map at 1/2 resolution;
  :meth:`CRMNet.encode_region` / :meth:`CRMNet.encode_windows` compute a rectangle of F from
  the input window it depends on (geometry: :mod:`.crm_windows`).
* :meth:`CRMNet.decode` ``(F, coord, cell) -> logits``: the published query decoding;
  :meth:`CRMNet.query_decoder` / :meth:`CRMNet.grid_queries` give the fast decoder with the
  same numbers (both in :mod:`.crm_decoder`).

**Deliberate quirks (parity):** ``feats.layer4`` is built so that the published checkpoint
loads strictly, but it is never run (the published model does not use its output); x_1 is
taken *after* bn1 + ReLU (CascadePSP takes it before).

The names of :mod:`.crm_decoder` and :mod:`.crm_windows` are re-exported here, so
``from segrefine_plugins.models.crm import QueryDecoder, TensorWindows, make_coord`` keeps
working.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .crm_decoder import EPS_SHIFT, FEAT_CHANNELS, MLP_IN, SHIFTS, GridQueries, \
    ImplicitMLP, QueryDecoder, grid_coords, make_coord, reference_decode
from .crm_windows import InputWindows, Range, RegionPlan, TensorWindows, lerp_select, \
    linear_resize_weights, region_plan, resize_region
from .resnet import DilatedResNet

__all__ = ['CRMFusion', 'CRMNet', 'EPS_SHIFT', 'FEAT_CHANNELS', 'GridQueries', 'ImplicitMLP',
           'InputWindows', 'MLP_IN', 'QueryDecoder', 'Range', 'RegionPlan', 'SHIFTS',
           'TensorWindows', 'grid_coords', 'lerp_select', 'linear_resize_weights', 'make_coord',
           'reference_decode', 'region_plan', 'resize_region']


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
        plans = [region_plan(rng, size, self.receptive_radii())
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
        b2 = resize_region(b2, plans[0], plans[1], level=1)
        b3 = resize_region(b3, plans[0], plans[1], level=2)
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
        return reference_decode(self.imnet, feat, coord, cell)

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
