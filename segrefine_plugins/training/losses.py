"""The published training losses of CascadePSP and CRM (REFERENCE.md section 6).

Every loss takes **logits** (N, 1, H, W) at the ground truth's size and a **soft** ground truth
(N, 1, H, W) float in [0, 1]:

* CE: binary cross-entropy of the logits against the binarised target ``gt > 0.5``;
* L1 / L2: mean absolute / squared difference of the probabilities ``sigmoid(logits)`` and the
  soft ground truth;
* gradient loss: L1 distance of the gradient magnitudes of prediction and ground truth, where
  the gradient of a map is a 3x3 mean filter (zero padding, padded zeros counted), then the
  Sobel kernels ``[[1, 0, -1], [2, 0, -2], [1, 0, -1]] / 4`` and its transpose (zero padding),
  magnitude ``sqrt(gx^2 + gy^2 + 1e-4)``.

CascadePSP (six outputs): the three stride-8 outputs CE (weight 1 each); the two stride-4
outputs 0.5 CE + 0.25 L1 + 0.25 L2; the stride-1 output L1 + L2 + 5 * gradient.
CRM (one output): 1.0 CE + 0.5 L1 + 0.5 L2 + 2.0 gradient.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
import torch.nn.functional as F

__all__ = ['gradient_magnitude', 'gradient_loss', 'ce_loss', 'l1_loss', 'l2_loss',
           'crm_loss', 'cascadepsp_loss', 'CASCADEPSP_OUTPUTS']

#: Names of the six CascadePSP outputs, by stride: 8 (three passes), 4 (two), 1 (one).
CASCADEPSP_OUTPUTS = {
    'stride8': ('pred_28', 'pred_28_2', 'pred_28_3'),
    'stride4': ('pred_56', 'pred_56_2'),
    'stride1': ('pred_224',),
}

_SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 4.0


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f'predictions must be (N, 1, H, W), got {tuple(pred.shape)}')
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')


def gradient_magnitude(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(N, 1, H, W) map -> (N, 1, H, W) smoothed Sobel gradient magnitude (published form)."""
    x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3)
    gx = F.conv2d(x, kx, padding=1)
    gy = F.conv2d(x, kx.transpose(2, 3), padding=1)
    return torch.sqrt(gx * gx + gy * gy + eps)


def gradient_loss(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 distance of the gradient magnitudes of a probability map and the ground truth."""
    _check_pair(prob, gt)
    return F.l1_loss(gradient_magnitude(prob), gradient_magnitude(gt))


def ce_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of logits against ``gt > 0.5`` (mean over pixels)."""
    _check_pair(logits, gt)
    return F.binary_cross_entropy_with_logits(logits.float(), (gt > 0.5).float())


def l1_loss(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean |prob - gt|."""
    _check_pair(prob, gt)
    return F.l1_loss(prob, gt)


def l2_loss(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean (prob - gt)^2."""
    _check_pair(prob, gt)
    return F.mse_loss(prob, gt)


def crm_loss(logits: torch.Tensor, gt: torch.Tensor) -> Dict[str, torch.Tensor]:
    """CRM's loss terms (already weighted): ``loss_ce``, ``loss_l1``, ``loss_l2``, ``loss_grad``.

    Args:
        logits: (N, 1, H, W) raw decoder output.
        gt: (N, 1, H, W) float soft ground truth in [0, 1].

    The total is the sum of the four values (1.0 CE + 0.5 L1 + 0.5 L2 + 2.0 gradient).
    """
    prob = torch.sigmoid(logits.float())
    gt = gt.float()
    return {'loss_ce': ce_loss(logits, gt), 'loss_l1': 0.5 * l1_loss(prob, gt),
            'loss_l2': 0.5 * l2_loss(prob, gt), 'loss_grad': 2.0 * gradient_loss(prob, gt)}


def cascadepsp_loss(logits: Mapping[str, torch.Tensor],
                    gt: torch.Tensor) -> Dict[str, torch.Tensor]:
    """CascadePSP's six-output loss terms (already weighted).

    Args:
        logits: the six outputs by name (:data:`CASCADEPSP_OUTPUTS`), each (N, 1, H, W) logits
            upsampled to the ground truth's size.
        gt: (N, 1, H, W) float soft ground truth in [0, 1].

    Returns:
        ``loss_ce`` (stride 8: sum of three CE, plus 0.5 CE of each stride-4 output),
        ``loss_l1`` (0.25 per stride-4 output + 1.0 stride 1), ``loss_l2`` (likewise) and
        ``loss_grad`` (5 * gradient loss of stride 1). Their sum is the published total.
    """
    names = [n for group in CASCADEPSP_OUTPUTS.values() for n in group]
    missing = [n for n in names if n not in logits]
    if missing:
        raise ValueError(f'CascadePSP loss needs the outputs {names}; missing {missing}')
    gt = gt.float()
    ce = sum(ce_loss(logits[n], gt) for n in CASCADEPSP_OUTPUTS['stride8'])
    l1 = l2 = 0.0
    for n in CASCADEPSP_OUTPUTS['stride4']:
        prob = torch.sigmoid(logits[n].float())
        ce = ce + 0.5 * ce_loss(logits[n], gt)
        l1 = l1 + 0.25 * l1_loss(prob, gt)
        l2 = l2 + 0.25 * l2_loss(prob, gt)
    prob = torch.sigmoid(logits['pred_224'].float())
    return {'loss_ce': ce, 'loss_l1': l1 + l1_loss(prob, gt), 'loss_l2': l2 + l2_loss(prob, gt),
            'loss_grad': 5.0 * gradient_loss(prob, gt)}
