"""MODEL.SEGREFINE config keys, the shipped yaml overlays and refiner construction."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

from detectron2 import model_zoo  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402

from segrefine_plugins.detectron2 import (add_segrefine_config, build_refiner_from_cfg,  # noqa: E402
                                          refiner_config)

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = sorted((REPO / 'configs' / 'detectron2').glob('*.yaml'))


def _cfg():
    cfg = get_cfg()
    add_segrefine_config(cfg)
    cfg.MODEL.DEVICE = 'cpu'
    return cfg


def test_defaults_are_the_published_protocol():
    seg = _cfg().MODEL.SEGREFINE
    assert seg.ENABLED and seg.INNER_META_ARCHITECTURE == 'PanopticFPN'
    assert seg.ROI_PADDING == 0.25 and seg.STUFF_SCALE == 0.51 and seg.MIN_AREA == 0
    assert seg.REFINE_PANOPTIC and seg.REFINE_INSTANCES and not seg.REFINE_SEM_SEG
    assert seg.IMAGE_SOURCE == 'auto'


def test_gate_keys_map_to_roi_options():
    """Every GATE_* key reaches RoiOptions (< 0 = off -> None); a trust depth without the
    change-depth rule is refused when the wrapper options are built."""
    from segrefine_plugins.detectron2 import wrapper_options

    cfg = _cfg()
    assert not wrapper_options(cfg)['roi_options'].gated
    cfg.MODEL.SEGREFINE.GATE_MIN_CHANGE_DEPTH = 2.0
    cfg.MODEL.SEGREFINE.GATE_TRUST_CHANGE_DEPTH = 4.0
    cfg.MODEL.SEGREFINE.GATE_PIXEL_CONFIDENCE = 0.1
    roi = wrapper_options(cfg)['roi_options']
    assert (roi.gate_min_change_depth, roi.gate_trust_change_depth,
            roi.gate_pixel_confidence, roi.gate_min_iou) == (2.0, 4.0, 0.1, None)
    assert roi.gate_trust_min_confidence == 0.3                      # the default
    cfg.MODEL.SEGREFINE.GATE_TRUST_MIN_CONFIDENCE = 0.0
    assert wrapper_options(cfg)['roi_options'].gate_trust_min_confidence == 0.0
    cfg.MODEL.SEGREFINE.GATE_MIN_CHANGE_DEPTH = -1.0
    with pytest.raises(ValueError, match='gate_min_change_depth too'):
        wrapper_options(cfg)


def test_add_is_idempotent_and_keeps_values():
    cfg = _cfg()
    cfg.MODEL.SEGREFINE.MIN_AREA = 7
    add_segrefine_config(cfg)
    assert cfg.MODEL.SEGREFINE.MIN_AREA == 7


def test_every_key_is_commented():
    source = (REPO / 'segrefine_plugins' / 'detectron2' / 'config.py').read_text().splitlines()
    assigned = [i for i, line in enumerate(source) if line.strip().startswith('_C.') and '=' in line
                and 'CN()' not in line]
    assert assigned
    for i in assigned:
        line = source[i]
        assert '#' in line or source[i - 1].strip().startswith('#'), f'uncommented: {line}'


@pytest.mark.parametrize('overlay', OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlays_merge_over_a_model_zoo_config(overlay):
    cfg = _cfg()
    cfg.merge_from_file(model_zoo.get_config_file(
        'COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml'))
    cfg.merge_from_file(str(overlay))
    assert cfg.MODEL.META_ARCHITECTURE == 'SegRefineWrapper'
    assert cfg.MODEL.SEGREFINE.REFINER.TYPE in ('CRM', 'CascadePSP')


def test_refiner_config_mapping(tmp_path):
    cfg = _cfg()
    r = cfg.MODEL.SEGREFINE.REFINER
    assert refiner_config(cfg.MODEL.SEGREFINE) == {'type': 'CRM', 'device': 'cpu'}
    r.TYPE, r.CHECKPOINT, r.L, r.FAST = 'CascadePSP', 'w.pth', 96, True
    assert refiner_config(cfg.MODEL.SEGREFINE, 'cuda') == {
        'type': 'CascadePSP', 'checkpoint': 'w.pth', 'L': 96, 'fast': True, 'device': 'cuda'}
    # a config file is the base; TYPE '' keeps its type, set keys override it
    py = tmp_path / 'ref.py'
    py.write_text("refiner = dict(type='CascadePSP', checkpoint='a.pth', L=900)\n")
    cfg = _cfg()
    cfg.MODEL.SEGREFINE.REFINER.CONFIG = str(py)
    cfg.MODEL.SEGREFINE.REFINER.L = 128
    cfg.MODEL.SEGREFINE.REFINER.SCALES = [0.5, 1.0]
    out = refiner_config(cfg.MODEL.SEGREFINE)
    assert out == {'type': 'CascadePSP', 'checkpoint': 'a.pth', 'L': 128,
                   'scales': (0.5, 1.0), 'device': 'cpu'}


def test_build_refiner(cascadepsp_weights):
    cfg = _cfg()
    r = cfg.MODEL.SEGREFINE.REFINER
    r.TYPE, r.CHECKPOINT, r.L, r.FAST = 'CascadePSP', str(cascadepsp_weights), 96, True
    refiner = build_refiner_from_cfg(cfg)
    assert type(refiner).__name__ == 'CascadePSPRefiner'
    cfg.MODEL.SEGREFINE.ENABLED = False
    assert build_refiner_from_cfg(cfg) is None


def test_unknown_refiner_option_is_a_clear_error(cascadepsp_weights):
    cfg = _cfg()
    r = cfg.MODEL.SEGREFINE.REFINER
    r.TYPE, r.CHECKPOINT, r.SCALES = 'CascadePSP', str(cascadepsp_weights), [0.5]
    with pytest.raises(ValueError, match='MODEL.SEGREFINE.REFINER'):
        build_refiner_from_cfg(cfg)


def test_python_and_yacs_wrappers_get_the_same_roi_options():
    """wrap_model / SegRefineWrapper without options and the yacs path with its defaults
    refine with the same RoiOptions (min_area 0: RoiOptions' None meant the label-map
    default 1024 on the sem_seg path of the Python wrapper only)."""
    import torch

    from segrefine_plugins.detectron2 import wrap_model, wrapper_options
    from segrefine_plugins.detectron2.wrapper import SegRefineWrapper

    stub = torch.nn.Linear(1, 1)
    python = wrap_model(stub, None, refine_sem_seg=True).roi_options
    yacs = SegRefineWrapper(model=stub, refiner=None, **wrapper_options(_cfg())).roi_options
    assert python == yacs and python.min_area == 0
    assert wrap_model(stub, None, min_area=512).roi_options.min_area == 512


def test_fast_with_crm_is_refused_like_l():
    """REFINER.FAST is CascadePSP's: with CRM it is refused as REFINER.L is (it was silently
    ignored)."""
    cfg = _cfg()
    cfg.MODEL.SEGREFINE.REFINER.FAST = True
    with pytest.raises(ValueError, match='fast'):
        build_refiner_from_cfg(cfg)
