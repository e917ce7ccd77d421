"""tools/benchmark_mmseg.py: mmseg's real test loop timed with and without a refiner."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import require_module

require_module('mmseg')
pytestmark = pytest.mark.mmseg

_TOOLS = Path(__file__).resolve().parents[1] / 'tools'
sys.path.insert(0, str(_TOOLS))
_spec = importlib.util.spec_from_file_location('segrefine_benchmark_mmseg',
                                               _TOOLS / 'benchmark_mmseg.py')
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_variants_parse():
    assert bench.parse_variant('none') == ('none', None)
    assert bench.parse_variant('c:type=CRMRefiner,scales=0.5/1.0') == (
        'c', {'type': 'CRMRefiner', 'scales': [0.5, 1.0]})
    with pytest.raises(SystemExit, match='type='):
        bench.parse_variant('c:fast=true')


def test_times_the_test_loop_with_and_without_refiner(data_root, tmp_path, capsys):
    out = tmp_path / 'r.json'
    code = bench.main(['--data', str(data_root), '--images', '2', '--size', '64', '--threads',
                       '1', '--variant', 'none', '--variant', 'crm:type=CRMRefiner',
                       '--variant', f'broken:type=CRMRefiner,checkpoint={tmp_path / "no.pth"}',
                       '--refine-cfg', 'min_area=16', '--refine-cfg', 'kernel_size=3',
                       '--json', str(out)])
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())
    # a failing mode is a row of the table (and exit 1), the others are still measured
    assert code == 1 and [r['name'] for r in rows] == ['none', 'crm', 'broken']
    assert 'no.pth' in rows.pop()['error'] and '| broken | failed:' in table
    assert all(r['images'] == 2 for r in rows)
    assert all(r['median_s'] > 0 for r in rows)
    for r in rows:  # the evaluators ran on what the loop produced
        assert {'mIoU', 'boundary/mBA', 'boundary/mBIoU'} <= set(r['metrics'])
    assert '| none |' in table and '| crm |' in table
