"""tools/sweep_gate_detectron2.py: gate settings are parsed and checked before anything runs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import require_module

require_module('detectron2')
pytestmark = pytest.mark.detectron2

_TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'sweep_gate_detectron2.py'


def _load():
    spec = importlib.util.spec_from_file_location('segrefine_sweep_gate', _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load()


def test_parse_setting():
    assert sweep.parse_setting('off') == {}
    assert sweep.parse_setting('depth=2,trust=4') == {'GATE_MIN_CHANGE_DEPTH': 2.0,
                                                      'GATE_TRUST_CHANGE_DEPTH': 4.0}
    assert sweep.parse_setting('depth=2,trust=4,tconf=0')['GATE_TRUST_MIN_CONFIDENCE'] == 0.0
    assert sweep.parse_setting('iou=0.9,conf=0.5,pix=0.1') == {
        'GATE_MIN_IOU': 0.9, 'GATE_MIN_CONFIDENCE': 0.5, 'GATE_PIXEL_CONFIDENCE': 0.1}
    for bad in ('depth', 'deep=2', 'depth=2;trust=4', ''):
        with pytest.raises(SystemExit, match='bad setting'):
            sweep.parse_setting(bad)


def test_a_bad_setting_fails_before_anything_runs(tmp_path):
    """A setting the gate refuses (trust without the depth rule, trust below it) stops the
    sweep before the refiner is built or any image is read (the data set does not exist)."""
    for bad in ('trust=4', 'depth=2,trust=1.5'):
        with pytest.raises(SystemExit, match=f"bad setting '{bad}'.*gate_"):
            sweep.main(['--dataset-dir', str(tmp_path / 'missing'), '--settings', 'depth=2',
                        bad, '--output', str(tmp_path / 'out'), 'MODEL.DEVICE', 'cpu'])
    assert not (tmp_path / 'out').exists()


def test_overrides_right_after_the_settings_are_overrides():
    """The documented order ``--settings off depth=2 MODEL.DEVICE cpu``: argparse hands all
    four to --settings; the config key and what follows are the KEY VALUE overrides."""
    args = sweep.parse_args(['--dataset-dir', 'd', '--settings', 'off', 'depth=2',
                             'MODEL.DEVICE', 'cpu', 'MODEL.SEGREFINE.THREADS', '2'])
    assert args.settings == ['off', 'depth=2']
    assert args.opts == ['MODEL.DEVICE', 'cpu', 'MODEL.SEGREFINE.THREADS', '2']
    args = sweep.parse_args(['--dataset-dir', 'd', '--settings', 'off', '--output', 'o',
                             'MODEL.DEVICE', 'cpu'])
    assert args.settings == ['off'] and args.opts == ['MODEL.DEVICE', 'cpu']
    args = sweep.parse_args(['--dataset-dir', 'd', '--settings', 'MODEL.DEVICE', 'cpu'])
    assert args.settings == ['off'] and args.opts == ['MODEL.DEVICE', 'cpu']
