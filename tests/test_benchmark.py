"""tools/benchmark.py: option parsing and the peak-memory helpers (no timing asserted)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / 'tools' / 'benchmark.py'
_spec = importlib.util.spec_from_file_location('segrefine_benchmark', _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_parse_value():
    assert bench.parse_value('true') is True and bench.parse_value('False') is False
    assert bench.parse_value('none') is None
    assert bench.parse_value('4') == 4 and isinstance(bench.parse_value('4'), int)
    assert bench.parse_value('0.5') == 0.5
    assert bench.parse_value('bf16') == 'bf16'


def test_parse_variant():
    assert bench.parse_variant('full') == ('full', {})
    assert bench.parse_variant('b1:crop_batch_size=1,fast=false') == (
        'b1', {'crop_batch_size': 1, 'fast': False})
    with pytest.raises(SystemExit, match='no name'):
        bench.parse_variant(':fast=true')
    with pytest.raises(SystemExit, match='not key=value'):
        bench.parse_variant('x:fast')


def test_parse_size():
    assert bench.parse_size('1920x1080', 100, 50) == (1920, 1080)
    assert bench.parse_size('2x', 3492, 2328) == (6984, 4656)
    assert bench.parse_size('0.5x', 3492, 2328) == (1746, 1164)
    with pytest.raises(SystemExit, match='WxH or Sx'):
        bench.parse_size('big', 10, 10)


def test_peak_rss_reset_and_read():
    before = bench.peak_rss_bytes()
    assert before >= bench.rss_bytes() > 0
    if bench.reset_peak_rss():          # Linux: the peak drops back to about the current RSS
        assert bench.peak_rss_bytes() <= before


def test_list_values():
    assert bench.parse_value('0.25/0.5/1') == [0.25, 0.5, 1]
    assert bench.parse_value('1.0/') == [1.0]
    assert bench.parse_value('work_dirs/a.pth') == 'work_dirs/a.pth'
    assert bench.parse_variant('s:scales=0.5/1.0,roi_only=true') == \
        ('s', {'scales': [0.5, 1.0], 'roi_only': True})


def test_usage_errors(tmp_path):
    image = tmp_path / 'a.jpg'
    image.write_bytes(b'x')
    (tmp_path / 'a_coarse.png').write_bytes(b'x')
    with pytest.raises(SystemExit, match='not found'):
        bench.main(['--image', str(tmp_path / 'missing.jpg'), '--synthetic-weights'])
    with pytest.raises(SystemExit, match='unique'):
        bench.main(['--image', str(image), '--synthetic-weights', '--variant', 'a',
                    '--variant', 'a'])
