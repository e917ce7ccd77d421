"""The dilated ResNet-50 trunk shared by CascadePSP and CRM.

Parameter names follow torchvision (``conv1, bn1, layer1..layer4``, ``downsample.0/.1``, no
``fc``), so the published checkpoints load strictly.

Layout (output stride 8): conv1 (7x7, stride 2) -> bn1 -> ReLU -> 3x3 max-pool (stride 2) ->
layer1 (stride 1) -> layer2 (stride 2) -> layer3 (stride 1, dilation 2) -> layer4 (stride 1,
dilation 4).

**Deliberate quirk (parity):** in every layer the *first* block uses dilation 1; only blocks
2.. use the layer's dilation. The published models were trained that way.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1 -> 3x3 (stride, dilation) -> 1x1, expansion 4)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class DilatedResNet(nn.Module):
    """Dilated ResNet (default: ResNet-50, ``blocks=(3, 4, 6, 3)``), output stride 8.

    Args:
        in_channels: channels of conv1's input (6 for CascadePSP: RGB + 3 mask maps; 4 for
            CRM: RGB + mask).
        blocks: bottleneck blocks per layer.
        width: channels of layer1's bottleneck (64 for ResNet-50); layer k uses width * 2**k.
        with_layer4: build layer4 (CRM keeps it only so that strict loading works).

    The stages are exposed as attributes; the models call them in the order they need, so
    this class has no ``forward`` of its own.
    """

    def __init__(self, in_channels: int = 3, blocks: Sequence[int] = (3, 4, 6, 3),
                 width: int = 64, with_layer4: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._in_ch = width
        self.layer1 = self._make_layer(width, blocks[0], stride=1, dilation=1)
        self.layer2 = self._make_layer(width * 2, blocks[1], stride=2, dilation=1)
        self.layer3 = self._make_layer(width * 4, blocks[2], stride=1, dilation=2)
        if with_layer4:
            self.layer4 = self._make_layer(width * 8, blocks[3], stride=1, dilation=4)
        self.out_channels: List[int] = [width * 4, width * 8, width * 16, width * 32]

    def _make_layer(self, planes: int, n_blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_ch, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4))
        # quirk: first block at dilation 1, the rest at the layer's dilation
        layers = [Bottleneck(self._in_ch, planes, stride, 1, downsample)]
        self._in_ch = planes * 4
        layers += [Bottleneck(self._in_ch, planes, 1, dilation) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers)
