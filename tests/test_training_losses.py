"""The published losses on cases computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from segrefine_plugins.training.losses import (CASCADEPSP_OUTPUTS, cascadepsp_loss, ce_loss,
                                               crm_loss, gradient_loss, gradient_magnitude,
                                               l1_loss, l2_loss)

LN2 = math.log(2.0)


def test_gradient_magnitude_by_hand():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 9.0
    # mean filter (zero padding counted): every 3x3 window holds the centre -> all ones.
    # Sobel / 4 on a 3x3 block of ones with zero padding:
    #   centre: gx = gy = 0; middle-left: gx = -1, gy = 0; corner: gx = gy = -0.75.
    g = gradient_magnitude(x)[0, 0]
    assert g[1, 1].item() == pytest.approx(math.sqrt(1e-4), rel=1e-5)
    assert g[1, 0].item() == pytest.approx(math.sqrt(1.0 + 1e-4), rel=1e-5)
    assert g[0, 0].item() == pytest.approx(math.sqrt(2 * 0.75 ** 2 + 1e-4), rel=1e-5)
    assert torch.allclose(g, g.flip(0)) and torch.allclose(g, g.flip(1))


def test_gradient_loss_zero_for_equal_maps_and_positive_otherwise():
    a = torch.rand(2, 1, 9, 9)
    assert gradient_loss(a, a).item() == 0.0
    b = a.clone()
    b[:, :, 4, 4] += 1
    assert gradient_loss(a, b).item() > 0


def test_ce_l1_l2_by_hand():
    logits = torch.zeros(1, 1, 4, 4)
    gt = torch.ones(1, 1, 4, 4)
    prob = torch.sigmoid(logits)
    assert ce_loss(logits, gt).item() == pytest.approx(LN2)
    assert l1_loss(prob, gt).item() == pytest.approx(0.5)
    assert l2_loss(prob, gt).item() == pytest.approx(0.25)
    # CE binarises the soft ground truth at 0.5; L1 does not
    soft = torch.full_like(gt, 0.6)
    big = torch.full_like(logits, 3.0)
    assert ce_loss(big, soft).item() == pytest.approx(ce_loss(big, gt).item())
    assert ce_loss(big, soft).item() == pytest.approx(math.log1p(math.exp(-3.0)))
    assert l1_loss(torch.sigmoid(big), soft).item() != pytest.approx(
        l1_loss(torch.sigmoid(big), gt).item())


def test_crm_loss_weights_by_hand():
    logits = torch.zeros(2, 1, 8, 8)
    gt = torch.ones(2, 1, 8, 8)
    terms = crm_loss(logits, gt)
    assert terms['loss_ce'].item() == pytest.approx(LN2)
    assert terms['loss_l1'].item() == pytest.approx(0.5 * 0.5)
    assert terms['loss_l2'].item() == pytest.approx(0.5 * 0.25)
    expect_grad = 2.0 * gradient_loss(torch.full_like(gt, 0.5), gt).item()
    assert terms['loss_grad'].item() == pytest.approx(expect_grad)
    assert expect_grad > 0   # constant maps differ in gradient at the zero-padded border


def test_cascadepsp_loss_weights_by_hand():
    gt = torch.ones(1, 1, 8, 8)
    names = [n for g in CASCADEPSP_OUTPUTS.values() for n in g]
    assert len(names) == 6
    terms = cascadepsp_loss({n: torch.zeros_like(gt) for n in names}, gt)
    # 3 x CE (stride 8) + 2 x 0.5 CE (stride 4)
    assert terms['loss_ce'].item() == pytest.approx(4 * LN2)
    # 2 x 0.25 L1 (stride 4) + 1 x L1 (stride 1); L1 = 0.5
    assert terms['loss_l1'].item() == pytest.approx(0.75)
    assert terms['loss_l2'].item() == pytest.approx(2 * 0.25 * 0.25 + 0.25)
    assert terms['loss_grad'].item() == pytest.approx(
        5 * gradient_loss(torch.full_like(gt, 0.5), gt).item())


def test_cascadepsp_loss_uses_each_output():
    gt = (torch.rand(1, 1, 8, 8) > 0.5).float()
    names = [n for g in CASCADEPSP_OUTPUTS.values() for n in g]
    base = {n: torch.zeros_like(gt) for n in names}
    ref = sum(cascadepsp_loss(base, gt).values()).item()
    for n in names:
        changed = dict(base, **{n: gt * 4 - 2})   # a better output lowers the total
        assert sum(cascadepsp_loss(changed, gt).values()).item() < ref


def test_losses_backpropagate():
    logits = torch.zeros(1, 1, 6, 6, requires_grad=True)
    sum(crm_loss(logits, torch.ones(1, 1, 6, 6)).values()).backward()
    assert logits.grad is not None and (logits.grad < 0).all()


def test_loss_input_checks():
    with pytest.raises(ValueError):
        ce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError):
        crm_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError):
        cascadepsp_loss({'pred_224': torch.zeros(1, 1, 4, 4)}, torch.zeros(1, 1, 4, 4))
