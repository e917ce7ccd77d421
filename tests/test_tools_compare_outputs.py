"""tools/compare_outputs.py: two configurations of a refiner over real ECSSD pairs."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_TOOLS = Path(__file__).resolve().parents[1] / 'tools'


def _load():
    sys.path.insert(0, str(_TOOLS))
    spec = importlib.util.spec_from_file_location('segrefine_compare_outputs',
                                                  _TOOLS / 'compare_outputs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load()


def _row(text: str) -> list:
    lines = [ln for ln in text.splitlines() if ln.startswith('| ') and '---' not in ln]
    return [c.strip() for c in lines[1].strip('|').split('|')]


def test_identical_configurations_do_not_differ(data_root, capsys):
    compare.main(['--type', 'CRM', '--root', str(data_root / 'ecssd'), '--limit', '2',
                  '--coarse', 'lowres', '--threads', '1'])
    row = _row(capsys.readouterr().out)
    assert float(row[0]) == 0.0 and float(row[1]) == 0.0 and row[2] == '0.0000 %'
    assert row[3] == row[4] and row[5] == row[6]          # same IoU and mBA
    assert 50.0 < float(row[3]) <= 100.0


def test_different_configurations_differ(data_root, capsys):
    # the default weights at the published four scales vs their own single scale
    compare.main(['--type', 'CRM', '--root', str(data_root / 'ecssd'), '--limit', '2',
                  '--coarse', 'perturb', '--a', 'scales=1.0', '--b', 'scales=0.5/1.0',
                  '--threads', '1'])
    out = capsys.readouterr().out
    row = _row(out)
    assert float(row[0]) > 1e-3 and float(row[1]) > 0.0
    assert 'scales=[0.5, 1.0]' in out


def test_bad_arguments(data_root, tmp_path):
    with pytest.raises(SystemExit, match='--limit'):
        compare.main(['--limit', '0'])
    with pytest.raises(ValueError):
        compare.main(['--root', str(tmp_path), '--limit', '1'])
