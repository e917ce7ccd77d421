"""tools/eval_cli.py: coarse kinds and the folders the segrefine CLI reads (no refinement)."""
from __future__ import annotations

import os
import runpy
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from segrefine_plugins.training.perturbation import lowres_mask, perturb_mask

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tool():
    """tools/eval_cli.py's globals (run as a module, not as __main__)."""
    return SimpleNamespace(**runpy.run_path(str(REPO / 'tools' / 'eval_cli.py')))


def test_coarse_kinds(tool):
    gt = np.zeros((64, 48), np.uint8)
    cv2.circle(gt, (24, 30), 17, 255, -1)
    np.testing.assert_array_equal(tool.make_coarse('lowres8', gt, 0), lowres_mask(gt, 8))
    soft = tool.make_coarse('lowres4soft', gt, 0)
    np.testing.assert_array_equal(soft, lowres_mask(gt, 4, soft=True))
    assert len(np.unique(soft)) > 2
    a, b = tool.make_coarse('perturb', gt, 3), tool.make_coarse('perturb', gt, 3)
    np.testing.assert_array_equal(a, b)  # seeded by the index
    sym = tool.make_coarse('perturbsym', gt, 3)
    np.testing.assert_array_equal(
        sym, perturb_mask(gt, np.random.default_rng([0, 3]), iou_target=0.8, symmetric=True))
    assert not np.array_equal(sym, a)
    for bad in ('lowres', 'lowresx8', 'blur8'):
        with pytest.raises(ValueError, match='unknown coarse kind'):
            tool.make_coarse(bad, gt, 0)


def test_prepare_links_pairs_and_writes_coarse_masks(tool, data_root, tmp_path):
    n = tool.prepare(str(data_root / 'ecssd'), str(tmp_path), ['lowres8', 'perturb'],
                     start=5, limit=2)
    assert n == 2
    images = sorted(os.listdir(tmp_path / 'images'))
    assert images == ['0006.jpg', '0007.jpg']  # pairs 5 and 6 of the sorted folder
    assert sorted(os.listdir(tmp_path / 'gt')) == ['0006.png', '0007.png']
    gt = cv2.imread(str(tmp_path / 'gt' / '0006.png'), cv2.IMREAD_GRAYSCALE)
    low = cv2.imread(str(tmp_path / 'coarse' / 'lowres8' / '0006.png'), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(low, lowres_mask(gt, 8))
    assert (tmp_path / 'coarse' / 'perturb' / '0007.png').is_file()
    with pytest.raises(ValueError, match='no pairs selected'):
        tool.prepare(str(data_root / 'ecssd'), str(tmp_path / 'x'), ['lowres8'], start=5000,
                     limit=2)
