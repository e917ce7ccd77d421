"""tools/eval_default.py: coarse inputs, evaluation loop and table on a couple of images."""
from __future__ import annotations


import numpy as np
import pytest

from segrefine_plugins.training.perturbation import mask_iou
from conftest import load_tool



@pytest.fixture(scope='module')
def tool():
    return load_tool('eval_default.py')


class _Identity:
    """A stand-in refiner for the loop's bookkeeping: returns the coarse mask itself."""

    def refine(self, image, mask):
        return (mask > 127).astype(np.float32)


def _disk():
    yy, xx = np.mgrid[:96, :128]
    return np.where((yy - 48) ** 2 + (xx - 64) ** 2 < 30 ** 2, 255, 0).astype(np.uint8)


def test_coarse_kinds(tool):
    gt = _disk()
    a, b = tool.coarse_mask('perturb', gt, 3), tool.coarse_mask('perturb', gt, 3)
    np.testing.assert_array_equal(a, b)                       # seeded by the index
    assert (a != tool.coarse_mask('perturb', gt, 4)).any()
    assert mask_iou(a, gt) < 0.8
    assert mask_iou(tool.coarse_mask('lowres', gt, 0), gt) > 0.9
    with pytest.raises(ValueError):
        tool.coarse_mask('bogus', gt, 0)


def test_identity_refiner_gains_nothing(tool, data_root):
    res = tool.evaluate(_Identity(), str(data_root / 'ecssd'), limit=2, progress=False)
    for kind in ('perturb', 'lowres'):
        r = res[kind]
        assert r['images'] == 2
        assert r['refined_iou'] == pytest.approx(r['coarse_iou'])
        assert r['refined_mba'] == pytest.approx(r['coarse_mba'])
    table = tool.format_results(res)
    assert '| perturb | 2 |' in table and '+0.00' in table
    with pytest.raises(ValueError):
        tool.evaluate(_Identity(), str(data_root / 'ecssd'), start=5000, progress=False)
