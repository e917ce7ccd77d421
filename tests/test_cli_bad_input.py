"""``segrefine`` with bad input: clear messages and the documented exit codes, never a traceback.

Exit codes (cli.py): 0 done; 1 some pairs failed (each named) or the --json report could not be
written; 2 usage / configuration (nothing processed). Tiny synthetic pairs, the shipped default
CRM (no data folder needed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_plugins import build_refiner
from segrefine_plugins.cli import main
from segrefine_plugins.io import read_image, read_mask

H, W = 48, 56


def _write_pair(folder: Path, stem: str, h: int = H, w: int = W, seed: int = 0,
                empty: bool = False) -> None:
    rng = np.random.default_rng(seed)
    (folder / 'images').mkdir(parents=True, exist_ok=True)
    (folder / 'masks').mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / 'images' / f'{stem}.png'),
                rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    mask = np.zeros((h, w), np.uint8)
    if not empty:
        mask[h // 4:3 * h // 4, w // 5:4 * w // 5] = 255
    cv2.imwrite(str(folder / 'masks' / f'{stem}.png'), mask)


@pytest.fixture()
def data(tmp_path):
    for i, stem in enumerate(('a', 'b')):
        _write_pair(tmp_path, stem, seed=i)
    return tmp_path


def _refine(data: Path, out: Path, *extra: str) -> list:
    return ['refine', '--image', str(data / 'images'), '--mask', str(data / 'masks'),
            '--out', str(out), *extra]


def _no_traceback(capsys) -> tuple:
    captured = capsys.readouterr()
    assert 'Traceback' not in captured.err and 'Traceback' not in captured.out
    return captured


# ------------------------------------------------------------------ --set and the boolean rule
def test_set_bgr_false_is_false(data, capsys):
    out = data / 'out'
    assert main(_refine(data, out, '--set', 'bgr=false')) == 0
    image, mask = read_image(data / 'images' / 'a.png'), read_mask(data / 'masks' / 'a.png')
    expected = np.floor(build_refiner(dict(type='CRM', bgr=False)).refine(image, mask) * 255)
    np.testing.assert_array_equal(read_mask(out / 'a.png'), expected.astype(np.uint8))
    flipped = np.floor(build_refiner(dict(type='CRM', bgr=True)).refine(image, mask) * 255)
    assert not np.array_equal(read_mask(out / 'a.png'), flipped.astype(np.uint8))


@pytest.mark.parametrize('items, match', [
    (['bgr=maybe'], 'bgr must be a boolean'),
    (['novalue'], 'is not key=value'),
    (['a b=1'], 'not a valid name'),
    (['bgr=0', 'bgr=1'], 'given twice'),
    (['L=900'], "does not take 'L'"),
    (['chunk_size=1e9'], 'chunk_size must be an int'),
    (['chunk_size=10**9'], 'chunk_size must be an int'),
    (['scales=(1.0, 0.5)'], 'scales must increase'),
    (['device=tpu'], 'not a device name'),
    (['precision=FP32'], 'precision'),
])
def test_bad_set_items_exit_2(data, capsys, items, match):
    out = data / 'out'
    args = [a for item in items for a in ('--set', item)]
    assert main(_refine(data, out, *args)) == 2
    err = _no_traceback(capsys).err
    assert match in err
    assert not out.exists()


@pytest.mark.parametrize('make, match', [
    (lambda d: d / 'folder.pth', 'is a folder'),
    (lambda d: d / 'missing.pth', 'not found'),
    (lambda d: d / 'empty.pth', 'empty file'),
    (lambda d: d / 'text.pth', 'corrupt or not a torch checkpoint'),
])
def test_bad_checkpoints_exit_2(data, capsys, make, match):
    (data / 'folder.pth').mkdir()
    (data / 'empty.pth').write_bytes(b'')
    (data / 'text.pth').write_text('not a checkpoint\n')
    assert main(_refine(data, data / 'out', '--checkpoint', str(make(data)))) == 2
    assert match in _no_traceback(capsys).err


def test_bad_options_are_usage_errors_when_every_output_exists(data, capsys):
    """A finished run resumed with a bad option or checkpoint is told so (exit 2), not
    "skipped" (exit 0) nor "made with other settings"."""
    out = data / 'out'
    assert main(_refine(data, out)) == 0
    (data / 'text.pth').write_text('not a checkpoint\n')
    for extra, match in ((['--set', 'chunk_size=0'], 'chunk_size'),
                         (['--set', 'foo=1'], "does not take 'foo'"),
                         (['--checkpoint', str(data / 'text.pth'), '--type', 'CRM'],
                          'corrupt or not a torch checkpoint')):
        capsys.readouterr()
        assert main(_refine(data, out, *extra)) == 2, extra
        err = _no_traceback(capsys).err
        assert match in err and 'other refiner settings' not in err, err
    assert main(_refine(data, out)) == 0                      # the good settings still resume
    assert '2 skipped' in _no_traceback(capsys).out


# ------------------------------------------------------------------ unwritable places
def test_out_under_a_regular_file_exits_2(data, capsys):
    (data / 'file').write_text('x')
    for out in (data / 'file', data / 'file' / 'sub', data / 'file' / 'sub' / 'deeper'):
        assert main(_refine(data, out)) == 2
        err = _no_traceback(capsys).err
        assert '--out' in err and 'file' in err


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs /proc')
def test_out_in_a_place_nothing_can_be_created_exits_2(data, capsys):
    # /proc refuses new entries even for root (chmod does not stop root, /proc does)
    assert main(_refine(data, Path('/proc/segrefine-test-out'))) == 2
    err = _no_traceback(capsys).err
    assert '--out' in err and 'writable' in err


def test_out_readonly_folder_detected_without_writing(data, capsys, monkeypatch):
    """A read-only folder (os.access says so; as root we cannot make one, so the check that
    runs before anything is written is exercised through os.access)."""
    out = data / 'ro'
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, 'access', lambda p, mode, **kw: False if Path(p) == out
                        else real_access(p, mode, **kw))
    assert main(_refine(data, out)) == 2
    assert 'is not writable' in _no_traceback(capsys).err
    assert list(out.iterdir()) == []


def _eval(data: Path, *extra: str) -> list:
    return ['eval', '--pred', str(data / 'masks'), '--gt', str(data / 'masks'), *extra]


@pytest.mark.parametrize('where, match', [
    (lambda d: d / 'file' / 'report.json', 'is a file, not a folder'),
    (lambda d: d / 'folder', 'is a folder'),
    (lambda d: Path('/proc/segrefine-test.json'), ''),
])
def test_eval_json_into_an_unwritable_place(data, capsys, where, match):
    (data / 'file').write_text('x')
    (data / 'folder').mkdir()
    code = main(_eval(data, '--json', str(where(data))))
    err = _no_traceback(capsys).err
    assert code in (1, 2) and '--json' in err and match in err
    if match:   # found before evaluating: usage error
        assert code == 2


def test_eval_json_is_written_atomically_and_never_over_an_input(data, capsys):
    report = data / 'report.json'
    assert main(_eval(data, '--json', str(report))) == 0
    assert json.loads(report.read_text())['refined']['iou'] == 1.0
    assert [p.name for p in data.iterdir() if p.name.startswith('.')] == []
    before = (data / 'masks' / 'a.png').read_bytes()
    assert main(_eval(data, '--json', str(data / 'masks' / 'a.png'))) == 2
    assert 'has an image extension' in _no_traceback(capsys).err
    assert (data / 'masks' / 'a.png').read_bytes() == before


def test_eval_json_never_replaces_any_input_image_and_makes_its_folder(data, capsys):
    """--json is refused (exit 2, nothing evaluated) when it names any image file of the
    inputs: a ground truth with no prediction, a coarse mask, an unpaired prediction;
    a missing folder of a new path is created."""
    gt = data / 'gt'
    gt.mkdir()
    for name in ('a.png', 'b.png'):
        (gt / name).write_bytes((data / 'masks' / name).read_bytes())
    cv2.imwrite(str(gt / 'c.png'), np.zeros((H, W), np.uint8))          # no prediction
    cv2.imwrite(str(data / 'masks' / 'a_overlay.png'), np.zeros((H, W, 3), np.uint8))
    base = ['eval', '--pred', str(data / 'masks'), '--gt', str(gt), '--coarse',
            str(data / 'masks')]
    for target in (gt / 'c.png', data / 'masks' / 'a_overlay.png', data / 'masks' / 'b.png'):
        before = target.read_bytes()
        capsys.readouterr()
        assert main(base + ['--json', str(target)]) == 2
        captured = _no_traceback(capsys)
        assert 'image extension' in captured.err and captured.out == ''   # nothing evaluated
        assert target.read_bytes() == before
    report = data / 'new' / 'sub' / 'report.json'
    assert main(base + ['--json', str(report)]) == 1                   # c.png: no prediction
    assert json.loads(report.read_text())['missing_predictions'] == 1
    # a usage error leaves no folder behind; a new .png report is refused too
    empty = data / 'nothing'
    empty.mkdir()
    assert main(['eval', '--pred', str(empty), '--gt', str(gt), '--json',
                 str(data / 'later' / 'r.json')]) == 2
    assert not (data / 'later').exists()
    assert main(base + ['--json', str(gt / 'new.png')]) == 2
    assert not (gt / 'new.png').exists()


def test_overlay_names_that_collide_with_a_mask_output_are_refused(data, capsys):
    """Pairs 'a' and 'a_overlay' with --overlay would both write a_overlay.png: refused up
    front (exit 2, nothing written); without --overlay they are fine."""
    _write_pair(data, 'a_overlay', seed=5)
    out = data / 'out'
    assert main(_refine(data, out, '--overlay')) == 2
    err = _no_traceback(capsys).err
    assert "'a_overlay.png'" in err and 'written twice' in err and not out.exists()
    assert main(_refine(data, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'a_overlay.png', 'b.png']


def test_label_map_roi_options_on_single_masks_are_usage_errors(data, capsys):
    """--roi options other than the gate's do nothing to a single mask (refined whole):
    refused (exit 2) instead of silently ignored; gate options are taken."""
    out = data / 'out'
    for item in ('min_area=5', 'roi_batch_size=3', 'max_upscale=2'):
        assert main(_refine(data, out, '--roi', item)) == 2, item
        err = _no_traceback(capsys).err
        assert item.split('=')[0] in err and '--labels' in err
    assert not out.exists()
    assert main(_refine(data, out, '--roi', 'gate_min_change_depth=2')) == 0


# ------------------------------------------------------------------ resume
def test_resume_recomputes_outputs_that_do_not_decode(data, capsys):
    out = data / 'out'
    assert main(_refine(data, out, '--overlay')) == 0
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / 'a.png').write_bytes(b'')                                   # 0 bytes (crash)
    (out / 'b.png').write_bytes(good['b.png'][:len(good['b.png']) // 2])  # truncated
    cv2.imwrite(str(out / 'a_overlay.png'), np.zeros((5, 5), np.uint8))  # wrong size
    stamp = (out / 'b_overlay.png').stat().st_mtime_ns
    capsys.readouterr()
    assert main(_refine(data, out, '--overlay')) == 0
    captured = _no_traceback(capsys)
    assert '3 existing output(s)' in captured.err and 'recomputed' in captured.err
    assert '2 refined, 0 skipped' in captured.out
    for name, content in good.items():
        assert (out / name).read_bytes() == content, name
    assert (out / 'b_overlay.png').stat().st_mtime_ns == stamp       # the good one was kept
    # a mask of the wrong size is recomputed too
    cv2.imwrite(str(out / 'a.png'), np.zeros((H + 1, W), np.uint8))
    assert main(_refine(data, out)) == 0
    assert (out / 'a.png').read_bytes() == good['a.png']


# ------------------------------------------------------------------ one size rule
@pytest.mark.parametrize('empty', [False, True])
def test_pair_below_the_refiner_minimum_fails_with_exit_1(tmp_path, capsys, empty):
    _write_pair(tmp_path, 'big')
    _write_pair(tmp_path, 'tiny', h=20, w=20, empty=empty)
    out = tmp_path / 'out'
    assert main(_refine(tmp_path, out)) == 1
    captured = _no_traceback(capsys)
    assert 'tiny: skipped' in captured.err and 'larger than 32x32' in captured.err
    assert '1 refined' in captured.out and '1 failed' in captured.out
    assert sorted(p.name for p in out.iterdir()) == ['big.png']


def test_empty_and_full_coarse_masks_are_named_and_written_unrefined(data, capsys):
    """No boundary to refine: the output is the binarised coarse mask (0 / 255), the pair is
    named on stderr and counted; a warning, not a failure (exit 0, and 0 again on resume);
    the other pairs are refined."""
    rng = np.random.default_rng(3)
    for stem, value in (('empty', 0), ('dim', 100), ('full', 255)):
        cv2.imwrite(str(data / 'images' / f'{stem}.png'),
                    rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(data / 'masks' / f'{stem}.png'), np.full((H, W), value, np.uint8))
    out = data / 'out'
    assert main(_refine(data, out)) == 0
    captured = _no_traceback(capsys)
    for stem in ('empty', 'dim'):
        assert f'{stem}: the coarse mask is empty' in captured.err
        assert not read_mask(out / f'{stem}.png').any()
    assert 'full: the coarse mask is full' in captured.err
    assert (read_mask(out / 'full.png') == 255).all()
    assert '5 refined' in captured.out and '3 with unrefined parts' in captured.out
    assert read_mask(out / 'a.png').any()
    assert main(_refine(data, out)) == 0
    assert '5 skipped' in _no_traceback(capsys).out


def test_label_map_rois_the_refiner_cannot_take_are_reported(tmp_path, capsys):
    """A label map on an image thinner than CRM's 33 px: written with its ROIs passed
    through, named on stderr and counted (the API's pass-through, reported)."""
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels').mkdir()
    cv2.imwrite(str(tmp_path / 'images' / 'thin.png'),
                np.random.default_rng(0).integers(0, 256, (20, 90, 3), dtype=np.uint8))
    labels = np.zeros((20, 90), np.uint8)
    labels[4:16, 10:40] = 3
    cv2.imwrite(str(tmp_path / 'labels' / 'thin.png'), labels)
    out = tmp_path / 'out'
    assert main(['refine', '--image', str(tmp_path / 'images'), '--mask',
                 str(tmp_path / 'labels'), '--out', str(out), '--labels',
                 '--roi', 'min_area=10']) == 0
    captured = _no_traceback(capsys)
    assert 'thin: 2 ROI(s) passed through unrefined' in captured.err
    assert '1 with unrefined parts (ROIs the refiner cannot take)' in captured.out
    np.testing.assert_array_equal(cv2.imread(str(out / 'thin.png'), cv2.IMREAD_UNCHANGED),
                                  labels)
