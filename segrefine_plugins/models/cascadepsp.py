"""CascadePSP refinement module (Cheng et al., CVPR 2020), in the published layout.

``CascadePSPNet`` has exactly the published children, in the published order (``feats``,
``psp``, ``up_1``, ``up_2``, ``up_3``, ``final_28``, ``final_56``, ``final_11``, ``final_21``),
so the published checkpoint (426 entries, 67,683,433 parameters) loads strictly.

One forward runs the same weights up to three times (the cascade):

1. ``cat(rgb, seg, seg, seg)`` -> stride-8 logits (skipped when ``inter_s8`` is given);
2. ``cat(rgb, seg, T8, T8)`` -> stride-8 and stride-4 logits (skipped when ``inter_s4`` is
   given), with ``T8 = tanh(upsampled stride-8 logits)`` or ``inter_s8`` itself;
3. ``cat(rgb, seg, T8b, T4)`` -> stride-8, stride-4 and stride-1 outputs.

Deliberate quirks (parity with the published weights):

* ``f_1``, the stride-2 skip feature, is the raw ``conv1`` output **before** ``bn1``.
* the first block of every backbone layer is undilated (see :mod:`.resnet`).
* the pyramid-pooling convs have no BN and no ReLU; upsampling inside the model is by scale
  factor (x2, x4, x8; bilinear, ``align_corners=False``), so inputs must be multiples of 8.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import DilatedResNet

Outputs = Dict[str, torch.Tensor]


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling by an integer scale factor (align_corners=False), as published."""
    return F.interpolate(x, scale_factor=factor, mode='bilinear', align_corners=False)


class PSPModule(nn.Module):
    """Pyramid pooling: priors at sizes (1, 2, 3, 6), each AdaptiveAvgPool + 1x1 conv (no
    bias, no BN, no ReLU), resized bilinearly back, concatenated with the input, then a 1x1
    bottleneck conv (with bias) and ReLU.

    (N, C, h, w) -> (N, out_ch, h, w).

    Computed in an equivalent order (same weights, same result up to float rounding): the
    bottleneck is linear per pixel and bilinear resizing is linear per channel, so
    ``bottleneck(cat(up(prior_k)..., f)) = W_f f + b + sum_k up(W_k prior_k)``. The
    ``W_k prior_k`` products are taken on the tiny (k x k) priors, which skips 4/5 of the
    bottleneck's multiply-adds and the 5C-channel concatenation (523 MB per 904x904 crop).
    """

    def __init__(self, in_ch: int = 2048, out_ch: int = 1024,
                 sizes: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d((s, s)), nn.Conv2d(in_ch, in_ch, 1, bias=False))
            for s in sizes)
        self.bottleneck = nn.Conv2d(in_ch * (len(sizes) + 1), out_ch, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size, c = feats.shape[-2:], feats.shape[1]
        weight = self.bottleneck.weight                       # (out, 5C, 1, 1): [W_1..W_6, W_f]
        out = F.conv2d(feats, weight[:, len(self.stages) * c:], self.bottleneck.bias)
        for k, stage in enumerate(self.stages):
            z = F.conv2d(stage(feats), weight[:, k * c:(k + 1) * c])
            out = out + F.interpolate(z, size=size, mode='bilinear', align_corners=False)
        return self.relu(out)


def _preact_convs(in_ch: int, out_ch: int) -> nn.Sequential:
    """[BN(in), ReLU, Conv3x3(in->out), BN(out), ReLU, Conv3x3(out->out)] (published names
    ``0, 2, 3, 5``)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True), nn.Conv2d(out_ch, out_ch, 3, padding=1))


class PSPUpsample(nn.Module):
    """Pre-activation residual upsampling block.

    ``x`` (N, x_ch, h, w) is upsampled x2 and concatenated with ``skip`` (N, in_ch - x_ch,
    2h, 2w); returns (N, out_ch, 2h, 2w) = p + conv2(p) with p = conv(cat) + shortcut(x_up).
    """

    def __init__(self, x_ch: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = _preact_convs(in_ch, out_ch)
        self.conv2 = _preact_convs(out_ch, out_ch)
        self.shortcut = nn.Conv2d(x_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The same operations as ``p = conv(cat(x_up, skip)) + shortcut(x_up)``, run layer by
        # layer in this frame so that each large map (up_3: 259 channels at full resolution)
        # is freed as soon as the next one exists; ``Module.__call__`` would keep the
        # concatenation alive for the whole ``conv``.
        x = _up(x, 2)
        shortcut = self.shortcut(x)
        h = torch.cat([x, skip], 1)
        del x
        for layer in self.conv:
            h = layer(h)
        p = h + shortcut
        del h, shortcut
        q = p
        for layer in self.conv2:
            q = layer(q)
        return p + q


def _head(in_ch: int) -> nn.Sequential:
    """1x1 conv head: Conv(in->32), ReLU, Conv(32->1) -> logits."""
    return nn.Sequential(nn.Conv2d(in_ch, 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 1, 1))


class CascadePSPNet(nn.Module):
    """The CascadePSP refinement network (published architecture and parameter names).

    Inputs of :meth:`forward`: ``rgb`` (N, 3, H, W) float, ImageNet-normalised; ``seg``
    (N, 1, H, W) in [-1, 1] (binary input mask as -1 / +1); H and W multiples of 8 (the
    pipeline pads, see :mod:`segrefine_plugins.inference.cascadepsp`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.feats = DilatedResNet(in_channels=6, blocks=(3, 4, 6, 3), width=64)
        self.psp = PSPModule(2048, 1024, (1, 2, 3, 6))
        self.up_1 = PSPUpsample(1024, 1024 + 256, 512)
        self.up_2 = PSPUpsample(512, 512 + 64, 256)
        self.up_3 = PSPUpsample(256, 256 + 3, 32)
        self.final_28 = _head(1024)
        self.final_56 = _head(512)
        self.final_11 = nn.Conv2d(32 + 3, 32, 1)
        self.final_21 = nn.Conv2d(32, 1, 1)

    def backbone(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 6, H, W) -> f (N, 2048, H/8, W/8), f_1 (N, 64, H/2, W/2) = conv1 output
        **before** bn1 (quirk), f_2 (N, 256, H/4, W/4) = layer1 output."""
        t = self.feats
        f_1 = t.conv1(x)
        f_2 = t.layer1(t.maxpool(t.relu(t.bn1(f_1))))
        f = t.layer4(t.layer3(t.layer2(f_2)))
        return f, f_1, f_2

    def forward(self, rgb: torch.Tensor, seg: torch.Tensor,
                inter_s8: Optional[torch.Tensor] = None,
                inter_s4: Optional[torch.Tensor] = None) -> Outputs:
        """Run the cascade.

        Args:
            rgb: (N, 3, H, W) normalised image; H, W multiples of 8.
            seg: (N, 1, H, W) input mask in [-1, 1].
            inter_s8: optional (N, 1, H, W) map in [-1, 1] replacing pass 1 (the pipeline's
                local step feeds ``2 * p - 1`` of the global stride-4 probability here).
            inter_s4: optional (N, 1, H, W) map in [-1, 1]; with ``inter_s8`` it replaces
                pass 2.

        Returns:
            dict of (N, 1, H, W) maps: logits ``out_*`` and probabilities ``pred_*``. Pass 1
            gives ``*_28``; pass 2 ``*_28_2`` and ``*_56``; pass 3 ``*_28_3``, ``*_56_2`` and
            ``*_224`` (the stride-1 result).
        """
        self._check_inputs(rgb, seg, inter_s8, inter_s4)
        out: Outputs = {}

        def add(name: str, logits: torch.Tensor) -> None:
            out[f'out_{name}'] = logits
            out[f'pred_{name}'] = torch.sigmoid(logits)

        # pass 1: stride-8 from the input mask alone
        if inter_s8 is None:
            f, _, _ = self.backbone(torch.cat([rgb, seg, seg, seg], 1))
            z8 = _up(self.final_28(self.psp(f)), 8)
            add('28', z8)
            t8 = torch.tanh(z8)
        else:
            t8 = inter_s8

        # pass 2: stride-8 and stride-4
        if inter_s4 is None:
            f, _, f_2 = self.backbone(torch.cat([rgb, seg, t8, t8], 1))
            p = self.psp(f)
            z8b = _up(self.final_28(p), 8)
            z4 = _up(self.final_56(self.up_1(p, f_2)), 4)
            add('28_2', z8b)
            add('56', z4)
            t8b, t4 = torch.tanh(z8b), torch.tanh(z4)
        else:
            t8b, t4 = inter_s8, inter_s4

        # pass 3: all strides, stride-1 output through the full decoder
        f, f_1, f_2 = self.backbone(torch.cat([rgb, seg, t8b, t4], 1))
        p = self.psp(f)
        z8c = _up(self.final_28(p), 8)
        p = self.up_1(p, f_2)
        z4b = _up(self.final_56(p), 4)
        p = self.up_3(self.up_2(p, f_1), rgb)
        z1 = self.final_21(F.relu(self.final_11(torch.cat([p, rgb], 1)), inplace=True))
        add('224', z1)
        add('28_3', z8c)
        add('56_2', z4b)
        return out

    @staticmethod
    def _check_inputs(rgb: torch.Tensor, seg: torch.Tensor, inter_s8: Optional[torch.Tensor],
                      inter_s4: Optional[torch.Tensor]) -> None:
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f'rgb must be (N, 3, H, W), got {tuple(rgb.shape)}')
        n, _, h, w = rgb.shape
        if h % 8 or w % 8:
            raise ValueError(f'CascadePSPNet needs H and W multiples of 8, got {h}x{w}; '
                             f'pad first (the refiner does)')
        for name, t in (('seg', seg), ('inter_s8', inter_s8), ('inter_s4', inter_s4)):
            if t is not None and tuple(t.shape) != (n, 1, h, w):
                raise ValueError(f'{name} must be {(n, 1, h, w)}, got {tuple(t.shape)}')
        if inter_s4 is not None and inter_s8 is None:
            raise ValueError('inter_s4 needs inter_s8 (pass 2 replaces pass 1 too)')
