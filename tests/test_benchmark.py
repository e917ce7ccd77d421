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
    for bad in ('big', '0x', '-1x', '0x100', 'axb', 'nanx'):
        with pytest.raises(SystemExit, match='WxH or Sx'):
            bench.parse_size(bad, 10, 10)


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
    # checked before any mode process runs (each failed in its child with a traceback)
    with pytest.raises(SystemExit, match='--size'):
        bench.main(['--image', str(image), '--synthetic-weights', '--size', '0x'])
    with pytest.raises(SystemExit, match='needs --checkpoint or --synthetic-weights'):
        bench.main(['--image', str(image), '--type', 'CascadePSP'])


def test_builtin_modes_and_checks(tmp_path):
    assert bench.MODES['fp32'].refiner == {} and bench.MODES['bf16'].refiner == {
        'precision': 'bf16'}
    assert bench.check_mode(bench.Mode('t', {}, {'threads': 1})).options == {'threads': 1}
    with pytest.raises(SystemExit, match='unknown option'):
        bench.check_mode(bench.Mode('t', {}, {'thread': 1}))
    with pytest.raises(SystemExit, match='a mode is'):
        bench.check_mode(bench.Mode('t', 'fp32', {}))


def test_modes_file_adds_modes(tmp_path):
    f = tmp_path / 'modes.py'
    f.write_text("MODES = [('batched', {'roi_batch_size': 8}, {'threads': 1}),\n"
                 "         ('passive', {}, {'env': {'OMP_WAIT_POLICY': 'PASSIVE'}})]\n")
    args = bench.argparse.Namespace(mode=['fp32'], variant=['cl:channels_last=true'],
                                    modes_file=str(f))
    modes = bench.collect_modes(args)
    assert [m.name for m in modes] == ['fp32', 'cl', 'batched', 'passive']
    assert modes[1].refiner == {'channels_last': True} and modes[2].options == {'threads': 1}
    (tmp_path / 'bad.py').write_text('X = 1\n')
    with pytest.raises(SystemExit, match='no MODES list'):
        bench.load_modes_file(str(tmp_path / 'bad.py'))
    with pytest.raises(SystemExit, match='unknown --mode'):
        bench.collect_modes(bench.argparse.Namespace(mode=['turbo'], variant=[],
                                                     modes_file=None))


def test_quality_and_table(tmp_path):
    import numpy as np
    ref = np.zeros((40, 40), np.float32)
    ref[10:30, 10:30] = 0.9
    out = ref.copy()
    out[10:30, 29] = 0.2                               # one column lost
    np.savez(tmp_path / 'ref.npz', a=ref)
    np.savez(tmp_path / 'out.npz', a=out)
    gts = {'a': ref > 0.5}
    same = bench.quality(np.load(tmp_path / 'ref.npz'), np.load(tmp_path / 'ref.npz'), gts)
    assert same['iou_vs_ref'] == 1.0 and same['max_abs_diff'] == 0.0
    q = bench.quality(np.load(tmp_path / 'out.npz'), np.load(tmp_path / 'ref.npz'), gts)
    assert q['iou_vs_ref'] == pytest.approx(380 / 400) and q['max_abs_diff'] == pytest.approx(0.7)
    assert q['iou_vs_gt'] == q['iou_vs_ref']
    rows = [dict(name='fp32', times=[2.0, 2.2, 1.9], peak=2 * bench.GB, idle=bench.GB,
                 options={}, mode_options={}, stats={}, **same),
            dict(name='bf16', times=[1.0, 1.1, 0.9], peak=2 * bench.GB, idle=bench.GB,
                 options={'precision': 'bf16'}, mode_options={'threads': 1}, stats={}, **q)]
    lines = bench.format_table(rows, 'fp32')
    assert 'speed-up vs fp32' in lines[0] and 'dIoU vs GT' in lines[0]
    cells = [c.strip() for c in lines[3].split('|')[1:-1]]
    assert cells[:4] == ['bf16', 'precision=bf16,threads=1', '1.00', '2.00x']
    assert cells[8] == f'{100 * (q["iou_vs_gt"] - 1):+.2f}'
