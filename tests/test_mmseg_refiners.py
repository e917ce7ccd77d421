"""The core refiners as entries of mmseg's MODELS registry."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require_module

mmseg = require_module('mmseg')
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.io import read_image, read_mask  # noqa: E402
from segrefine_plugins.mmseg import REFINER_TYPES, build_mmseg_refiner  # noqa: E402
from segrefine_plugins.mmseg.refiners import mmseg_type_name  # noqa: E402
from segrefine_plugins.registry import REFINERS  # noqa: E402

pytestmark = pytest.mark.mmseg


@pytest.fixture(scope='module')
def pair(data_root):
    image = read_image(data_root / 'ecssd' / 'images' / '0001.jpg')[::4, ::4].copy()
    mask = read_mask(data_root / 'ecssd' / 'masks' / '0001.png')[::4, ::4].copy()
    return image, mask


def test_every_core_refiner_is_registered_under_its_mmseg_name():
    assert mmseg_type_name('CascadePSP') == 'CascadePSPRefiner'
    assert mmseg_type_name('CRM') == 'CRMRefiner'
    assert mmseg_type_name('CascadePSPRefiner') == 'CascadePSPRefiner'
    assert 'CascadePSPRefiner' in REFINER_TYPES
    for core_name in REFINERS.keys():
        name = mmseg_type_name(core_name)
        assert MODELS.get(name) is REFINERS.get(core_name) is REFINER_TYPES[name]


def test_built_from_an_mmseg_config_file_is_the_core_refiner(tmp_path, cascadepsp_weights, pair):
    cfg_file = tmp_path / 'refiner_cfg.py'
    cfg_file.write_text(f"refiner = dict(type='CascadePSPRefiner', "
                        f"checkpoint={str(cascadepsp_weights)!r}, L=96, fast=True)\n")
    cfg = Config.fromfile(str(cfg_file))
    mm = MODELS.build(cfg.refiner)
    core = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=96,
                              fast=True))
    assert type(mm) is type(core)
    image, mask = pair
    np.testing.assert_array_equal(mm.refine(image, mask), core.refine(image, mask))
    via_helper = build_mmseg_refiner(cfg.refiner, default_device='cpu')
    np.testing.assert_array_equal(via_helper.refine(image, mask), core.refine(image, mask))
    assert build_mmseg_refiner(core) is core


def test_device_defaults_to_the_given_one_unless_named(cascadepsp_weights):
    cfg = dict(type='CascadePSPRefiner', checkpoint=str(cascadepsp_weights), L=96)
    assert str(build_mmseg_refiner(cfg, default_device='cpu').device) == 'cpu'
    # an explicit device wins over the default (which would fail here: no such device)
    named = build_mmseg_refiner({**cfg, 'device': 'cpu'}, default_device='meta')
    assert str(named.device) == 'cpu'


@pytest.mark.parametrize('cfg, match', [
    (dict(type='SegFormerRefiner', checkpoint='x.pth'), r"unknown refiner type 'SegFormerRefiner'"
                                                        r".*CascadePSPRefiner"),
    (dict(type='CascadePSP', checkpoint='x.pth'), 'unknown refiner type'),
    (dict(type='CascadePSPRefiner', checkpoint='does/not/exist.pth'),
     r"checkpoint file not found: 'does/not/exist.pth'"),
    (dict(type='CascadePSPRefiner'), 'checkpoint'),
    (dict(checkpoint='x.pth'), 'must be a dict with a "type" key'),
    ('CascadePSPRefiner', 'must be a dict'),
])
def test_bad_entries_fail_at_build_time_with_a_clear_message(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_mmseg_refiner(cfg)


def test_bad_core_arguments_surface_as_value_errors(cascadepsp_weights):
    with pytest.raises(ValueError, match='L'):
        build_mmseg_refiner(dict(type='CascadePSPRefiner', checkpoint=str(cascadepsp_weights),
                                 L=10))
