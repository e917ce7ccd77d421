"""Refiner training models: mmengine ``BaseModel`` s whose ``state_dict`` is the published layout.

:class:`CRMTrainModel` and :class:`CascadePSPTrainModel` *are* a :class:`CRMNet` /
:class:`CascadePSPNet` (they inherit from it), with mmengine's ``BaseModel`` mixed in. The
data preprocessor holds no parameters, so ``model.state_dict()`` — and therefore every
checkpoint an mmengine Runner writes — has exactly the published keys (no prefix): a trained
checkpoint loads in ``build_refiner`` and a published checkpoint can be fine-tuned
(``load_from=...``).

``forward(image, seg, gt=None, index=None, mode=...)`` takes the batches of
:class:`~segrefine_plugins.training.datasets.MaskPairDataset`:

* ``mode='loss'``: dict of weighted loss terms (their sum is the published total);
* ``mode='predict'``: list (one per image) of dicts ``prob`` (H, W) float32 tensor in [0, 1],
  ``gt`` (H, W) float32 soft ground truth, ``seg`` (H, W) bool coarse input;
* ``mode='tensor'``: the raw logits.

No mmengine import happens at module level of the core; this module is only imported by
:mod:`segrefine_plugins.training`, which needs mmengine.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from ..models.cascadepsp import CascadePSPNet
from ..models.checkpoint import CheckpointError, read_state_dict
from ..models.crm import EPS_SHIFT, SHIFTS, CRMNet, make_coord
from ..models.resnet import DilatedResNet
from .losses import CASCADEPSP_OUTPUTS, cascadepsp_loss, crm_loss

__all__ = ['CRMTrainModel', 'CascadePSPTrainModel', 'init_trunk_from_imagenet']


def nearest_feature_index(c: torch.Tensor, shift: float, size: int) -> torch.Tensor:
    """Index of the feature pixel nearest-neighbour ``grid_sample`` (align_corners=False)
    picks for coordinates ``c`` shifted by ``shift`` and clamped to +-(1 - 1e-6), as in the
    published decoding: ``round_half_even((c + 1) * size / 2 - 0.5)``; (Q,) long."""
    c = (c + shift).clamp(-1 + 1e-6, 1 - 1e-6)
    return ((c + 1) * (size / 2) - 0.5).round().long().clamp(0, size - 1)


def init_trunk_from_imagenet(trunk: DilatedResNet, path: Union[str, os.PathLike]) -> List[str]:
    """Initialise a trunk from a torchvision-format ResNet state-dict file (ImageNet).

    conv1's first three input channels take the file's RGB filters; the extra input channels
    (mask maps) are set to zero, as published. ``fc.*`` is ignored. Every trunk entry must be
    in the file with the same shape (conv1 apart), so a trunk narrower or deeper than the
    file's network is refused with a ValueError; a shallower trunk (fewer blocks) takes the
    first blocks of each layer.

    Returns:
        the names of the file's entries that were not used (``fc.*``, extra blocks).
    """
    src = read_state_dict(path)
    own = trunk.state_dict()
    new: Dict[str, torch.Tensor] = {}
    for name, value in own.items():
        if name not in src:
            raise CheckpointError(f'ImageNet file {os.fspath(path)!r} has no {name!r}: it must '
                                  f'be a torchvision ResNet state dict at least as deep')
        w = src[name]
        if name == 'conv1.weight':
            if w.shape[1] != 3 or w.shape[0] != value.shape[0] or w.shape[2:] != value.shape[2:]:
                raise CheckpointError(f'conv1.weight {tuple(w.shape)} cannot initialise '
                                      f'{tuple(value.shape)}')
            w = torch.cat([w, w.new_zeros((w.shape[0], value.shape[1] - 3) + w.shape[2:])], 1)
        elif w.shape != value.shape:
            raise CheckpointError(f'{name}: ImageNet file {tuple(w.shape)} vs trunk '
                                  f'{tuple(value.shape)}')
        new[name] = w.to(value.dtype)
    trunk.load_state_dict(new, strict=True)
    return sorted(set(src) - set(own))


class _TrainMixin:
    """mmengine glue shared by both training models."""

    def _setup_mmengine(self, data_preprocessor: Optional[Union[dict, torch.nn.Module]],
                        init_backbone: Optional[str]) -> None:
        if data_preprocessor is not None:
            from mmengine.registry import MODELS
            self.data_preprocessor = (MODELS.build(data_preprocessor)
                                      if isinstance(data_preprocessor, dict)
                                      else data_preprocessor)
        self.init_backbone = init_backbone
        if init_backbone:
            init_trunk_from_imagenet(self.feats, init_backbone)

    def forward(self, image: torch.Tensor, seg: torch.Tensor, gt: Optional[torch.Tensor] = None,
                index: Any = None, mode: str = 'tensor') -> Any:
        """mmengine entry point (see the module docstring for the three modes)."""
        self._check_batch(image, seg, gt)
        if mode == 'loss':
            if gt is None:
                raise ValueError("mode='loss' needs gt")
            return self.loss(image, seg, gt)
        if mode == 'predict':
            return self._predictions(self.predict_prob(image, seg), seg, gt)
        if mode == 'tensor':
            return self.raw_outputs(image, seg)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    @staticmethod
    def _check_batch(image: torch.Tensor, seg: torch.Tensor, gt: Optional[torch.Tensor]) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f'image must be (N, 3, H, W), got {tuple(image.shape)}')
        expect = (image.shape[0], 1) + tuple(image.shape[2:])
        for name, t in (('seg', seg), ('gt', gt)):
            if t is not None and tuple(t.shape) != expect:
                raise ValueError(f'{name} must be {expect}, got {tuple(t.shape)}')

    @staticmethod
    def _predictions(prob: torch.Tensor, seg: torch.Tensor,
                     gt: Optional[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        outs = []
        for i in range(prob.shape[0]):
            item = {'prob': prob[i, 0].float(), 'seg': seg[i, 0] > 0}
            if gt is not None:
                item['gt'] = gt[i, 0].float()
            outs.append(item)
        return outs


class CRMTrainModel(_TrainMixin, CRMNet, BaseModel):
    """CRM for training (published CRM loss; state dict = published CRM layout).

    Args:
        blocks, width: trunk size (see :class:`CRMNet`); published (3, 4, 6, 3), 64.
        feat_channels, hidden: feature channels and MLP width (published 256, 32).
        init_backbone: optional torchvision ResNet state-dict file for ImageNet initialisation.
        data_preprocessor: mmengine data preprocessor config (default: moves data to device).

    Training decodes the full input grid from the 1/2-resolution feature map (published:
    224 x 224 from 112 x 112). :meth:`logits` computes the same numbers as
    :meth:`CRMNet.decode` (up to float rounding; tested) but differentiably in the factored
    form of the fast decoder: the feature part of the first MLP layer is a 1x1 convolution on
    the feature map, gathered per query by the neighbour's index — several times cheaper in
    time and memory than sampling 262-value vectors. Prediction encodes the whole image once
    and decodes every pixel with the fast decoder.
    """

    def __init__(self, blocks: Sequence[int] = (3, 4, 6, 3), width: int = 64,
                 feat_channels: int = 256, hidden: int = 32,
                 init_backbone: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None) -> None:
        super().__init__(blocks=blocks, width=width, feat_channels=feat_channels, hidden=hidden)
        self._setup_mmengine(data_preprocessor, init_backbone)
        # feats.layer4 is never run (kept for the published layout): frozen, so that DDP, which
        # wants a gradient for every trainable parameter, needs no find_unused_parameters
        # (Adam / SGD skipped these gradient-less parameters anyway: same numbers)
        self.feats.layer4.requires_grad_(False)

    def logits(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) image, (N, 1, H, W) seg -> (N, 1, H, W) logits at the input size."""
        n, _, h, w = image.shape
        return self.decode_grid(self.encode(image, seg), h, w)

    def decode_grid(self, feat: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Differentiable decoding of the full ``h x w`` grid: (N, C, Hf, Wf) -> (N, 1, h, w)."""
        n, nf, hf, wf = feat.shape
        linears = [m for m in self.imnet.layers if isinstance(m, torch.nn.Linear)]
        w0, b0 = linears[0].weight, linears[0].bias
        table = F.conv2d(feat, w0[:, :nf, None, None], b0).flatten(2).transpose(1, 2)
        dev = feat.device
        ys, xs = make_coord(h, dev), make_coord(w, dev)
        cy, cx = make_coord(hf, dev), make_coord(wf, dev)
        cell = torch.tensor([2.0 / h * hf, 2.0 / w * wf], device=dev)
        preds, areas = [], []
        for vy, vx in SHIFTS:  # (shift of y, shift of x), published order
            iy = nearest_feature_index(ys, vy / hf + EPS_SHIFT, hf)
            ix = nearest_feature_index(xs, vx / wf + EPS_SHIFT, wf)
            ry = ((ys - cy[iy]) * hf)[:, None].expand(h, w)
            rx = ((xs - cx[ix]) * wf)[None, :].expand(h, w)
            pos = torch.stack([ry, rx, ys[:, None].expand(h, w), xs[None, :].expand(h, w),
                               cell[0].expand(h, w), cell[1].expand(h, w)], -1).reshape(-1, 6)
            idx = (iy[:, None] * wf + ix[None, :]).reshape(-1)
            x = table[:, idx] + pos @ w0[:, nf:].t()
            preds.append(self.imnet.layers[1:](x))
            areas.append((ry * rx).abs().reshape(-1) + 1e-9)
        total = areas[0] + areas[1] + areas[2] + areas[3]
        out = sum(p[..., 0] * (areas[3 - k] / total) for k, p in enumerate(preds))
        return out.view(n, 1, h, w)

    @torch.no_grad()
    def predict_prob(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Single-scale prediction at the input size: (N, 1, H, W) probabilities."""
        h, w = image.shape[-2:]
        return torch.sigmoid(self.decode_grid(self.encode(image, seg), h, w))

    def loss(self, image: torch.Tensor, seg: torch.Tensor,
             gt: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The published CRM loss terms of one batch."""
        return crm_loss(self.logits(image, seg), gt)

    def raw_outputs(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """``mode='tensor'``: (N, 1, H, W) logits."""
        return self.logits(image, seg)


class CascadePSPTrainModel(_TrainMixin, CascadePSPNet, BaseModel):
    """CascadePSP for training (six-output published loss; state dict = published layout).

    Args:
        init_backbone: optional torchvision ResNet-50 state-dict file (ImageNet).
        data_preprocessor: mmengine data preprocessor config.

    Inputs must have H and W multiples of 8 (training crops are; ``predict`` pads bottom /
    right with image 0 and seg -1, as the published pipeline does, and crops back).
    """

    def __init__(self, init_backbone: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None) -> None:
        super().__init__()
        self._setup_mmengine(data_preprocessor, init_backbone)

    @torch.no_grad()
    def predict_prob(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) stride-1 probabilities of the three-pass cascade (single scale)."""
        h, w = image.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            seg = F.pad(seg, (0, pw, 0, ph), value=-1.0)
        return CascadePSPNet.forward(self, image, seg)['pred_224'][..., :h, :w]

    def loss(self, image: torch.Tensor, seg: torch.Tensor,
             gt: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The published six-output loss terms of one batch."""
        out = CascadePSPNet.forward(self, image, seg)
        names = [n for group in CASCADEPSP_OUTPUTS.values() for n in group]
        return cascadepsp_loss({n: out['out_' + n[len('pred_'):]] for n in names}, gt)

    def raw_outputs(self, image: torch.Tensor, seg: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``mode='tensor'``: the cascade's dict of logits / probabilities."""
        return CascadePSPNet.forward(self, image, seg)
