"""Shared pieces of the CRM network test modules (not a test module itself): the golden
forward file, the published-layout network with the golden synthetic weights, small variants."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefine_plugins.models.checkpoint import load_checkpoint
from segrefine_plugins.models.crm import CRMNet


@pytest.fixture(scope='module')
def published(crm_weights) -> CRMNet:
    """Published-size CRMNet with the golden files' synthetic weights, eval mode."""
    return load_checkpoint(CRMNet(), crm_weights).eval()


@pytest.fixture(scope='module')
def golden(golden_dir):
    """``crm_forward.npz``: rgb, seg, coord, cell, logit, pred of the published forward."""
    return np.load(golden_dir / 'crm_forward.npz')


def small_crm(blocks=(1, 1, 1, 1), width=8, seed=0) -> CRMNet:
    """A small random CRMNet (eval mode) with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = CRMNet(blocks, width).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model
